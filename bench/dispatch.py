"""End-to-end dispatch throughput: due email touches -> dispatch flow -> official SendGrid
client -> a local fake SendGrid (in its own process) that validates every request against
the official Mail Send schema.

    .venv/bin/python bench/dispatch.py [--emails 50000] [--delays 0 0.1] [--per-run 200]
    .venv/bin/python bench/dispatch.py --store postgresql [--emails 20000] [--dispatchers 1 2 4]
                                       [--memory 10000 100000] [--memory-due 1000]

SQLite (the default): for each delay, enrolls ``--emails`` prospects in a one-step email
sequence (the shipped outbound benchmark email, with its real templates), runs ONE
dispatch tick on Prefect (a task run per batch), and prints emails/s from the tick's start
to its end. Then times ``--per-run`` touches done as one flow run each, and prints the ratio.

PostgreSQL (``--store postgresql``, the server of RELANCE_TEST_POSTGRES_URL, by default
127.0.0.1:5432): for each delay and each count in ``--dispatchers``, that many dispatcher
processes run the dispatch flow at once on one store holding ``--emails`` due touches;
emails/s run from their common start to the last one's end, and the provider's side
counts duplicates (``bench/provider.py``) while the store counts touches left behind.
Then the memory of one dispatcher process: its peak RSS over a tick that sends
``--memory-due`` touches, in a store of each ``--memory`` size of enrollments (the others
due in a month), with the time ``due_groups`` and ``next_due`` take there. Databases are
made for the run and dropped at its end.

Ends with one line of JSON holding every figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import resource
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

NOW = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
"""A Tuesday morning in Paris: every touch is due and inside the send window."""

SEQUENCE = """\
id: bench
name: Benchmark
steps:
  - id: email-benchmark
    channel: email
    wait: "0d"
    objective: Give something useful first, the benchmark, with no ask.
    resource:
      title: 2025 on-time delivery benchmark for manufacturers
      url: https://example.com/resources/on-time-delivery-benchmark-2025
    templates:
      subject: outbound-2w/{locale}/email-benchmark.subject.j2
      html: outbound-2w/{locale}/email-benchmark.html.j2
      text: outbound-2w/{locale}/email-benchmark.text.j2
