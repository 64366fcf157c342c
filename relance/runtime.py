"""Composition root: builds the store, the e-mail channel and the dispatcher from Settings.

The flows, the CLI and the webhook service call ``runtime_for(settings)``; nothing below
them decides which concrete channel or database is used.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from integrations.sendgrid_mail import SendGridSender
from relance.dispatcher import Dispatcher
from relance.outbound import Sender
from relance.outbox import OutboxSender
from relance.rendering import template_environment
from relance.settings import Settings
from relance.store import Store


def email_sender(settings: Settings) -> Sender:
    """SendGrid when an API key is set, else the local outbox of .eml files."""
    if settings.sendgrid_api_key:
        return SendGridSender(
            settings.sendgrid_api_key,
            host=settings.sendgrid_host,
            timeout=settings.sendgrid_timeout_seconds,
            sandbox=settings.sendgrid_sandbox,
            max_workers=settings.claim_chunk,
            asm_group_id=settings.sendgrid_asm_group_id,
        )
    return OutboxSender(settings.outbox_path)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    store: Store
    dispatcher: Dispatcher


_runtimes: dict[str, Runtime] = {}
_lock = threading.Lock()


def runtime_for(settings: Settings) -> Runtime:
    """One runtime per distinct settings in this process (connections are pooled)."""
    key = settings.model_dump_json()
    with _lock:
        runtime = _runtimes.get(key)
        if runtime is None:
            store = Store(settings.store_url)
            dispatcher = Dispatcher(
                store,
                settings,
                email_sender(settings),
                template_environment(settings.templates_path),
            )
            runtime = _runtimes[key] = Runtime(settings, store, dispatcher)
        return runtime
