"""SendGrid Inbound Parse: the posted form as an ``InboundEmail``, and what kind of mail it is.

SendGrid posts every message received on the inbound domain as multipart/form-data (with
"send raw" off): ``headers`` (the raw header block), ``envelope`` (JSON: a ``to`` list and
``from``), ``from``, ``to``, ``cc``, ``subject``, ``text``, ``html``, ``charsets`` (JSON: the
charset of each field), ``SPF``, ``dkim``, ``attachments`` (a count) and the files.
``parse_inbound(fields)`` reads them; ``classify(email, received_at=...)`` decides:

- ``Ignore``: delivery reports (mailer-daemon, postmaster, multipart/report, "Undelivered
  Mail..."), and bulk mail (``Precedence: bulk/junk/list``) that is not an auto-reply;
- ``OutOfOffice(until)``: ``Auto-Submitted`` other than ``no``, ``X-Autoreply``,
  ``X-Autorespond``, ``Precedence: auto_reply``, or an auto-reply subject in French, English,
  German or Spanish. ``until`` is the first day back: the date after "de retour", "back on",
  "zurück am", "de vuelta el"..., else the day after the date that follows "jusqu'au",
  "until", "bis", "hasta"...; read with dateparser relative to the arrival time (numeric
  dates are day first, except English ones, read both ways: the earlier future one wins);
  None when the text gives none;
- ``Reply(text)``: anything else, ``text`` being the reply without the quoted history.

``sender_authenticated(email)`` says whether SendGrid vouches for the From domain: DKIM
passed for it (the ``dkim`` field, ``{@example.com : pass}``, one entry per signature), or
SPF passed (the ``SPF`` field: ``pass``) for an envelope sender at that domain. Domains
align when equal or one is a subdomain of the other. Anything else (``fail``,
``softfail``, ``neutral``, ``none``, a missing field, a signature for another domain) does
not vouch: the From address may be forged.

Pure: no clock, no network. Malformed input raises ``InputError``, nothing else.
"""

from __future__ import annotations

import codecs
import html as html_lib
import itertools
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.header import decode_header, make_header
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from typing import Any

from relance.addresses import address_key
from relance.errors import InputError

MAX_SCANNED_CHARS = 20_000
"""Only the start of a message is scanned for dates (auto-replies are short)."""

MAX_RETURN_DAYS = 366
"""A "return date" further away than this is not believed."""


@dataclass(frozen=True)
class InboundEmail:
    """One message received by Inbound Parse. Addresses are lower case."""

    sender: str
    """The From address ("" when there is none)."""
    recipients: tuple[str, ...] = ()
    """Envelope recipients, then To and Cc, without repeats."""
    subject: str = ""
    text: str = ""
    html: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    """Lower-case name -> first value, RFC 2047 words decoded, unfolded."""
    envelope_sender: str = ""
    spf: str = ""
    dkim: str = ""
    attachments: int = 0

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    @property
    def message_id(self) -> str:
        return self.header("message-id").strip()

    @property
    def in_reply_to(self) -> str:
        return self.header("in-reply-to")

    @property
    def references(self) -> str:
        return self.header("references")

    @property
    def body(self) -> str:
        """The text part, or the HTML part as text when there is no text part."""
        return self.text if self.text.strip() else html_to_text(self.html)


@dataclass(frozen=True)
class Reply:
    """A person answered. ``text`` is the answer without the quoted history."""

    text: str


@dataclass(frozen=True)
class OutOfOffice:
    """An auto-reply; ``until`` is the first day back, if the message says."""

    until: date | None


@dataclass(frozen=True)
class Ignore:
    """Neither a reply nor an auto-reply (a bounce, bulk mail)."""

    reason: str


Classification = Reply | OutOfOffice | Ignore


# Parsing the form -------------------------------------------------------------------------