prospect_fields: [industry]
locales: [en]
"""


def configure(workdir: Path, url: str) -> None:
    (workdir / "sequences").mkdir(parents=True, exist_ok=True)
    (workdir / "sequences" / "bench.yaml").write_text(SEQUENCE)
    os.environ.update(
        RELANCE_HOME=str(workdir),
        RELANCE_TEMPLATES_DIR=str(ROOT / "templates"),
        RELANCE_DATA_DIR=str(workdir / "data"),
        SENDGRID_API_KEY="SG.fake-key",
        RELANCE_SENDGRID_HOST=url,
        RELANCE_BATCH_SIZE="2000",
        RELANCE_MAX_BATCHES_PER_TICK="100000",
        RELANCE_TICK_BUDGET_SECONDS="100000",  # one tick sends everything: that is measured
    )


def enroll_all(count: int, due: int | None = None) -> float:
    """Enroll ``count`` prospects; the first ``due`` (default: all) are due at NOW, the
    others a month later."""
    from relance.catalog import resolve_sequence
    from relance.enrollments import enroll
    from relance.prospect import Prospect
    from relance.settings import Settings
    from relance.store import Store

    settings = Settings()
    sequence = resolve_sequence("bench", settings)
    due = count if due is None else due
    people = [
        Prospect(
            email=f"prospect{i}@client{i % 997}.example",
            first_name=f"Prénom{i}",
            company=f"Client {i % 997}",
            deal_value=5_000 + i % 50 * 1_000,
            cycle_days=30 + i % 90,
            timezone="Europe/Paris",
            country="FR",
            locale="fr" if i % 2 else "en",
            fields={"industry": "industrie"},
        )
        for i in range(count)
    ]
    store = Store(settings.store_url)
    started = time.perf_counter()
    enroll(store, sequence, people[:due], start=NOW - timedelta(hours=1), now=NOW)
    for first in range(due, count, 20_000):
        later = people[first : first + 20_000]
        enroll(store, sequence, later, start=NOW + timedelta(days=30), now=NOW)
    seconds = time.perf_counter() - started
    store.dispose()
    return seconds


def one_scenario(emails: int, delay: float, per_run: int) -> dict[str, Any]:
    from prefect import flow

    from flows.dispatch import run_tick
    from relance.prefect_api import prefect_api
    from relance.runtime import runtime_for
    from relance.settings import Settings
    from tests.fakes.sendgrid_server import fake_in_child_process

    with tempfile.TemporaryDirectory() as tmp, fake_in_child_process(delay) as (url, counts):
        configure(Path(tmp), url)
        enroll_seconds = enroll_all(emails + per_run)
        with prefect_api():
            # Warm up Prefect's client and the runtime outside the measured tick.
            runtime = runtime_for(Settings())

            @flow(name="one-touch")
            def one_touch(now: datetime) -> int:
                return runtime.dispatcher.run_step(
                    "bench", "email-benchmark", now=now, limit=1
                ).sent

            one_touch(NOW)
            started = time.perf_counter()
            for _ in range(per_run - 1):
                one_touch(NOW)
            per_run_seconds = time.perf_counter() - started
            started = time.perf_counter()
            summary = run_tick(now=NOW)
            tick_seconds = time.perf_counter() - started
    sent = summary["sequences"]["bench"]["email-benchmark"]["sent"]
    batched_rate = sent / tick_seconds
    per_run_rate = (per_run - 1) / per_run_seconds
    return {
        "delay_ms": int(delay * 1000),
        "emails": sent,
        "tick_seconds": round(tick_seconds, 2),
        "emails_per_s": round(batched_rate, 1),
        "accepted_by_fake": counts.get("accepted"),
        "rejected_by_fake": counts.get("rejected"),
        "enroll_per_s": round((emails + per_run) / enroll_seconds, 1),
        "one_flow_run_per_touch_emails_per_s": round(per_run_rate, 2),
        "batched_vs_per_run_ratio": round(batched_rate / per_run_rate, 1),
    }


PG_ADMIN_URL = os.environ.get(
    "RELANCE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


class Databases:
    """PostgreSQL databases made for this run (``relance_bench_<random>_<n>``), then dropped."""

    def __init__(self) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        self.server = make_url(PG_ADMIN_URL)
        self.admin = create_engine(self.server, isolation_level="AUTOCOMMIT")
        self.prefix = f"relance_bench_{secrets.token_hex(3)}"
        self.names: list[str] = []

    def url(self, name: str) -> str:
        return self.server.set(database=name).render_as_string(hide_password=False)

    def create(self, template: str | None = None) -> str:
        """A new database (a copy of ``template`` when given); its name."""
        name = f"{self.prefix}_{len(self.names)}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"{copy}')
        self.names.append(name)
        return name

    def drop(self, name: str) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_all(self) -> None:
        for name in self.names:
            self.drop(name)
        self.admin.dispose()


def use_store(databases: Databases, name: str) -> None:
    """Point this process and the dispatchers it starts at database ``name``."""
    from relance.store import Store

    os.environ["RELANCE_DATABASE_URL"] = databases.url(name)
    Store(databases.url(name)).dispose()  # migrated (a no-op on a copy)


def statuses(databases: Databases, name: str) -> dict[str, int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(databases.url(name))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT status, count(*) FROM touchpoints GROUP BY status")
            )
            return {str(status): int(count) for status, count in rows}
    finally:
        engine.dispose()


def peak_rss_mb() -> float:
    """This process's peak resident memory (since the last ``reset_peak_rss``, on Linux)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def reset_peak_rss() -> bool:
    """Start measuring the peak anew from the current size (Linux >= 4.0); False elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def dispatcher(barrier: Any, results: Any, probe: bool) -> None:
    """One dispatcher process: warms up, waits for the others, runs one dispatch tick."""
    from prefect import flow

    from flows.dispatch import run_tick
    from relance.claims import due_groups, next_due
    from relance.runtime import runtime_for
    from relance.settings import Settings

    runtime = runtime_for(Settings())

    @flow(name="warm-up")
    def warm_up() -> None:
        """Prefect's client, the store's pool and the sender are ready before the tick."""

    warm_up()
    report: dict[str, Any] = {}
    if probe:  # what a dispatcher's planning queries cost at this size
        started = time.perf_counter()
        due_groups(runtime.store, NOW)
        report["due_groups_ms"] = round((time.perf_counter() - started) * 1000, 1)
        started = time.perf_counter()
        next_due(runtime.store)
        report["next_due_ms"] = round((time.perf_counter() - started) * 1000, 1)
    report["peak_rss_before_tick_mb"] = peak_rss_mb()
    report["peak_reset"] = reset_peak_rss()
    report["rss_before_tick_mb"] = peak_rss_mb()
    barrier.wait()
    report["started"] = time.time()
    summary = run_tick(now=NOW)
    report["ended"] = time.time()
    report["peak_rss_mb"] = peak_rss_mb()
    report["sent"] = sum(
        step.get("sent", 0) for steps in summary["sequences"].values() for step in steps.values()
    )
    results.put(report)


def run_dispatchers(count: int, *, probe: bool = False) -> list[dict[str, Any]]:
    """``count`` dispatcher processes at once; each one's report."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(count)
    results = context.Queue()
    processes = [
        context.Process(target=dispatcher, args=(barrier, results, probe)) for _ in range(count)
    ]
    for process in processes:
        process.start()
    reports: list[dict[str, Any]] = []
    try:
        while len(reports) < count:
            try:
                reports.append(results.get(timeout=5))
            except queue.Empty:
                failed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
                if failed:
                    raise RuntimeError(f"a dispatcher process failed (exit {failed})") from None
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    return reports


