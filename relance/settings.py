"""Settings, read once from the environment (``RELANCE_`` prefix) at start-up and passed down.

Nothing below the CLI, the flows and the webhook service reads ``os.environ``.

``settings_error`` turns pydantic's report on a bad environment into a ``SettingsError``
naming each variable and what it expects, in one line each; ``check_service_secrets``
refuses to serve with a secret shorter than ``MIN_SECRET_LENGTH`` (``relance serve``, and
anything else that starts the service, calls it before listening).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from relance.errors import SettingsError

MIN_SECRET_LENGTH = 16
"""Shortest webhook secret or SDR token the service starts with."""

SECRETS = ("sdr_token", "inbound_secret", "calcom_secret", "calendly_signing_key")
"""Settings that are shared secrets (the public key and the API key are not guessed)."""


class Settings(BaseSettings):
    """Everything Relance can be told from the outside."""

    model_config = SettingsConfigDict(env_prefix="RELANCE_", extra="ignore")

    home: Path = Field(default=Path(), description="Project directory (sequences/, templates/).")
    data_dir: Path = Field(
        default=Path("var"), description="Where the SQLite store and outbox live."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in data_dir."
    )
    sequences_dir: Path | None = None
    templates_dir: Path | None = None
    outbox_dir: Path | None = None

    sendgrid_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SENDGRID_API_KEY", "RELANCE_SENDGRID_API_KEY"),
    )
    sendgrid_host: str = Field(default="https://api.sendgrid.com")
    sendgrid_sandbox: bool = False
    sendgrid_timeout_seconds: float = 10.0
    sendgrid_asm_group_id: int | None = Field(
        default=None, description="SendGrid unsubscribe group (asm) attached to every email."
    )
    sendgrid_webhook_public_key: str | None = Field(
        default=None,
        description="Event Webhook verification key (base64 DER or PEM), from SendGrid's settings.",
    )
    sendgrid_webhook_tolerance_seconds: int = Field(
        default=600,
        ge=1,
        description="Event Webhook requests signed further than this from now are refused.",
    )

    sender_email: str = "relance@example.com"
    sender_name: str = "Relance"
    company_name: str = "Relance"

    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where `relance serve` is reachable (unsubscribe links, webhooks).",
    )
    mail_domain: str = Field(default="relance.local", description="Domain of Message-IDs.")
    inbound_domain: str = Field(
        default="reply.relance.local",
        description="Inbound Parse domain: replies go to reply+<token>@<inbound_domain>.",
    )
    inbound_secret: str | None = Field(
        default=None,
        description="Secret protecting the Inbound Parse endpoint (basic auth password or "
        "/webhooks/sendgrid/inbound/<secret>).",
    )
    calendly_signing_key: str | None = None
    calendly_tolerance_seconds: int = Field(
        default=300, ge=1, description="Calendly signatures older than this are refused."
    )
    calcom_secret: str | None = None
    sdr_token: str | None = Field(
        default=None,
        description="Token to log in to the SDR page (/sdr); without it the page answers 403.",
    )
    sdr_login_failures_per_minute: int = Field(
        default=10,
        ge=1,
        description="Wrong SDR tokens (form or bearer) one client address may send per minute; "
        "then 429 with Retry-After.",
    )
    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, description="Largest webhook body accepted (413 above)."
    )
    body_timeout_seconds: float = Field(
        default=30,
        gt=0,
        description="A request body must arrive within this long (408 otherwise).",
    )
    max_inbound_bytes: int = Field(
        default=30_000_000,
        ge=1024,
        description="Largest Inbound Parse post (a reply with its attachments; SendGrid: 30 MB).",
    )
    out_of_office_days: int = Field(
        default=7, ge=1, description="Snooze after an auto-reply that gives no return date."
    )
    pause_company_on_reply: bool = Field(
        default=True,
        description="A reply pauses the other active enrollments at the same company domain.",
    )
    free_mail_domains: list[str] = Field(
        default_factory=lambda: [
            "gmail.com",
            "googlemail.com",
            "yahoo.com",
            "yahoo.fr",
            "hotmail.com",
            "hotmail.fr",
            "outlook.com",
            "outlook.fr",
            "live.com",
            "live.fr",
            "msn.com",
            "icloud.com",
            "me.com",
            "aol.com",
            "gmx.com",
            "gmx.de",
            "gmx.fr",
            "web.de",
            "orange.fr",
            "wanadoo.fr",
            "free.fr",
            "sfr.fr",
            "laposte.net",
            "protonmail.com",
            "proton.me",
            "yandex.com",
            "mail.com",
            "libero.it",
            "hey.com",
            "zoho.com",
        ],
        description="Domains never treated as a company (same-company pause).",
    )

    sender_hourly_cap: int | None = Field(
        default=None, ge=1, description="At most this many emails per rolling hour."
    )
    sender_daily_cap: int | None = Field(
        default=None, ge=1, description="At most this many emails per rolling 24 hours."
    )
    sender_min_spacing_seconds: float = Field(
        default=0, ge=0, description="At least this long between two emails."
    )
    domain_daily_cap: int | None = Field(
        default=None, ge=1, description="At most this many emails per recipient domain per day."
    )
    tick_budget_seconds: float = Field(
        default=50, gt=0, description="A tick starts no new batch after this long."
    )

    batch_size: int = Field(default=500, ge=1, description="Touches one step task handles.")
    claim_chunk: int = Field(
        default=128,
        ge=1,
        description="Touches claimed per transaction, and emails in flight at once: at "
        "100 ms per provider call, 128 in flight keep well above 300 emails/s.",
    )
    max_batches_per_tick: int = Field(
        default=20, ge=1, description="Batches one step may run in one tick (fairness bound)."
    )
    sending_lease_minutes: float = Field(
        default=10, gt=0, description="After this, a touch left 'sending' is flagged for review."
    )

    @property
    def sequences_path(self) -> Path:
        return self.sequences_dir or self.home / "sequences"

    @property
    def templates_path(self) -> Path:
        return self.templates_dir or self.home / "templates"

    @property
    def outbox_path(self) -> Path:
        return self.outbox_dir or self.data_dir / "outbox"

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'relance.db').as_posix()}"


def variable_of(field: str) -> str:
    """The environment variable of a setting: ``max_body_bytes`` -> RELANCE_MAX_BODY_BYTES."""
    if field == "sendgrid_api_key":
        return "SENDGRID_API_KEY"
    return f"RELANCE_{field.upper()}"


def _hidden(field: str) -> bool:
    return field in SECRETS or field == "sendgrid_api_key"


def settings_error(error: ValidationError | SourceError) -> SettingsError:
    """One line per bad variable: ``RELANCE_MAX_BODY_BYTES: expected an integer, got 'abc'``."""
    if isinstance(error, SourceError):
        text = str(error)
        field = text.split('"')[1] if text.count('"') >= 2 else ""
        what = variable_of(field) if field else "a setting"
        return SettingsError(f'{what}: expected a JSON value (e.g. ["a", "b"]), got text')
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        message = str(item["msg"]).removeprefix("Value error, ")
        message = message.replace("Input should be ", "expected ")
        for bound in ("greater", "less"):
            message = message.replace(f"expected {bound}", f"expected a number {bound}")
        message = message[:1].lower() + message[1:]
        given: Any = item.get("input")
        shown = "" if _hidden(field) or isinstance(given, dict) else f", got {given!r}"
        lines.append(f"{variable_of(field) if field else 'settings'}: {message}{shown}")
    return SettingsError("\n".join(lines))


def load_settings(**values: Any) -> Settings:
    """Settings from the environment (and ``values``); SettingsError when one is wrong."""
    try:
        return Settings(**values)
    except (ValidationError, SourceError) as error:
        raise settings_error(error) from None


def check_service_secrets(settings: Settings) -> None:
    """SettingsError naming every secret shorter than ``MIN_SECRET_LENGTH`` characters."""
    short = [
        variable_of(name)
        for name in SECRETS
        if (value := getattr(settings, name)) is not None and len(value) < MIN_SECRET_LENGTH
    ]
    if short:
        raise SettingsError(
            f"{', '.join(short)}: expected a secret of at least {MIN_SECRET_LENGTH} characters "
            "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(24))'), got a "
            "shorter one: refusing to serve"
        )
