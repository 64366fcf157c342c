"""Relance's tick against its peers, side by side: emails/s sending the same rendered step
to the same fake SendGrid, in one run.

    .venv/bin/pip install -e '.[bench]'     # Celery and the Redis client: bench only
    .venv/bin/python bench/peers.py [--emails 5000] [--delay 0] [--rounds 1]
                                    [--broker redis://127.0.0.1:6379/0]

Every sender renders the shipped outbound-2w ``email-benchmark`` step (subject, HTML and
text, in English or French) for ``--emails`` prospects and sends each one with the official
``sendgrid`` client to one fake SendGrid in its own process, which checks every request
against the official Mail Send schema (tests/fakes/sendgrid_server.py):

- relance:   the prospects are enrolled in a one-step sequence, then ONE dispatch tick
             (``flows.dispatch.run_tick``) on Prefect claims, renders, sends and records them;
- celery:    Celery 5 on Redis, a prefork worker with concurrency 2 (started here, stopped at
             the end), one task per email (bench/peer_task.py);
- loop:      a plain loop, one email after the other;
- threads:   the same loop on 8 threads.

The clock runs from the first email handed over to the last one done (for Celery, from the
first task queued until the worker has counted them all). With ``--rounds`` above 1, every
sender runs that many times, in turn, and its median counts. Prints each figure and the
ratios relance/celery and relance/threads, then one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from bench.dispatch import NOW, configure, enroll_all  # noqa: E402

THREADS = 8
CELERY_CONCURRENCY = 2


def relance_tick(emails: int) -> tuple[int, float]:
    """(sent, seconds) of one tick over ``emails`` due touches, in a fresh store."""
    from prefect import flow

    from flows.dispatch import run_tick
    from relance.runtime import runtime_for
    from relance.settings import Settings

    data = Path(tempfile.mkdtemp(prefix="relance-peers-"))
    os.environ["RELANCE_DATA_DIR"] = str(data)
    enroll_all(emails)
    runtime_for(Settings())  # the store's pool, the sender, the templates: not measured

    @flow(name="warm-up")
    def warm_up() -> None:
        """Prefect's client is ready before the tick."""

    warm_up()
    started = time.perf_counter()
    summary = run_tick(now=NOW)
    seconds = time.perf_counter() - started
    return int(summary["sequences"]["bench"]["email-benchmark"]["sent"]), seconds


def plain_loop(emails: int) -> tuple[int, float]:
    from bench.peer_task import render_and_send

    render_and_send(0)  # templates compiled, client built: not measured
    started = time.perf_counter()
    for index in range(emails):
        render_and_send(index)
    return emails, time.perf_counter() - started


def threaded_loop(emails: int) -> tuple[int, float]:
    from bench.peer_task import render_and_send

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(render_and_send, range(THREADS)))  # one warm client per thread
        started = time.perf_counter()
        list(pool.map(render_and_send, range(emails)))
        return emails, time.perf_counter() - started


@contextmanager
def celery_worker(broker: str) -> Iterator[Callable[[int], tuple[int, float]]]:
    """A prefork Celery worker (concurrency 2) on its own queue; yields the measure."""
    import redis

    suffix = secrets.token_hex(4)
    os.environ.update(
        RELANCE_BENCH_BROKER=broker,
        RELANCE_BENCH_QUEUE=f"relance-bench-{suffix}",
        RELANCE_BENCH_COUNTER=f"relance-bench:{suffix}:done",
    )
    from bench import peer_task

    counter = os.environ["RELANCE_BENCH_COUNTER"]
    peer_task.app.conf.task_default_queue = os.environ["RELANCE_BENCH_QUEUE"]
    client = redis.Redis.from_url(broker)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.peer_task",
            "worker",
            "--pool=prefork",
            f"--concurrency={CELERY_CONCURRENCY}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-Q",
            os.environ["RELANCE_BENCH_QUEUE"],
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,  # its banner
    )

    def wait_for(total: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while int(client.get(counter) or 0) < total:
            if worker.poll() is not None:
                raise RuntimeError(f"the Celery worker stopped (exit {worker.returncode})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did {client.get(counter)} of {total}")
            time.sleep(0.02)

    def measure(emails: int) -> tuple[int, float]:
        client.set(counter, 0)
        started = time.perf_counter()
        for index in range(emails):
            peer_task.send_one.delay(index)
        wait_for(emails, timeout=600)
        return emails, time.perf_counter() - started

    try:
        client.set(counter, 0)
        for index in range(4 * CELERY_CONCURRENCY):  # both children warm: not measured
            peer_task.send_one.delay(index)
        wait_for(4 * CELERY_CONCURRENCY, timeout=120)
        yield measure
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        client.delete(counter, os.environ["RELANCE_BENCH_QUEUE"])
        client.close()


def main() -> None:
    from relance.prefect_api import prefect_api
    from tests.fakes.sendgrid_server import fake_in_child_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=5_000)
    parser.add_argument("--delay", type=float, default=0.0, help="fake SendGrid's answer delay, s")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        sys.exit("bench/peers.py needs Celery: .venv/bin/pip install -e '.[bench]'")

    seconds: dict[str, list[float]] = {"relance": [], "celery": [], "loop": [], "threads": []}
    with (
        tempfile.TemporaryDirectory() as tmp,
        fake_in_child_process(args.delay) as (url, counts),
        prefect_api() as api_url,
    ):
        os.environ["PREFECT_API_URL"] = api_url
        configure(Path(tmp), url)
        with celery_worker(args.broker) as celery_measure:
            senders: dict[str, Callable[[int], tuple[int, float]]] = {
                "relance": relance_tick,
                "celery": celery_measure,
                "loop": plain_loop,
                "threads": threaded_loop,
            }
            for round_number in range(args.rounds):
                for name, measure in senders.items():
                    sent, took = measure(args.emails)
                    if sent != args.emails:
                        raise RuntimeError(f"{name} sent {sent} of {args.emails}")
                    seconds[name].append(took)
                    print(
                        f"round {round_number + 1}, {name:>7}: {sent} emails in {took:.2f} s"
                        f" = {sent / took:.1f} emails/s",
                        file=sys.stderr,
                    )
    rates = {name: round(args.emails / statistics.median(s), 1) for name, s in seconds.items()}
    ratios = {
        "relance_vs_celery": round(rates["relance"] / rates["celery"], 2),
        "relance_vs_threads": round(rates["relance"] / rates["threads"], 2),
        "relance_vs_loop": round(rates["relance"] / rates["loop"], 2),
    }
    for name, rate in rates.items():
        print(f"{name:>7}: {rate} emails/s", file=sys.stderr)
    print(
        f"relance/celery x{ratios['relance_vs_celery']} (goal >= 1.3), relance/threads "
        f"x{ratios['relance_vs_threads']} (goal >= 0.8); fake accepted "
        f"{counts.get('accepted')}, rejected {counts.get('rejected')}",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "bench": "peers",
                "emails": args.emails,
                "delay_ms": int(args.delay * 1000),
                "rounds": args.rounds,
                "emails_per_s": rates,
                "seconds": {name: [round(s, 2) for s in runs] for name, runs in seconds.items()},
                **ratios,
                "accepted_by_fake": counts.get("accepted"),
                "rejected_by_fake": counts.get("rejected"),
            }
        )
    )


if __name__ == "__main__":
    main()