def postgres_scenario(
    databases: Databases, template: str, delay: float, count: int
) -> dict[str, Any]:
    """``count`` dispatchers over the due touches of a copy of ``template``."""
    from bench.provider import fake_sendgrid

    name = databases.create(template)
    use_store(databases, name)
    with fake_sendgrid(delay) as (url, accepted):
        os.environ["RELANCE_SENDGRID_HOST"] = url
        reports = run_dispatchers(count)
    left = {k: n for k, n in statuses(databases, name).items() if k != "sent"}
    databases.drop(name)
    sent = sum(report["sent"] for report in reports)
    seconds = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    return {
        "dispatchers": count,
        "delay_ms": int(delay * 1000),
        "emails": sent,
        "seconds": round(seconds, 2),
        "emails_per_s": round(sent / seconds, 1),
        "sent_per_dispatcher": sorted((r["sent"] for r in reports), reverse=True),
        "accepted_by_fake": accepted.requests,
        "rejected_by_fake": accepted.rejected,
        "duplicates": len(accepted.duplicates),
        "left_behind": sum(left.values()),
        "peak_rss_mb_per_dispatcher": max(r["peak_rss_mb"] for r in reports),
    }


def memory_scenario(databases: Databases, enrollments: int, due: int) -> dict[str, Any]:
    """Peak RSS of one dispatcher ticking over ``due`` touches among ``enrollments``."""
    from bench.provider import fake_sendgrid

    name = databases.create()
    use_store(databases, name)
    enroll_seconds = enroll_all(enrollments, due=due)
    with fake_sendgrid(0.0) as (url, accepted):
        os.environ["RELANCE_SENDGRID_HOST"] = url
        (report,) = run_dispatchers(1, probe=True)
    left = statuses(databases, name)
    databases.drop(name)
    return {
        "enrollments": enrollments,
        "due": due,
        "sent": report["sent"],
        "accepted_by_fake": accepted.requests,
        "still_planned": left.get("planned", 0),
        "rss_before_tick_mb": report["rss_before_tick_mb"],
        "peak_rss_during_tick_mb": report["peak_rss_mb"],
        "tick_growth_mb": round(report["peak_rss_mb"] - report["rss_before_tick_mb"], 1),
        "peak_rss_of_process_mb": max(report["peak_rss_mb"], report["peak_rss_before_tick_mb"]),
        "tick_seconds": round(report["ended"] - report["started"], 2),
        "due_groups_ms": report["due_groups_ms"],
        "next_due_ms": report["next_due_ms"],
        "enroll_per_s": round(enrollments / enroll_seconds, 1),
    }


