"""Import throughput: a CRM export of N rows enrolled, every touch planned, as
``relance enroll SEQUENCE --csv FILE`` does it (streamed, batched, one transaction).

Writes a French-style export (``;`` between cells, a byte-order mark, quoted headers,
"25 000,50" amounts, countries and languages by name) of ``--rows`` prospects in a
temporary directory, then enrolls it in a six-step sequence on a fresh store: a SQLite
file, or a new PostgreSQL database created on the server ``--postgres`` names (and
dropped at the end). Prints the figures, then one line of JSON with them.

    .venv/bin/python bench/enroll.py [--rows 1000000] [--postgres postgresql+psycopg://...]
                                     [--batch 2000]

Peak RSS is the process's own (``ru_maxrss``), generation of the file included. On a
shared machine the wall-clock rate depends on the load: the CPU time the import used is
printed too.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from relance.csvimport import ContactReader, file_lines
from relance.importing import BATCH, import_contacts
from relance.spec import Sequence
from relance.store import Store
from relance.tables import enrollments, prospects, touchpoints

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PLACES = [
    ("Europe/Paris", "France", "français"),
    ("Europe/Berlin", "Deutschland", "German"),
    ("Europe/London", "United Kingdom", "English"),
    ("Europe/Madrid", "Espagne", "es"),
    ("America/New_York", "US", "en"),
    ("Europe/Rome", "Italia", "italiano"),
]
DEALS = ["", "", "5 000", "12 500,00", "25 000,50", "48 000", "100 000", "250 000"]
"""Deal amounts as CRMs export them: many empty, the others from a price list."""


def sequence() -> Sequence:
    email = {"subject": "s.j2", "html": "h.j2", "text": "t.j2"}
    steps = [
        ("intro", "email", "0d", email),
        ("call", "call", "2 business days", {"script": "c.j2"}),
        ("case-study", "email", "3d", email),
        ("nudge", "reminder", "4h", {"reminder": "r.j2"}),
        ("follow-up", "call", "1 business day", {"script": "c.j2"}),
        ("last", "email", "1w", email),
    ]
    return Sequence.model_validate(
        {
            "id": "bench",
            "name": "Bench",
            "locale": "fr",
            "locales": ["en"],
            "fallback_locales": ["en"],
            "prospect_fields": [{"name": "sujet_salon", "optional": True}],
            "steps": [
                {"id": i, "channel": c, "wait": w, "objective": i, "templates": t}
                for i, c, w, t in steps
            ],
        }
    )


def write_export(path: Path, rows: int, seed: int = 7) -> None:
    """A semicolon-separated export with a byte-order mark, written line by line."""
    draw = random.Random(seed)
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        handle.write(
            '"Adresse e-mail";"Prénom";"Nom";"Société";"Fuseau horaire";"Pays";"Langue";'
            '"Montant";"Sujet salon"\n'
        )
        for index in range(rows):
            zone, country, language = PLACES[index % len(PLACES)]
            salon = "Salon SITL" if index % 3 == 0 else ""
            handle.write(
                f"p{index:07d}@example.com;Prénom{index};Nom{index};Société {index % 997};"
                f'{zone};{country};{language};"{draw.choice(DEALS)}";{salon}\n'
            )


@contextmanager
def store_for(postgres: str | None, directory: Path) -> Iterator[Store]:
    if postgres is None:
        store = Store(f"sqlite:///{(directory / 'relance.db').as_posix()}")
        try:
            yield store
        finally:
            store.dispose()
        return
    admin_url = make_url(postgres)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"relance_bench_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    store = Store(admin_url.set(database=name).render_as_string(hide_password=False))
    try:
        yield store
    finally:
        store.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args()
    spec = sequence()
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        export = directory / "export.csv"
        write_export(export, args.rows)
        size_mb = export.stat().st_size / 1e6
        with store_for(args.postgres, directory) as store:
            began, cpu_began = time.perf_counter(), time.process_time()
            report = import_contacts(
                store,
                spec,
                lambda: ContactReader(
                    file_lines(export),
                    export.name,
                    required=spec.required_fields,
                    sequence_id=spec.id,
                ),
                start=START,
                now=START,
                batch=args.batch,
            )
            seconds = time.perf_counter() - began
            cpu = time.process_time() - cpu_began
            with store.reading() as connection:
                counted = {
                    table.name: connection.execute(
                        select(func.count()).select_from(table)
                    ).scalar_one()
                    for table in (prospects, enrollments, touchpoints)
                }
            dialect = store.dialect
    if report.invalid_rows or counted["enrollments"] != args.rows:
        raise SystemExit(f"the import did not enroll every row: {counted}, {report.errors[:3]}")
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = report.enrolled / seconds
    written = sum(counted.values()) + report.enrolled  # + one first stage move each
    print(f"{dialect}: {args.rows:,} rows ({size_mb:.0f} MB), batches of {args.batch:,}")
    print(
        f"enrolled {report.enrolled:,} prospects, {report.touchpoints:,} touches planned, "
        f"in {seconds:.1f} s"
    )
    print(
        f"{rate:,.0f} prospects/s, {written / seconds:,.0f} rows/s written, "
        f"peak RSS {peak_rss_mb:.0f} MB"
    )
    print(
        f"this process used {cpu:.1f} s of CPU: {report.enrolled / cpu:,.0f} prospects per "
        "CPU-second (what the rate would be on an idle core; on SQLite that includes the "
        "database's own work)"
    )
    json.dump(
        {
            "bench": "enroll",
            "database": dialect,
            "rows": args.rows,
            "file_mb": round(size_mb, 1),
            "batch": args.batch,
            "prospects": report.enrolled,
            "touchpoints": report.touchpoints,
            "seconds": round(seconds, 2),
            "prospects_per_s": round(rate),
            "cpu_seconds": round(cpu, 2),
            "prospects_per_cpu_s": round(report.enrolled / cpu),
            "rows_written_per_s": round(written / seconds),
            "peak_rss_mb": round(peak_rss_mb, 1),
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
