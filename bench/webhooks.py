"""How fast `relance serve` takes SendGrid's signed events, and how soon a reply pauses.

    .venv/bin/python bench/webhooks.py [--prospects 500] [--events 20000] [--seconds 30]
                                       [--batches 100 1] [--concurrency 4] [--probes 50]

Starts `relance serve` in a child process on loopback (a temporary SQLite store, a key
pair made here, an inbound secret), enrolls `--prospects` prospects in outbound-2w, then:

1. posts delivered/open/click events to `POST /webhooks/sendgrid/events`, signed as
   SendGrid signs them, `--batches` events per request (SendGrid posts up to a few hundred
   at once), from `--concurrency` connections, at most `--events` events or `--seconds`
   per batch size: events/s accepted (signature checked, recorded) and request latency;
2. posts `--probes` replies to `POST /webhooks/sendgrid/inbound` (Inbound Parse, one at a
   time) and measures from the post until this process reads the enrollment as paused
   in the store; then the same for a bounce event until the enrollment reads stopped.

Prints one line per measure on stderr, then one JSON line with every figure on stdout.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from integrations.sendgrid_events import SIGNATURE_HEADER, TIMESTAMP_HEADER  # noqa: E402
from relance.catalog import resolve_sequence  # noqa: E402
from relance.enrollments import enroll  # noqa: E402
from relance.envelope import reply_address  # noqa: E402
from relance.prospect import Prospect  # noqa: E402
from relance.settings import Settings  # noqa: E402
from relance.store import Store  # noqa: E402
from relance.tables import enrollments, prospects, touchpoints  # noqa: E402
from tests.web_support import free_port  # noqa: E402

INBOUND_SECRET = "bench-inbound-secret"
KINDS = ("delivered", "open", "click")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


# --- the service --------------------------------------------------------------------------


@contextmanager
def service(settings: Settings, key: ec.EllipticCurvePrivateKey) -> Iterator[str]:
    """`relance serve` in a child process, as production runs it; yields its base URL."""
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    port = free_port()
    env = {
        **os.environ,
        "RELANCE_HOME": str(settings.home),
        "RELANCE_DATA_DIR": str(settings.data_dir),
        "RELANCE_SENDGRID_WEBHOOK_PUBLIC_KEY": base64.b64encode(public).decode(),
        "RELANCE_INBOUND_SECRET": INBOUND_SECRET,
        "RELANCE_INBOUND_DOMAIN": settings.inbound_domain,
        "PREFECT_API_URL": "",  # no Prefect events: this measures Relance, not a Prefect API
    }
    relance = Path(sys.executable).with_name("relance")
    output = (settings.data_dir / "serve.log").open("wb")
    child = subprocess.Popen(
        [str(relance), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"relance serve exited; see {output.name}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("relance serve did not start within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        child.terminate()
        child.wait(timeout=20)
        output.close()


# --- the data -----------------------------------------------------------------------------


def enroll_prospects(settings: Settings, store: Store, count: int) -> list[dict[str, Any]]:
    """Enroll `count` prospects (each at its own company) in outbound-2w; their ids."""
    sequence = resolve_sequence("outbound-2w", settings)
    people = [
        Prospect(
            email=f"p{index}@company{index}.example",
            first_name=f"P{index}",
            company=f"Company {index}",
            fields={"industry": "packaging"},
        )
        for index in range(count)
    ]
    now = datetime.now(UTC)
    enroll(store, sequence, people, start=now, now=now)
    with store.reading() as connection:
        rows = connection.execute(
            select(
                enrollments.c.id,
                enrollments.c.reply_token,
                prospects.c.email,
                touchpoints.c.id.label("touchpoint_id"),
            )
            .join(prospects, prospects.c.id == enrollments.c.prospect_id)
            .join(touchpoints, touchpoints.c.enrollment_id == enrollments.c.id)
            .where(touchpoints.c.channel == "email")
            .order_by(enrollments.c.id, touchpoints.c.position)
        ).all()
    by_enrollment: dict[int, dict[str, Any]] = {}
    for row in rows:
        entry = by_enrollment.setdefault(
            row.id,
            {"enrollment_id": row.id, "token": row.reply_token, "email": row.email, "tps": []},
        )
        entry["tps"].append(row.touchpoint_id)
    return list(by_enrollment.values())


class Signer:
    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self.key = key

    def headers(self, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        der = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            SIGNATURE_HEADER: base64.b64encode(der).decode(),
            TIMESTAMP_HEADER: timestamp,
            "Content-Type": "application/json",
        }


def event_stream(targets: list[dict[str, Any]], prefix: str) -> Iterator[dict[str, Any]]:
    """Endless delivered/open/click events on the prospects' email touchpoints."""
    number = 0
    while True:
        for target in targets:
            for touchpoint_id in target["tps"]:
                number += 1
                yield {
                    "email": target["email"],
                    "timestamp": int(time.time()),
                    "event": KINDS[number % len(KINDS)],
                    "sg_event_id": f"{prefix}-{number}",
                    "sg_message_id": f"bench{number}.filter0001",
                    "touchpoint_id": str(touchpoint_id),
                    "enrollment_id": str(target["enrollment_id"]),
                    "sequence_id": "outbound-2w",
                    "step_id": "email-benchmark",
                }


