"""Rendering the SDR pages: the Jinja2 templates in ``sdr_templates/`` and their headers.

Pages are self-contained (inline CSS, no script, no external asset), never cached, never
indexed, and carry a Content-Security-Policy that allows nothing but their own forms.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


def zone_of(name: str | None) -> ZoneInfo:
    """The zone called ``name``; UTC for none or an unknown one."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_time(instant: datetime | str | None, zone: str | None) -> str:
    """ "Mon 2026-03-02 09:00 CET": an instant (or its ISO text) in ``zone``."""
    if instant is None:
        return ""
    if isinstance(instant, str):
        instant = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    return instant.astimezone(zone_of(zone)).strftime("%a %Y-%m-%d %H:%M %Z")


def utc_time(instant: datetime | str | None) -> str:
    """ "2026-03-02 08:00 UTC", for the tooltip beside a local time."""
    if instant is None:
        return ""
    if isinstance(instant, str):
        instant = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("relance.web", "sdr_templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["local"] = local_time
    environment.filters["utc"] = utc_time
    return environment


TEMPLATES = _environment()


def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """The page ``template`` (a file of ``sdr_templates/``) with the usual headers."""
    html = TEMPLATES.get_template(template).render(**context).replace("\x00", "")
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def message(status: int, title: str, text: str) -> HTMLResponse:
    """A page that only says something (a refusal, a missing setting)."""
    return render("message.html.j2", status, title=title, text=text)