def postgres_bench(args: argparse.Namespace) -> dict[str, Any]:
    from tests.fakes.sendgrid_server import fake_in_child_process

    results: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    databases = Databases()
    with tempfile.TemporaryDirectory() as tmp, fake_in_child_process() as (url, _):
        configure(Path(tmp), url)
        try:
            template = databases.create()
            use_store(databases, template)
            enroll_seconds = enroll_all(args.emails)
            for delay in args.delays:
                for count in args.dispatchers:
                    result = postgres_scenario(databases, template, delay, count)
                    results.append(result)
                    print(
                        f"postgresql, delay {result['delay_ms']:>3} ms, {count} dispatcher(s): "
                        f"{result['emails']} emails in {result['seconds']} s = "
                        f"{result['emails_per_s']} emails/s, per dispatcher "
                        f"{result['sent_per_dispatcher']}; fake accepted "
                        f"{result['accepted_by_fake']}, duplicates {result['duplicates']}, "
                        f"left behind {result['left_behind']}",
                        file=sys.stderr,
                    )
            for size in args.memory:
                figures = memory_scenario(databases, size, min(args.memory_due, size))
                memory.append(figures)
                print(
                    f"memory, {size} enrollments, {figures['due']} due: one dispatcher at "
                    f"{figures['rss_before_tick_mb']} MB before its tick peaks at "
                    f"{figures['peak_rss_during_tick_mb']} MB during it "
                    f"(+{figures['tick_growth_mb']} MB; process peak "
                    f"{figures['peak_rss_of_process_mb']} MB); due_groups "
                    f"{figures['due_groups_ms']} ms, next_due {figures['next_due_ms']} ms",
                    file=sys.stderr,
                )
        finally:
            databases.drop_all()
    return {
        "bench": "dispatch",
        "store": "postgresql",
        "enroll_per_s": round(args.emails / enroll_seconds, 1),
        "results": results,
        "memory": memory,
        "peak_rss_mb": peak_rss_mb(),
    }


def sqlite_bench(args: argparse.Namespace) -> dict[str, Any]:
    results = []
    for delay in args.delays:
        result = one_scenario(args.emails, delay, args.per_run)
        results.append(result)
        print(
            f"delay {result['delay_ms']:>3} ms: {result['emails']} emails in "
            f"{result['tick_seconds']} s = {result['emails_per_s']} emails/s "
            f"(fake accepted {result['accepted_by_fake']}, rejected {result['rejected_by_fake']}); "
            f"one flow run per touch: {result['one_flow_run_per_touch_emails_per_s']} emails/s "
            f"(ratio x{result['batched_vs_per_run_ratio']}); enroll {result['enroll_per_s']}/s",
            file=sys.stderr,
        )
    return {
        "bench": "dispatch",
        "store": "sqlite",
        "results": results,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    from relance.prefect_api import prefect_api

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--emails", type=int, help="default: 50000 on SQLite, 20000 on PostgreSQL")
    parser.add_argument("--delays", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--per-run", type=int, default=200, help="SQLite only")
    parser.add_argument("--dispatchers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--memory", type=int, nargs="*", default=[10_000, 100_000], help="enrollments"
    )
    parser.add_argument("--memory-due", type=int, default=1_000)
    args = parser.parse_args()
    postgres = args.store == "postgresql"
    if args.emails is None:
        args.emails = 20_000 if postgres else 50_000
    with prefect_api() as api_url:  # one API for every scenario and dispatcher process
        os.environ["PREFECT_API_URL"] = api_url
        figures = postgres_bench(args) if postgres else sqlite_bench(args)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
