"""The migrations build exactly the schema of relance/tables.py, on SQLite and PostgreSQL,
and opening a store twice (or in memory) is safe."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select
from store_support import T0, count_rows, people, postgres_database, step, write_project

import relance.store
from relance.enrollments import enroll, load_version
from relance.store import MIGRATIONS, Store
from relance.tables import enrollments, metadata


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database nothing was ever written to."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with postgres_database("relance_migration") as url:
        yield url


def test_the_migrated_schema_is_the_one_the_code_declares(fresh_url: str) -> None:
    store = Store(fresh_url)
    try:
        with store.engine.connect() as connection:
            # SQLite reflects a '' server default as "''": Alembic cannot compare those there.
            options = {
                "compare_type": True,
                "compare_server_default": store.dialect == "postgresql",
            }
            context = MigrationContext.configure(connection, opts=options)
            assert compare_metadata(context, metadata) == []
            tables = set(inspect(connection).get_table_names())
        assert tables == {*metadata.tables, "alembic_version"}
        assert store.revision() == head_revision()
    finally:
        store.dispose()


def test_reopening_a_store_is_idempotent_and_keeps_its_data(fresh_url: str, tmp_path: Path) -> None:
    project = write_project(tmp_path, [step("hello", "email")])
    first = Store(fresh_url)
    enroll(first, project.sequence, people(3), start=T0, now=T0)
    first.dispose()
    relance.store._migrated.discard(first.url)  # as a new process would: migrate again

    again = Store(fresh_url)
    try:
        assert again.revision() == head_revision()
        assert count_rows(again, "enrollments") == 3
        assert count_rows(again, "touchpoints") == 3
    finally:
        again.dispose()


def test_an_unmigrated_store_has_no_revision(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'bare.db'}", migrate=False)
    assert store.revision() is None
    store.migrate()
    assert store.revision() == head_revision()
    store.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_store_is_migrated_and_private(url: str, tmp_path: Path) -> None:
    """Each in-memory store is its own database, usable from any thread."""
    project = write_project(tmp_path, [step("hello", "email")])
    first, second = Store(url), Store(url)
    assert first.revision() == second.revision() == head_revision()
    enroll(first, project.sequence, people(2), start=T0, now=T0)
    counts: list[int] = []
    reader = threading.Thread(target=lambda: counts.append(count_rows(first, "touchpoints")))
    reader.start()
    reader.join()
    assert counts == [2]
    assert count_rows(second, "touchpoints") == 0
    first.dispose()
    second.dispose()


def test_in_memory_stores_do_not_share_sequence_versions(tmp_path: Path) -> None:
    """Two in-memory stores have the same URL but are two databases: version 1 of one is not
    version 1 of the other."""
    first, second = Store("sqlite://"), Store("sqlite://")
    for store, sequence_id in ((first, "first"), (second, "second")):
        project = write_project(tmp_path, [step("hello", "email")], sequence_id=sequence_id)
        enroll(store, project.sequence, people(1), start=T0, now=T0)
    for store, sequence_id in ((first, "first"), (second, "second")):
        with store.reading() as connection:
            (version_id,) = connection.execute(select(enrollments.c.sequence_version_id)).one()
            assert load_version(connection, version_id).id == sequence_id
        store.dispose()