def parse_inbound(fields: Mapping[str, str | bytes], attachments: int = 0) -> InboundEmail:
    """The message SendGrid posted; ``fields`` are the form's text fields.

    A field Starlette decoded as UTF-8 while ``charsets`` names another charset is decoded
    again from its Latin-1 bytes (Starlette falls back to Latin-1 for bytes that are not
    UTF-8, which round-trips them).
    """
    charsets = {
        str(name).lower(): str(charset)
        for name, charset in _json_object(fields.get("charsets")).items()
        if isinstance(charset, str)
    }

    def text(name: str) -> str:
        return _decoded(fields.get(name), charsets.get(name))

    headers = parse_headers(text("headers"))
    envelope = _json_object(fields.get("envelope"))
    sender = _address(text("from") or headers.get("from", ""))
    envelope_to = envelope.get("to")
    if isinstance(envelope_to, str):
        envelope_to = [envelope_to]
    listed = [str(item) for item in envelope_to or [] if isinstance(item, str | int)]
    recipients: list[str] = []
    for value in (
        *listed,
        text("to") or headers.get("to", ""),
        text("cc") or headers.get("cc", ""),
    ):
        for _, address in getaddresses([value]):
            address = address.strip().lower()
            if "@" in address and address not in recipients:
                recipients.append(address)
    envelope_from = envelope.get("from")
    if not sender and not recipients and not headers:
        raise InputError("not an Inbound Parse post: no sender, recipient or headers")
    count = text("attachments").strip()
    if not (count.isascii() and count.isdigit() and len(count) < 6):
        count = "0"
    return InboundEmail(
        sender=sender,
        recipients=tuple(recipients),
        subject=_one_line(text("subject") or headers.get("subject", "")),
        text=text("text"),
        html=text("html"),
        headers=headers,
        envelope_sender=_address(envelope_from) if isinstance(envelope_from, str) else "",
        spf=text("SPF") or text("spf"),
        dkim=text("dkim"),
        attachments=max(attachments, int(count)),
    )


def parse_headers(block: str) -> dict[str, str]:
    """A raw header block as lower-case name -> first value (decoded, unfolded)."""
    parsed = HeaderParser(policy=compat32).parsestr(block.replace("\r\n", "\n"))
    headers: dict[str, str] = {}
    for name, value in parsed.items():
        key = str(name).strip().lower()
        if key and key not in headers:
            headers[key] = _one_line(_decode_words(str(value)))
    return headers


def _decode_words(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, UnicodeError, ValueError, TypeError):  # bad encoded words
        return value


def _decoded(value: str | bytes | None, charset: str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        raw = value
    elif charset and _codec(charset) not in (None, "utf-8"):
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError:  # Starlette read valid UTF-8: keep it
            return value.replace("\x00", "")
    else:
        return value.replace("\x00", "")
    codec = _codec(charset or "utf-8") or "utf-8"
    try:
        text = raw.decode(codec, errors="replace")
    except (LookupError, UnicodeError, ValueError):
        text = raw.decode("latin-1")
    return text.replace("\x00", "")


def _codec(charset: str) -> str | None:
    try:
        return codecs.lookup(charset.strip()).name
    except (LookupError, ValueError):
        return None


def _json_object(value: str | bytes | None) -> dict[str, Any]:
    if not value:
        return {}
    try:
        found = json.loads(value)
    except (ValueError, RecursionError):
        return {}
    return found if isinstance(found, dict) else {}


def _address(value: str) -> str:
    address = parseaddr(value)[1].strip()
    return address_key(address) if "@" in address else ""


def _one_line(value: str) -> str:
    return " ".join(value.split())


_DKIM_RESULT = re.compile(r"@?([A-Za-z0-9.-]+)\s*:\s*([A-Za-z]+)")


def dkim_passed_domains(dkim: str) -> set[str]:
    """The domains whose DKIM signature passed, from SendGrid's ``dkim`` field."""
    return {
        domain.strip(".").lower()
        for domain, result in _DKIM_RESULT.findall(dkim)
        if result.lower() == "pass"
    }


def sender_authenticated(email: InboundEmail) -> bool:
    """Whether SPF or DKIM passed for the domain of the From address (module docstring)."""
    domain = email.sender.rpartition("@")[2]
    if not domain:
        return False
    if any(_aligned(domain, signer) for signer in dkim_passed_domains(email.dkim)):
        return True
    envelope_domain = email.envelope_sender.rpartition("@")[2]
    spf = email.spf.strip().lower()
    return spf == "pass" and bool(envelope_domain) and _aligned(domain, envelope_domain)


def _aligned(domain: str, other: str) -> bool:
    domain, other = domain.lower(), other.lower()
    return domain == other or domain.endswith("." + other) or other.endswith("." + domain)


def html_to_text(markup: str) -> str:
    """Readable text of an HTML body: blocks become lines, tags go, entities are decoded."""
    markup = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", " ", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</(p|div|li|tr|h\d|blockquote)\s*>", "\n", markup)
    markup = re.sub(r"(?s)<[^>]*>", "", markup)
    return "\n".join(" ".join(line.split()) for line in html_lib.unescape(markup).splitlines())


