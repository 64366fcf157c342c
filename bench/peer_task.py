"""The work every peer of ``bench/peers.py`` does for one email, and its Celery app.

One email = render the shipped outbound-2w ``email-benchmark`` step for prospect number
``index`` (the same prospects as ``bench/dispatch.py`` enrolls), build the Mail Send
request with SendGrid's helpers, and send it with the official ``SendGridAPIClient``: what
Relance's tick does per email, without the store. Each process (or thread) keeps one
client, as a careful peer would.

The Celery worker imports this module (``celery -A bench.peer_task worker``); it reads
its broker and queue from ``RELANCE_BENCH_BROKER`` and ``RELANCE_BENCH_QUEUE``, and
counts done emails in the Redis key ``RELANCE_BENCH_COUNTER``.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from celery import Celery  # noqa: E402

BROKER = os.environ.get("RELANCE_BENCH_BROKER", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("RELANCE_BENCH_QUEUE", "relance-bench")
COUNTER = os.environ.get("RELANCE_BENCH_COUNTER", "relance-bench:done")

app = Celery("relance_bench", broker=BROKER)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


class _Parts:
    """What one process needs to render and send: loaded once."""

    def __init__(self) -> None:
        from relance.catalog import resolve_sequence
        from relance.rendering import Sender, template_environment
        from relance.settings import Settings

        self.settings = Settings()
        self.sequence = resolve_sequence("bench", self.settings)
        self.step = self.sequence.step("email-benchmark")
        self.env = template_environment(self.settings.templates_path)
        self.sender = Sender.from_settings(self.settings)


@cache
def _parts() -> _Parts:
    return _Parts()


_local = threading.local()


def _client() -> Any:
    from sendgrid import SendGridAPIClient

    client = getattr(_local, "client", None)
    if client is None:
        settings = _parts().settings
        client = SendGridAPIClient(api_key=settings.sendgrid_api_key, host=settings.sendgrid_host)
        client.client.timeout = settings.sendgrid_timeout_seconds
        _local.client = client
    return client


def prospect(index: int) -> Any:
    """Prospect number ``index``, as ``bench/dispatch.py`` enrolls it."""
    from relance.prospect import Prospect

    return Prospect(
        email=f"prospect{index}@client{index % 997}.example",
        first_name=f"Prénom{index}",
        company=f"Client {index % 997}",
        deal_value=5_000 + index % 50 * 1_000,
        cycle_days=30 + index % 90,
        timezone="Europe/Paris",
        country="FR",
        locale="fr" if index % 2 else "en",
        fields={"industry": "industrie"},
    )


def render_and_send(index: int) -> str | None:
    """Render the step for prospect ``index`` and send it; SendGrid's X-Message-Id."""
    from integrations.sendgrid_mail import build_mail
    from relance.envelope import reply_address, unsubscribe_headers, unsubscribe_url
    from relance.outbound import OutboundEmail, message_id_for
    from relance.rendering import render_step

    parts = _parts()
    settings = parts.settings
    person = prospect(index)
    token = secrets.token_hex(12)
    rendered = render_step(
        parts.env,
        parts.sequence,
        parts.step,
        person,
        sender=parts.sender,
        unsubscribe_url=unsubscribe_url(settings.public_url, token),
    )
    email = OutboundEmail(
        touchpoint_id=str(index),
        enrollment_id=str(index),
        sequence_id=parts.sequence.id,
        step_id=parts.step.id,
        to_email=person.email,
        to_name=person.first_name or None,
        from_email=settings.sender_email,
        from_name=settings.sender_name,
        reply_to=reply_address(token, settings.inbound_domain),
        subject=rendered.subject or "",
        text=rendered.text or "",
        html=rendered.html,
        message_id=message_id_for(secrets.token_hex(16), settings.mail_domain),
        headers=unsubscribe_headers(settings.public_url, token, settings.inbound_domain),
        categories=[parts.sequence.id, parts.step.id],
    )
    response = _client().send(build_mail(email).get())
    message_id: str | None = response.headers.get("X-Message-Id")
    return message_id


_redis: Any = None


@app.task(name="relance_bench.send_one")
def send_one(index: int) -> None:
    """One email, then one more in the Redis counter the benchmark watches."""
    global _redis
    render_and_send(index)
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(BROKER)
    _redis.incr(COUNTER)
