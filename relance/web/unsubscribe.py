"""``GET`` and ``POST /unsubscribe/{token}``: the target of the ``List-Unsubscribe`` link.

- ``GET`` shows a small page with a confirm button and changes nothing: link scanners
  and mail previews fetch links on their own.
- ``POST`` unsubscribes: RFC 8058 one-click (a mail provider posts
  ``List-Unsubscribe=One-Click``, form-encoded), or the page's button (which posts the
  same). Any body is accepted; posting again is harmless. The answer is 200 with a page.

Pages are server-rendered, self-contained (no external asset), in the prospect's language
(French or English; else the browser's), and an unknown token is a 404 page.
"""

from __future__ import annotations

import logging
from datetime import datetime
from html import escape
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from relance.errors import NotFoundError
from relance.notify import emit_prospect_event
from relance.settings import Settings
from relance.store import Store
from relance.unsubscribes import Subscriber, find_subscriber, unsubscribe_token
from relance.web.app import now_of, settings_of, store_of

logger = logging.getLogger(__name__)

router = APIRouter()

SOURCE = "unsubscribe_link"

WORDING = {
    "en": {
        "title": "Unsubscribe",
        "ask": "Stop receiving emails from {company}?",
        "explain": "We will not email this address again.",
        "button": "Unsubscribe",
        "done_title": "You are unsubscribed",
        "done": "{company} will not email you again. Sorry for the bother.",
        "already": "This address is already unsubscribed: {company} will not email it again.",
        "unknown_title": "Unknown link",
        "unknown": "This unsubscribe link is not valid. Reply to the email with "
        "\u201cunsubscribe\u201d and we will remove you.",
    },
    "fr": {
        "title": "Désinscription",
        "ask": "Ne plus recevoir d\u2019e-mails de {company} ?",
        "explain": "Nous n\u2019écrirons plus à cette adresse.",
        "button": "Me désinscrire",
        "done_title": "Désinscription confirmée",
        "done": "{company} ne vous écrira plus. Désolés pour le dérangement.",
        "already": "Cette adresse est déjà désinscrite : {company} ne lui écrira plus.",
        "unknown_title": "Lien inconnu",
        "unknown": "Ce lien de désinscription n\u2019est pas valide. Répondez à l\u2019e-mail "
        "par \u00ab\u00a0désinscription\u00a0\u00bb et nous vous retirerons.",
    },
}

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
}

_PAGE = """<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f5f5f4; color: #1c1917;
       display: flex; justify-content: center; padding: 4rem 1rem; margin: 0; }}
main {{ background: #fff; max-width: 28rem; padding: 2rem; border-radius: .5rem;
       box-shadow: 0 1px 3px rgba(0,0,0,.1); }}
h1 {{ font-size: 1.25rem; margin-top: 0; }}
button {{ font: inherit; background: #1c1917; color: #fff; border: 0;
         padding: .6rem 1.2rem; border-radius: .35rem; cursor: pointer; }}
</style>
</head>
<body><main>
<h1>{heading}</h1>
{content}
</main></body>
</html>
"""


def language(subscriber: Subscriber | None, accept_language: str | None) -> str:
    """The prospect's language if Relance speaks it, else the browser's, else English."""
    if subscriber is not None and subscriber.locale in WORDING:
        return subscriber.locale
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in WORDING:
            return tag
    return "en"


def render_page(lang: str, title_key: str, paragraphs: list[str], form: str = "") -> str:
    words = WORDING[lang]
    content = "\n".join(f"<p>{escape(text)}</p>" for text in paragraphs) + form
    title = escape(words[title_key])
    return _PAGE.format(lang=lang, title=title, heading=title, content=content)


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def confirm_page(
    token: str,
    request: Request,
    settings: Annotated[Settings, Depends(settings_of)],
    store: Annotated[Store, Depends(store_of)],
) -> HTMLResponse:
    """The confirmation page: it unsubscribes nobody by itself."""
    try:
        subscriber = find_subscriber(store, token)
    except NotFoundError:
        return _unknown(request)
    lang = language(subscriber, request.headers.get("accept-language"))
    words = WORDING[lang]
    company = settings.company_name
    if subscriber.unsubscribed:
        body = render_page(lang, "done_title", [words["already"].format(company=company)])
        return HTMLResponse(body, headers=_HEADERS)
    form = (
        '\n<form method="post">'  # to this very URL, whatever prefix a proxy adds
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f'<button type="submit">{escape(words["button"])}</button></form>'
    )
    paragraphs = [words["ask"].format(company=company), words["explain"]]
    return HTMLResponse(render_page(lang, "title", paragraphs, form), headers=_HEADERS)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(
    token: str,
    request: Request,
    settings: Annotated[Settings, Depends(settings_of)],
    store: Annotated[Store, Depends(store_of)],
    now: Annotated[datetime, Depends(now_of)],
) -> HTMLResponse:
    """One-click unsubscribe (RFC 8058) and the page's button."""
    try:
        subscriber = await run_in_threadpool(find_subscriber, store, token)
        outcome = await run_in_threadpool(unsubscribe_token, store, token, now=now, source=SOURCE)
    except NotFoundError:
        return _unknown(request)
    if not outcome.duplicate:
        logger.info("prospect %s unsubscribed by link", outcome.prospect_id)
        await run_in_threadpool(
            emit_prospect_event,
            outcome.signal.value,
            outcome.prospect_id,
            [enrollment_id for enrollment_id, _, _ in outcome.changed],
            {"source": SOURCE, "suppressed": outcome.suppressed},
        )
    lang = language(subscriber, request.headers.get("accept-language"))
    done = WORDING[lang]["done"].format(company=settings.company_name)
    return HTMLResponse(render_page(lang, "done_title", [done]), headers=_HEADERS)


def _unknown(request: Request) -> HTMLResponse:
    lang = language(None, request.headers.get("accept-language"))
    body = render_page(lang, "unknown_title", [WORDING[lang]["unknown"]])
    return HTMLResponse(body, status_code=404, headers=_HEADERS)