# The quoted history -----------------------------------------------------------------------

_ATTRIBUTION = re.compile(
    r"^[ \t]*(?:"
    r"Le\b[^\n]{0,200}?(?:\n[^\n]{0,200}?)?a\s+[ée]crit\s*:"
    r"|On\b[^\n]{0,200}?(?:\n[^\n]{0,200}?)?wrote\s*:"
    r"|Am\b[^\n]{0,200}?(?:\n[^\n]{0,200}?)?schrieb[^\n]{0,200}?:"
    r"|El\b[^\n]{0,200}?(?:\n[^\n]{0,200}?)?escribi[óo]\s*:"
    r"|-{2,}\s*(?:Original Message|Message d'origine|Ursprüngliche Nachricht"
    r"|Mensaje original)\s*-{2,}"
    r"|_{10,}\s*$"
    r"|(?:From|De|Von)\s*:[^\n]*\n(?:[^\n]*\n){0,3}?\s*(?:Sent|Envoyé|Gesendet|Enviado)\s*:"
    r")",
    re.IGNORECASE | re.MULTILINE,
)


def strip_quoted(text: str) -> str:
    """The new part of a reply: no ``>`` lines, nothing from "On ... wrote:" and the like."""
    text = text.replace("\r\n", "\n")
    found = _ATTRIBUTION.search(text)
    if found is not None:
        text = text[: found.start()]
    kept = [line for line in text.split("\n") if not line.lstrip().startswith(">")]
    return "\n".join(kept).strip()


# Classifying ------------------------------------------------------------------------------


