"""What one dispatch tick costs against a running Prefect server, by number of sequences due
and by number of due touches.

    .venv/bin/python bench/tick.py [--sequences 1 10 50 100] [--touches 1 1000 10000]

Starts ``prefect server start`` on a free loopback port (its own PREFECT_HOME, SQLite) and a
fake SendGrid in its own process that validates every request against the official Mail Send
schema. Then, in this process, as a worker's flow run would:

- for each count N in ``--sequences``: N one-step email sequences with one due touch each,
  one dispatch tick (a ``dispatch`` flow run, N sequence subflow runs, N task runs);
- for each count M in ``--touches``: one sequence with M due touches, one tick.

Each tick runs on a new store; a warm-up tick runs first. Prints the seconds of each tick, the
cost of each extra sequence (``(t(N) - t(1)) / (N - 1)``), then one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from bench.services import free_port  # noqa: E402

NOW = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
"""A Tuesday morning in Paris: every touch is due and inside the send window."""

SEQUENCE = """\
id: {id}
name: Tick benchmark {id}
steps:
  - id: email-benchmark
    channel: email
    wait: "0d"
    objective: Give something useful first, the benchmark, with no ask.
    resource:
      title: 2025 on-time delivery benchmark for manufacturers
      url: https://example.com/resources/on-time-delivery-benchmark-2025
    templates:
      subject: outbound-2w/{{locale}}/email-benchmark.subject.j2
      html: outbound-2w/{{locale}}/email-benchmark.html.j2
      text: outbound-2w/{{locale}}/email-benchmark.text.j2
prospect_fields: [industry]
locales: [en]
"""


@contextmanager
def prefect_server(home: Path, plain: bool = False) -> Any:
    """The Prefect server ``relance up`` runs (``prefect server start`` itself if ``plain``),
    on loopback; yields its API URL."""
    import httpx

    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": ""}
    log = (home / "server.log").open("wb")
    command = ["prefect", "server", "start"] if plain else ["relance.prefect_server"]
    server = subprocess.Popen(
        [sys.executable, "-m", *command, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the Prefect server did not start: see {home}/server.log")
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def prepare(workdir: Path, sendgrid_url: str, sequences: int, touches: int) -> None:
    """``sequences`` sequences, each with ``touches`` due touches, in a new store."""
    from relance.catalog import resolve_sequence
    from relance.enrollments import enroll
    from relance.prospect import Prospect
    from relance.settings import Settings
    from relance.store import Store

    (workdir / "sequences").mkdir(parents=True)
    ids = [f"tick-{n:03d}" for n in range(sequences)]
    for sequence_id in ids:
        (workdir / "sequences" / f"{sequence_id}.yaml").write_text(SEQUENCE.format(id=sequence_id))
    os.environ.update(
        RELANCE_HOME=str(workdir),
        RELANCE_TEMPLATES_DIR=str(ROOT / "templates"),
        RELANCE_DATA_DIR=str(workdir / "data"),
        SENDGRID_API_KEY="SG.fake-key",
        RELANCE_SENDGRID_HOST=sendgrid_url,
        RELANCE_BATCH_SIZE="2000",
        RELANCE_MAX_BATCHES_PER_TICK="100000",
        RELANCE_TICK_BUDGET_SECONDS="100000",
    )
    settings = Settings()
    store = Store(settings.store_url)
    for index, sequence_id in enumerate(ids):
        people = [
            Prospect(
                email=f"p{index}-{i}@client{i % 997}.example",
                first_name=f"Prénom{i}",
                company=f"Client {i % 997}",
                timezone="Europe/Paris",
                country="FR",
                locale="en",
                fields={"industry": "industrie"},
            )
            for i in range(touches)
        ]
        sequence = resolve_sequence(sequence_id, settings)
        enroll(store, sequence, people, start=NOW - timedelta(hours=1), now=NOW)
    store.dispose()


def one_tick(sendgrid_url: str, sequences: int, touches: int) -> dict[str, Any]:
    from flows.dispatch import run_tick

    with tempfile.TemporaryDirectory() as tmp:
        prepare(Path(tmp), sendgrid_url, sequences, touches)
        started = time.perf_counter()
        cpu = time.process_time()
        summary = run_tick(now=NOW)
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu
    sent = sum(
        report.get("sent", 0)
        for steps in summary["sequences"].values()
        for report in steps.values()
    )
    if sent != sequences * touches:
        raise SystemExit(f"expected {sequences * touches} emails sent, got {sent}")
    return {
        "sequences": sequences,
        "touches": touches,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, nargs="+", default=[1, 10, 50, 100])
    parser.add_argument("--touches", type=int, nargs="+", default=[1, 1000, 10000])
    parser.add_argument(
        "--plain-prefect",
        action="store_true",
        help="run `prefect server start` rather than the server `relance up` runs",
    )
    args = parser.parse_args()

    from tests.fakes.sendgrid_server import fake_in_child_process

    results: dict[str, Any] = {
        "bench": "tick",
        "server": "prefect server start" if args.plain_prefect else "relance up",
        "by_sequences": [],
        "by_touches": [],
    }
    with (
        tempfile.TemporaryDirectory() as home,
        prefect_server(Path(home), args.plain_prefect) as api_url,
        fake_in_child_process(0.0) as (sendgrid_url, counts),
    ):
        os.environ["PREFECT_API_URL"] = api_url
        print(f"Prefect server at {api_url}; fake SendGrid at {sendgrid_url}")
        one_tick(sendgrid_url, 1, 1)  # warm-up: imports, Prefect's client, the flows
        for count in args.sequences:
            row = one_tick(sendgrid_url, count, 1)
            results["by_sequences"].append(row)
            print(
                f"{count:>5} sequence(s), 1 due touch each: {row['seconds']:>7.2f} s"
                f"  (cpu {row['cpu_seconds']:.2f} s)"
            )
        for count in args.touches:
            row = one_tick(sendgrid_url, 1, count)
            results["by_touches"].append(row)
            print(
                f"    1 sequence, {count:>6} due touch(es): {row['seconds']:>7.2f} s"
                f"  ({count / row['seconds']:.0f} emails/s)"
            )
    results["rejected_by_fake"] = counts.get("rejected")
    rows = results["by_sequences"]
    if len(rows) > 1 and rows[0]["sequences"] == 1:
        last = rows[-1]
        per_extra = (last["seconds"] - rows[0]["seconds"]) / (last["sequences"] - 1)
        results["seconds_per_extra_sequence"] = round(per_extra, 4)
        print(
            f"each extra sequence adds {per_extra:.3f} s to a tick "
            f"(1 -> {last['sequences']} sequences)"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
