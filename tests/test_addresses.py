"""One canonical form of an address everywhere: the suppression list cannot be bypassed by
spelling the same mailbox differently."""

from __future__ import annotations

import unicodedata
from datetime import timedelta
from pathlib import Path

import pytest
from cli_support import NOW, Cli, make_cli
from sqlalchemy import insert, select, text
from store_support import T0

from relance.addresses import AddressError, address_key, canonical_address
from relance.store import Store
from relance.tables import prospects, suppressions, touchpoints

NFC = unicodedata.normalize("NFC", "andré@bücher.example")
NFD = unicodedata.normalize("NFD", "andré@bücher.example")

SPELLINGS = {
    "quoted": '"alice"@x.example',
    "trailing-dot": "alice@x.example.",
    "upper-case": "ALICE@X.Example",
    "spaces": "  alice@x.example ",
}


@pytest.mark.parametrize("spelling", SPELLINGS.values(), ids=SPELLINGS.keys())
def test_spellings_of_one_mailbox_are_one_address(spelling: str) -> None:
    assert canonical_address(spelling) == "alice@x.example"


def test_unicode_forms_and_idna_are_one_address() -> None:
    assert NFC != NFD
    assert canonical_address(NFC) == canonical_address(NFD) == "andré@xn--bcher-kva.example"
    assert canonical_address("andré@xn--bcher-kva.example") == "andré@xn--bcher-kva.example"


def test_a_quote_that_matters_is_kept() -> None:
    assert canonical_address('"a b"@x.example') == '"a b"@x.example'


@pytest.mark.parametrize("bad", ["alice", "a@b@c.example", "a@x.example\r\nBcc: e@evil.example"])
def test_not_an_address(bad: str) -> None:
    with pytest.raises(AddressError):
        canonical_address(bad)
    assert address_key(bad) == bad.strip().lower()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    return make_cli(tmp_path, monkeypatch)


def enroll(cli: Cli, email: str) -> str:
    return cli.fails("enroll", "outreach", "--email", email, "--field", "industry=x", "--now", NOW)


@pytest.mark.parametrize("spelling", [*SPELLINGS.values(), NFD], ids=[*SPELLINGS, "nfd"])
def test_a_suppressed_address_cannot_be_enrolled_spelled_otherwise(cli: Cli, spelling: str) -> None:
    suppressed = NFC if spelling == NFD else "alice@x.example"
    cli.ok("suppress", "add", suppressed)
    assert enroll(cli, spelling) == (
        f"error: {canonical_address(suppressed)} is on the suppression list: not enrolled\n"
    )
    assert cli.count("enrollments") == 0


def test_suppressing_another_spelling_stops_the_enrolled_address(cli: Cli) -> None:
    cli.ok("enroll", "outreach", "--email", "alice@x.example", "--field", "industry=x",
           "--now", NOW)  # fmt: skip
    cli.ok("suppress", "add", '"Alice"@X.example.')
    with cli.store.reading() as connection:
        assert connection.execute(select(suppressions.c.email)).scalars().all() == [
            "alice@x.example"
        ]
    cli.dispatch("email-guide", T0 + timedelta(days=3))
    with cli.store.reading() as connection:
        status = connection.execute(
            select(touchpoints.c.status).where(touchpoints.c.step_id == "email-guide")
        ).scalar_one()
    assert status == "skipped"


def test_status_finds_the_prospect_by_any_spelling(cli: Cli) -> None:
    cli.ok("enroll", "outreach", "--email", NFC, "--field", "industry=x", "--now", NOW)
    assert "andré@xn--bcher-kva.example" in cli.ok("status", NFD)


def test_the_migration_rewrites_stored_addresses_without_losing_any(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0007'"))
        rows = [
            {"email": '"bob"@x.example', "created_at": T0, "updated_at": T0, "fields": {}},
            {"email": NFD, "created_at": T0, "updated_at": T0, "fields": {}},
            {"email": "carol@x.example.", "created_at": T0, "updated_at": T0, "fields": {}},
            {
                "email": "carol@x.example",
                "created_at": T0,
                "updated_at": T0,
                "fields": {},
            },  # both spellings stored: kept
        ]
        connection.execute(insert(prospects), rows)
        connection.execute(
            insert(suppressions),
            [{"email": "dan@x.example.", "reason": "bounce", "source": "t", "created_at": T0}],
        )
    store.dispose()
    import relance.store

    relance.store._migrated.discard(url)
    migrated = Store(url)
    with migrated.reading() as connection:
        emails = connection.execute(select(prospects.c.email).order_by(prospects.c.id)).scalars()
        suppressed = connection.execute(select(suppressions.c.email)).scalars().all()
    assert list(emails) == [
        "bob@x.example",
        "andré@xn--bcher-kva.example",
        "carol@x.example.",
        "carol@x.example",
    ]
    assert suppressed == ["dan@x.example"]
    assert migrated.revision() == "0008"
