"""The envelope of Relance's emails: threading, reply and unsubscribe addresses.

Pure functions both ways: the dispatcher builds headers with them, and the inbound
handler reads them back to find the enrollment a reply belongs to.

- ``Message-ID``: ``<<message token>@<mail domain>>``, the touch's stored random 128-bit
  token (32 hex digits), the same on every attempt: unique across installations and
  databases, and nobody can guess one to forge an ``In-Reply-To``.
- Follow-ups answer the first email of the enrollment: ``In-Reply-To`` it, ``References``
  every earlier email, subject ``Re: <first subject>`` (unless the step says new_thread).
- ``Reply-To``: ``reply+<token>@<inbound domain>``; a reply is matched by the token even
  when the mail client drops the threading headers.
- One-click unsubscribe (RFC 8058): ``List-Unsubscribe: <https://.../unsubscribe/<token>>,
  <mailto:unsubscribe+<token>@<inbound domain>>`` and ``List-Unsubscribe-Post``.
"""

from __future__ import annotations

import re

TOKEN_PATTERN = r"[0-9a-f]{24}"
_MESSAGE_ID = re.compile(r"<([0-9a-f]{32})@([^>\s]+)>", flags=re.I)


def reply_address(token: str, inbound_domain: str) -> str:
    return f"reply+{token}@{inbound_domain}"


def unsubscribe_mailto(token: str, inbound_domain: str) -> str:
    return f"unsubscribe+{token}@{inbound_domain}"


def unsubscribe_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{token}"


def unsubscribe_headers(public_url: str, token: str, inbound_domain: str) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe: an https URL (POST) and a mailto fallback."""
    return {
        "List-Unsubscribe": (
            f"<{unsubscribe_url(public_url, token)}>, "
            f"<mailto:{unsubscribe_mailto(token, inbound_domain)}>"
        ),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def thread_subject(first_subject: str) -> str:
    """``Re: <first subject>``, without stacking prefixes."""
    base = re.sub(r"^(?:\s*(?:re|tr|fwd?|aw|sv)\s*:\s*)+", "", first_subject, flags=re.I)
    return f"Re: {base}"


def tokens_in(addresses: str, kind: str, inbound_domain: str) -> list[str]:
    """The tokens of ``<kind>+<token>@<inbound domain>`` addresses found in a header value."""
    pattern = rf"{re.escape(kind)}\+({TOKEN_PATTERN})@{re.escape(inbound_domain)}"
    return re.findall(pattern, addresses, flags=re.I)


def message_tokens_in(header: str, mail_domain: str) -> list[str]:
    """Message tokens of Relance's Message-IDs in an In-Reply-To or References value."""
    return [
        token.lower()
        for token, domain in _MESSAGE_ID.findall(header or "")
        if domain.lower() == mail_domain.lower()
    ]