def _fold(text: str) -> str:
    """Lower case without accents, typographic apostrophes made plain."""
    decomposed = unicodedata.normalize("NFKD", text.replace("\u2019", "'").lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


_BOUNCE_SENDERS = re.compile(r"^(?:mailer-daemon|postmaster|mail-daemon|maildaemon)@")
_BOUNCE_SUBJECTS = re.compile(
    r"undeliver(?:ed|able)|delivery status notification|mail delivery (?:failed|failure|system"
    r"|subsystem)|returned mail|failure notice|delivery has failed|non remis|non distribuable"
    r"|echec de (?:la )?remise|unzustellbar|nicht zustellbar|no se (?:ha )?pod(?:ido|ra) entregar"
    r"|no entregado|error de entrega"
)
_AUTO_SUBJECTS = re.compile(
    r"out of (?:the )?office|\booo\b|automatic reply|auto[- ]?reply|auto[- ]?response"
    r"|away from (?:the |my )?office|\bon (?:annual )?leave\b|\bon vacation\b|\bvacation reply\b"
    r"|absen(?:t|te|ce)\b|reponse automatique|message automatique|\ben conges?\b"
    r"|abwesen|automatische antwort|nicht im buro|\burlaub\b"
    r"|fuera de (?:la )?oficina|respuesta automatica|\bausen(?:te|cia)\b|de vacaciones"
)


def classify(email: InboundEmail, *, received_at: datetime) -> Classification:
    """What this message is; ``received_at`` anchors relative return dates."""
    subject = _fold(email.subject)
    content_type = email.header("content-type").lower()
    if (
        _BOUNCE_SENDERS.match(email.sender)
        or "report-type=delivery-status" in content_type.replace(" ", "").replace('"', "")
        or _BOUNCE_SUBJECTS.search(subject)
    ):
        return Ignore("delivery report")
    auto_submitted = email.header("auto-submitted").split(";")[0].strip().lower()
    precedence = email.header("precedence").strip().lower()
    if (
        (auto_submitted and auto_submitted != "no")
        or "x-autoreply" in email.headers
        or "x-autorespond" in email.headers
        or precedence == "auto_reply"
        or _AUTO_SUBJECTS.search(subject)
    ):
        text = strip_quoted(email.body)[:MAX_SCANNED_CHARS]
        return OutOfOffice(return_date(f"{email.subject}\n{text}", received_at))
    if precedence in ("bulk", "junk", "list"):
        return Ignore(f"bulk mail (Precedence: {precedence})")
    return Reply(strip_quoted(email.body))


# The return date --------------------------------------------------------------------------

_Marker = tuple[str, re.Pattern[str]]


def _markers(*pairs: tuple[str, str]) -> tuple[_Marker, ...]:
    return tuple((language, re.compile(pattern)) for language, pattern in pairs)


_BACK = _markers(
    ("fr", r"\bde retour\b|\bretour\b|\breviens\b|\breprendrai\b|\ba partir du\b|\bdes le\b"),
    ("en", r"\bback(?! to you)\b|\breturn(?:ing)?\b|\bin the office (?:on|from)\b|\bas of\b"),
    ("en", r"\breachable (?:again )?(?:on|from)\b"),
    ("de", r"\bzuruck\b|\bwieder\b|\bab\b"),
    ("es", r"\bde vuelta\b|\bde regreso\b|\bregres\w*|\bvolver\w*|\bvuelvo\b|\ba partir del?\b"),
    ("es", r"\breincorpor\w*"),
)
"""Phrases followed by the first day back."""

_BACK_BEFORE = _markers(("de", r"\bzuruck\b|\bwieder\b"))
"""Phrases preceded by the first day back ("am 5. Januar zurück")."""

_UNTIL = _markers(
    ("fr", r"\bjusqu'|\bdu\b[^\n.]{1,40}?\bau\b"),
    ("en", r"\buntil\b|\btill\b|\bthrough\b|\bthru\b|\bfrom\b[^\n.]{1,40}?\bto\b"),
    ("de", r"\bbis\b"),
    ("es", r"\bhasta\b|\bdel?\b[^\n.]{1,40}?\bal\b"),
)
"""Phrases followed by the last day away."""

_WINDOW = 60
_NUMERIC_DATE = re.compile(r"\b\d{1,2}[/.-]\d{1,2}\b")
_ORDERS = {"fr": ("DMY",), "de": ("DMY",), "es": ("DMY",), "en": ("DMY", "MDY")}
_MAX_MARKERS = 12


def return_date(text: str, received_at: datetime) -> date | None:
    """The first day back that an auto-reply gives, or None."""
    folded = _fold(text[:MAX_SCANNED_CHARS])
    back = _windows(folded, _BACK, after=True) + _windows(folded, _BACK_BEFORE, after=False)
    for hits, offset in ((back, 0), (_windows(folded, _UNTIL, after=True), 1)):
        for _, language, window in sorted(hits):
            day = _first_date(window, language, received_at)
            if day is not None:
                return day + timedelta(days=offset)
    return None


def _windows(
    folded: str, markers: tuple[_Marker, ...], *, after: bool
) -> list[tuple[int, str, str]]:
    """(position, language, text next to the marker on its line) for each marker found."""
    hits = []
    for language, pattern in markers:
        for found in itertools.islice(pattern.finditer(folded), _MAX_MARKERS):
            if after:
                window = folded[found.end() : found.end() + _WINDOW].split("\n")[0]
            else:
                window = folded[max(0, found.start() - _WINDOW) : found.start()].split("\n")[-1]
            hits.append((found.start(), language, window))
    return hits


def _first_date(window: str, language: str, received_at: datetime) -> date | None:
    orders = _ORDERS[language] if _NUMERIC_DATE.search(window) else _ORDERS[language][:1]
    first = received_at.date()
    candidates = []
    for order in orders:
        for found in _search(window, language, order, received_at):
            if first <= found <= first + timedelta(days=MAX_RETURN_DAYS):
                candidates.append(found)
                break
    return min(candidates) if candidates else None


def _search(window: str, language: str, order: str, received_at: datetime) -> list[date]:
    from dateparser.search import search_dates  # type: ignore[import-untyped]

    settings: Any = {
        "PREFER_DATES_FROM": "future",
        "RELATIVE_BASE": received_at.replace(tzinfo=None),
        "DATE_ORDER": order,
    }
    try:
        found = search_dates(window, languages=[language], settings=settings)
    except Exception:  # a third-party parser on untrusted text: no date rather than a crash
        return []
    return [moment.date() for _, moment in found or []]
