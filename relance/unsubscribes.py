"""Unsubscribing by the token of an enrollment (the one-click link, or the mailto address).

Every email of an enrollment carries its ``reply_token`` in ``List-Unsubscribe``
(``relance.envelope``). Unsubscribing stops every enrollment of the prospect and puts the
address on the suppression list; doing it again (a second click, the link then the
mailto) changes nothing: the signal is recorded once per token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from relance.engine import Signal
from relance.envelope import TOKEN_PATTERN
from relance.errors import NotFoundError
from relance.signals import SignalOutcome, record_signal
from relance.store import Store
from relance.tables import enrollments, prospects, suppressions

_TOKEN = re.compile(TOKEN_PATTERN)


@dataclass(frozen=True)
class Subscriber:
    """Whom an unsubscribe token names, as the confirmation page needs it."""

    prospect_id: int
    enrollment_id: int
    locale: str | None
    unsubscribed: bool
    """The address is already on the suppression list."""


def find_subscriber(store: Store, token: str) -> Subscriber:
    """The prospect behind ``token``; ``NotFoundError`` for a token no enrollment has."""
    token = _checked(token)
    with store.reading() as connection:
        row = connection.execute(
            select(
                enrollments.c.id,
                enrollments.c.prospect_id,
                prospects.c.locale,
                suppressions.c.email.label("suppressed"),
            )
            .join(prospects, prospects.c.id == enrollments.c.prospect_id)
            .outerjoin(suppressions, suppressions.c.email == prospects.c.email)
            .where(enrollments.c.reply_token == token)
        ).first()
    if row is None:
        raise NotFoundError("no enrollment has this unsubscribe token")
    return Subscriber(row.prospect_id, row.id, row.locale, row.suppressed is not None)


def unsubscribe_token(store: Store, token: str, *, now: datetime, source: str) -> SignalOutcome:
    """Unsubscribe the prospect behind ``token`` from everything Relance sends.

    ``source`` says how (``unsubscribe_link``, ``inbound``...). A repeat is a no-op
    (``outcome.duplicate``); an unknown token raises ``NotFoundError``.
    """
    subscriber = find_subscriber(store, token)
    return record_signal(
        store,
        str(subscriber.prospect_id),
        Signal.UNSUBSCRIBED,
        now=now,
        source=source,
        external_id=f"unsubscribe:{_checked(token)}",
        data={"enrollment_id": subscriber.enrollment_id},
    )


def _checked(token: str) -> str:
    token = token.strip().lower()
    if not _TOKEN.fullmatch(token):
        raise NotFoundError("no enrollment has this unsubscribe token")
    return token
