"""How many e-mails per second `SendGridSender.send_many` pushes through the official
sendgrid client to the local fake SendGrid, which validates every body against the schema.

    .venv/bin/python bench/sendgrid_client.py [--count 2000] [--workers 8 32 64]
                                              [--delays 0 0.1] [--fake thread|process]

`--fake thread` runs the fake in this process (it then shares the interpreter lock with the
client); `--fake process` runs it in a child process, as a real provider would be.
Prints one line per run on stderr, then one JSON line with every figure on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from integrations.sendgrid_mail import SendGridSender  # noqa: E402
from relance.outbound import OutboundEmail, SendResult, message_id_for  # noqa: E402
from tests.fakes.sendgrid_server import FakeSendGrid, fake_in_child_process  # noqa: E402


def messages(count: int) -> list[OutboundEmail]:
    return [
        OutboundEmail(
            touchpoint_id=f"tp{index}",
            enrollment_id=f"en{index}",
            sequence_id="bench",
            step_id="intro",
            to_email=f"prospect{index}@example.com",
            to_name=f"Prospect {index}",
            from_email="sales@example.com",
            from_name="Sales",
            subject=f"Hello {index}",
            text="Hello,\n\nShall we talk next week?\n",
            html="<p>Hello,</p><p>Shall we talk next week?</p>",
            message_id=message_id_for(f"tp{index}", "example.com"),
            categories=("relance", "bench"),
        )
        for index in range(count)
    ]


@contextmanager
def fake_sendgrid(where: str, delay: float) -> Iterator[tuple[str, str]]:
    """(url, api key) of a fake SendGrid running in this process or in a child process."""
    if where == "thread":
        with FakeSendGrid(delay=delay) as fake:
            yield fake.url, fake.api_key
        return
    with fake_in_child_process(delay) as (url, _):
        yield url, FakeSendGrid().api_key


def run(count: int, workers: int, delay: float, where: str) -> dict[str, float | int | str]:
    batch = messages(count)
    with fake_sendgrid(where, delay) as (url, api_key):
        sender = SendGridSender(api_key=api_key, host=url, max_workers=workers)
        started = time.perf_counter()
        outcomes = sender.send_many(batch)
        elapsed = time.perf_counter() - started
    sent = sum(isinstance(outcome, SendResult) for outcome in outcomes)
    return {
        "fake": where,
        "delay_s": delay,
        "workers": workers,
        "count": count,
        "sent": sent,
        "seconds": round(elapsed, 3),
        "per_second": round(sent / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="SendGridSender.send_many against the fake.")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--delays", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--fake", choices=["thread", "process"], default="thread")
    arguments = parser.parse_args()
    results = []
    for delay in arguments.delays:
        for workers in arguments.workers:
            result = run(arguments.count, workers, delay, arguments.fake)
            results.append(result)
            print(
                f"fake in {arguments.fake}, delay {delay * 1000:.0f} ms, {workers} workers: "
                f"{result['sent']}/{result['count']} sent, {result['per_second']}/s",
                file=sys.stderr,
            )
    print(json.dumps({"benchmark": "sendgrid_client", "runs": results}))


if __name__ == "__main__":
    main()
