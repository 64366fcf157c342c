"""End-to-end dispatch throughput: due email touches -> dispatch flow -> official SendGrid
client -> a local fake SendGrid (in its own process) that validates every request against
the official Mail Send schema.

    .venv/bin/python bench/dispatch.py [--emails 50000] [--delays 0 0.1] [--per-run 200]

For each delay: enrolls ``--emails`` prospects in a one-step email sequence (the shipped
outbound benchmark email, with its real templates), runs ONE dispatch tick on Prefect (a
task run per batch), and prints emails/s from the tick's start to its end. Then times
``--per-run`` touches done as one flow run each, and prints the ratio. Ends with one line
of JSON holding every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
        RELANCE_CLAIM_CHUNK="64",
    )


def enroll_all(count: int) -> float:
    from relance.catalog import resolve_sequence
    from relance.enrollments import enroll
    from relance.prospect import Prospect
    from relance.settings import Settings
    from relance.store import Store

    settings = Settings()
    sequence = resolve_sequence("bench", settings)
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
    started = time.perf_counter()
    enroll(Store(settings.store_url), sequence, people, start=NOW - timedelta(hours=1), now=NOW)
    return time.perf_counter() - started


def one_scenario(emails: int, delay: float, per_run: int) -> dict[str, Any]:
    from prefect import flow

    from flows.dispatch import dispatch
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
            summary = dispatch(now=NOW)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=50_000)
    parser.add_argument("--delays", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--per-run", type=int, default=200)
    args = parser.parse_args()
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
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "bench": "dispatch",
                "store": "sqlite",
                "results": results,
                "peak_rss_mb": round(peak_mb, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