# --- the measures -------------------------------------------------------------------------


def throughput(
    url: str,
    signer: Signer,
    targets: list[dict[str, Any]],
    *,
    per_request: int,
    max_events: int,
    seconds: float,
    concurrency: int,
) -> dict[str, Any]:
    """Post signed batches of `per_request` events; events/s accepted and latencies."""
    stream = event_stream(targets, f"b{per_request}")
    requests_count = max(1, max_events // per_request)
    bodies = [
        json.dumps([next(stream) for _ in range(per_request)]).encode()
        for _ in range(requests_count)
    ]
    signed = [(body, signer.headers(body)) for body in bodies]  # signed before the clock runs
    latencies: list[float] = []
    accepted = 0
    refused = 0
    deadline = time.perf_counter() + seconds

    def worker(share: list[tuple[bytes, dict[str, str]]]) -> tuple[list[float], int, int]:
        mine: list[float] = []
        ok = bad = 0
        with httpx.Client(base_url=url, timeout=30) as client:
            for body, headers in share:
                if time.perf_counter() > deadline:
                    break
                started = time.perf_counter()
                response = client.post("/webhooks/sendgrid/events", content=body, headers=headers)
                mine.append(time.perf_counter() - started)
                if response.status_code == 200:
                    ok += response.json()["accepted"]
                else:
                    bad += 1
        return mine, ok, bad

    shares = [signed[index::concurrency] for index in range(concurrency)]
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for mine, ok, bad in pool.map(worker, shares):
            latencies.extend(mine)
            accepted += ok
            refused += bad
    elapsed = time.perf_counter() - started
    return {
        "events_per_request": per_request,
        "concurrency": concurrency,
        "requests": len(latencies),
        "refused": refused,
        "events_accepted": accepted,
        "seconds": round(elapsed, 2),
        "events_per_second": round(accepted / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
    }


def delay_until(
    store: Store, enrollment_id: int, status: str, post: Callable[[], httpx.Response]
) -> tuple[float, float]:
    """(seconds until the answer, seconds until the store shows `status`) for one post."""
    started = time.perf_counter()
    response = post()
    answered = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"unexpected answer {response.status_code}: {response.text}")
    while True:
        with store.reading() as connection:
            current = connection.execute(
                select(enrollments.c.status).where(enrollments.c.id == enrollment_id)
            ).scalar_one()
        if current == status:
            return answered, time.perf_counter() - started
        if time.perf_counter() - started > 30:
            raise RuntimeError(
                f"enrollment {enrollment_id} still {current} 30 s after {response.text}"
            )
        time.sleep(0.001)


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    """An Inbound Parse form (multipart/form-data, as SendGrid posts it)."""
    boundary = "relance-bench-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    return body, f"multipart/form-data; boundary={boundary}"


def reply_delays(
    url: str, settings: Settings, store: Store, targets: list[dict[str, Any]]
) -> dict[str, Any]:
    """A reply through Inbound Parse, until the enrollment reads paused."""
    answers: list[float] = []
    delays: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for number, target in enumerate(targets):
            to = reply_address(target["token"], settings.inbound_domain)
            headers = (
                f"From: {target['email']}\nTo: {to}\nSubject: Re: Benchmark\n"
                f"Message-ID: <bench-reply-{number}@company.example>\n"
            )
            body, content_type = multipart(
                {
                    "headers": headers,
                    "envelope": json.dumps({"to": [to], "from": target["email"]}),
                    "from": target["email"],
                    "to": to,
                    "subject": "Re: Benchmark",
                    "text": "Yes, let us talk on Thursday at 10.\n",
                    "charsets": json.dumps({"text": "utf-8", "subject": "utf-8"}),
                }
            )

            def post(body: bytes = body, content_type: str = content_type) -> httpx.Response:
                return client.post(
                    f"/webhooks/sendgrid/inbound/{INBOUND_SECRET}",
                    content=body,
                    headers={"Content-Type": content_type},
                )

            answered, observed = delay_until(store, target["enrollment_id"], "paused", post)
            answers.append(answered)
            delays.append(observed)
    return summary("reply_to_paused", answers, delays)


def bounce_delays(
    url: str, signer: Signer, store: Store, targets: list[dict[str, Any]]
) -> dict[str, Any]:
    """A bounce through the Event Webhook, until the enrollment reads stopped."""
    answers: list[float] = []
    delays: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for number, target in enumerate(targets):
            event = {
                "email": target["email"],
                "timestamp": int(time.time()),
                "event": "bounce",
                "type": "bounce",
                "reason": "550 5.1.1 user unknown",
                "sg_event_id": f"bounce-{number}",
                "touchpoint_id": str(target["tps"][0]),
            }
            body = json.dumps([event]).encode()

            def post(body: bytes = body) -> httpx.Response:
                return client.post(
                    "/webhooks/sendgrid/events", content=body, headers=signer.headers(body)
                )

            answered, observed = delay_until(store, target["enrollment_id"], "stopped", post)
            answers.append(answered)
            delays.append(observed)
    return summary("bounce_to_stopped", answers, delays)


def summary(name: str, answers: list[float], delays: list[float]) -> dict[str, Any]:
    return {
        "measure": name,
        "probes": len(delays),
        "answer_p50_ms": round(statistics.median(answers) * 1000, 2),
        "p50_ms": round(statistics.median(delays) * 1000, 2),
        "p95_ms": round(percentile(delays, 0.95) * 1000, 2),
        "max_ms": round(max(delays) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prospects", type=int, default=500)
    parser.add_argument("--events", type=int, default=20_000, help="most events per batch size")
    parser.add_argument("--seconds", type=float, default=30, help="most seconds per batch size")
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 1])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--probes", type=int, default=50)
    options = parser.parse_args()
    if options.prospects < 2 * options.probes:
        parser.error("--prospects must be at least twice --probes")

    figures: dict[str, Any] = {"throughput": []}
    with tempfile.TemporaryDirectory(prefix="relance-bench-") as tmp:
        settings = Settings(home=ROOT, data_dir=Path(tmp), inbound_domain="reply.bench.example")
        store = Store(settings.store_url)
        started = time.perf_counter()
        targets = enroll_prospects(settings, store, options.prospects)
        log(f"enrolled {len(targets)} prospects in {time.perf_counter() - started:.1f} s")
        key = ec.generate_private_key(ec.SECP256R1())
        signer = Signer(key)
        with service(settings, key) as url:
            for per_request in options.batches:
                run = throughput(
                    url,
                    signer,
                    targets,
                    per_request=per_request,
                    max_events=options.events,
                    seconds=options.seconds,
                    concurrency=options.concurrency,
                )
                figures["throughput"].append(run)
                log(
                    f"{per_request:>4} events/request x{options.concurrency}: "
                    f"{run['events_per_second']:>8} events/s accepted "
                    f"({run['events_accepted']} in {run['seconds']} s, {run['refused']} refused), "
                    f"p50 {run['p50_ms']} ms, p95 {run['p95_ms']} ms"
                )
            probes = options.probes
            for result in (
                reply_delays(url, settings, store, targets[:probes]),
                bounce_delays(url, signer, store, targets[probes : 2 * probes]),
            ):
                figures[result["measure"]] = result
                log(
                    f"{result['measure']}: answered in {result['answer_p50_ms']} ms (p50); "
                    f"the store showed it after p50 {result['p50_ms']} ms, "
                    f"p95 {result['p95_ms']} ms, max {result['max_ms']} ms "
                    f"({result['probes']} probes)"
                )
        store.dispose()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
