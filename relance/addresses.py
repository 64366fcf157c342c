"""E-mail addresses in one canonical form, so that the same mailbox is always the same text.

Enrollment, the suppression list, webhooks, inbound mail and claims compare addresses only
in this form: ``"alice"@x.example``, ``Alice@X.Example.``, ``alice@x.example`` and the
NFD spelling of an accented address are one address. ``canonical_address``:

- normalises to Unicode NFC and strips surrounding spaces;
- drops one trailing dot of the domain (``x.example.`` is the fully qualified spelling);
- checks the syntax and normalises with ``email-validator`` (no DNS lookup): a quoted
  local part loses its quotes where they change nothing (``"alice"`` is ``alice``);
- writes the domain in its IDNA ASCII form (``bücher.example`` is ``xn--bcher-kva.example``),
  lower case, and the local part in lower case (as Relance always stored it).

``address_key`` is the same for lookups of text from outside (a provider's event, an
inbound sender): it never raises, and text that is not an address is only NFC-normalised,
stripped and lower-cased, so that it matches nothing it should not.
"""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email


class AddressError(ValueError):
    """Text that is not an e-mail address."""


def canonical_address(text: str) -> str:
    """The canonical form of an address; AddressError when it is not one."""
    value = unicodedata.normalize("NFC", text).strip()
    if any(char in value for char in "\r\n\x00"):
        raise AddressError("expected an email address, got one with a line break or NUL")
    if value.endswith(".") and "@" in value:
        value = value[:-1]
    try:
        checked = validate_email(
            value,
            check_deliverability=False,
            allow_quoted_local=True,
            allow_smtputf8=True,
            test_environment=True,
        )
    except EmailNotValidError as error:  # its wording varies: keep ours
        raise AddressError(f"expected an email address, got {text!r}") from error
    domain = (checked.ascii_domain or checked.domain).lower()
    return f"{unicodedata.normalize('NFC', checked.local_part).lower()}@{domain}"


def address_key(text: str) -> str:
    """``canonical_address`` for lookups: never raises (see the module docstring)."""
    try:
        return canonical_address(text)
    except AddressError:
        return unicodedata.normalize("NFC", text).strip().lower()
