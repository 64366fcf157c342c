"""The store: one SQLAlchemy engine over SQLite (embedded default) or PostgreSQL.

Opening a store migrates it to the latest schema (Alembic), so that nobody runs a set-up
step by hand. Write transactions on SQLite start with ``BEGIN IMMEDIATE``: concurrent
dispatchers serialize their claims instead of failing on upgrade deadlocks. Threads of one
process also take turns on a lock per SQLite file before they begin one: the next writer
starts as soon as the last one commits, instead of polling in SQLite's busy handler, whose
sleeps grow to 100 ms (a tick claims in one thread while another records). On PostgreSQL
claims use ``FOR UPDATE SKIP LOCKED`` (see ``Store.skip_locked``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    Engine,
    Table,
    any_,
    bindparam,
    create_engine,
    event,
    insert,
    inspect,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from relance.errors import StoreError

MIGRATIONS = Path(__file__).parent / "migrations"
_migrated: set[str] = set()
_migrate_lock = threading.Lock()
_file_writers: dict[str, threading.RLock] = {}
"""One lock per SQLite file: its writers in this process take turns on it."""


def store_failure(error: SQLAlchemyError) -> str:
    """One line for a store error: its kind and the database's own first line, never the
    statement nor its parameters (``str(error)`` has both: addresses, names)."""
    original = getattr(error, "orig", None)
    detail = str(original).strip().splitlines()[0] if original is not None and str(original) else ""
    kind = type(original).__name__ if original is not None else type(error).__name__
    return f"the store refused the operation ({kind}){': ' + detail if detail else ''}"


def normalize_url(url: str) -> str:
    """postgresql:// and postgres:// use the psycopg 3 driver that Relance installs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Store:
    """A handle on the system of record. Cheap to share; thread-safe.

    ``sqlite://`` (or ``sqlite:///:memory:``) is a private in-memory database per Store,
    for tests and demos: one connection, whose transactions take turns.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        self.in_memory = self.dialect == "sqlite" and parsed.database in (None, "", ":memory:")
        self._turns: AbstractContextManager[object] = (
            threading.RLock() if self.in_memory else nullcontext()
        )
        self._writers: AbstractContextManager[object] = nullcontext()
        if self.dialect == "sqlite" and not self.in_memory:
            with _migrate_lock:
                key = str(Path(parsed.database or ".").resolve())
                self._writers = _file_writers.setdefault(key, threading.RLock())
        try:
            self.engine = self._create_engine(parsed.database)
        except (SQLAlchemyError, ImportError) as error:
            raise StoreError(f"cannot open the store at {self.safe_url}: {error}") from error
        if migrate:
            self.migrate()

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @property
    def skip_locked(self) -> bool:
        return self.dialect == "postgresql"

    def _create_engine(self, database: str | None) -> Engine:
        if self.dialect != "sqlite":
            return create_engine(self.url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        if self.in_memory:
            # One connection for the Store's life: a second one would open another database.
            engine = create_engine(
                self.url, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            Path(database or ".").parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(self.url)

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is deferred).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
            connection.exec_driver_sql(f"BEGIN {mode}")

        return engine

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any error."""
        try:
            with self._turns, self._writers, self.engine.begin() as connection:
                yield connection
        except OperationalError as error:
            raise StoreError(f"store error ({self.safe_url}): {error.orig}") from error

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only transaction that does not queue behind writers on SQLite."""
        try:
            with self._turns, self.engine.connect() as connection:
                connection = connection.execution_options(sqlite_begin="DEFERRED")
                with connection.begin():
                    yield connection
        except OperationalError as error:
            raise StoreError(f"store error ({self.safe_url}): {error.orig}") from error

    def migrate(self) -> None:
        """Bring the schema to the latest revision (idempotent; once per process per URL)."""
        with _migrate_lock:
            if self.url in _migrated and not self.in_memory:
                return
            from alembic import command
            from alembic.config import Config

            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            try:
                with self.engine.begin() as connection:
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
            except SQLAlchemyError as error:
                raise StoreError(
                    f"cannot migrate the store at {self.safe_url}: {store_failure(error)}"
                ) from error
            if not self.in_memory:
                _migrated.add(self.url)

    def revision(self) -> str | None:
        """The schema revision the store is at, or None when it was never migrated."""
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            row = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
            return None if row is None else str(row[0])

    def dispose(self) -> None:
        self.engine.dispose()


MEMO_LIMIT = 4096
"""Distinct values per column whose stored form ``insert_many`` remembers."""


def insert_many(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (all with the same keys) in one driver call, for bulk writes.

    Each value goes through its column type's bind processor, exactly as
    ``connection.execute(insert(table), rows)`` would store it, without per-row statement
    bookkeeping; processed values are remembered per column (the timestamps of a batch,
    None, a status repeated across rows).
    """
    if not rows:
        return
    names = list(rows[0])
    convert = converters(connection, table, names)
    columns = [
        list(map(fn, map(itemgetter(name), rows))) for fn, name in zip(convert, names, strict=True)
    ]
    insert_processed(connection, table, names, list(zip(*columns, strict=True)))


def converters(connection: Connection, table: Table, names: list[str]) -> list[Any]:
    """For each column named, value -> what the driver is given (memoized per call)."""
    dialect = connection.dialect
    return [
        _memoized(table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
        for name in names
    ]


def insert_processed(
    connection: Connection, table: Table, names: list[str], rows: list[tuple[Any, ...]]
) -> None:
    """Insert rows of values already processed (``converters``), in the order of ``names``:
    COPY on PostgreSQL, one ``executemany`` elsewhere."""
    if not rows:
        return
    # Raw driver inserts skip SQLAlchemy's Python-side defaults (e.g. a touch's random
    # Message-ID token): fill them here, one value per row.
    filled = [c for c in table.columns if c.name not in names and c.default is not None]
    filled = [c for c in filled if getattr(c.default, "is_callable", False)]
    if filled:
        names = [*names, *(c.name for c in filled)]
        rows = [(*row, *(c.default.arg(None) for c in filled)) for row in rows]  # type: ignore[union-attr]
    if connection.dialect.name == "postgresql":
        quoted = ", ".join(f'"{name}"' for name in names)
        raw: Any = connection.connection.driver_connection  # psycopg's own connection
        statement = f'COPY "{table.name}" ({quoted}) FROM STDIN'
        try:
            with raw.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except Exception as error:  # psycopg's own: give it SQLAlchemy's shape, no rows
            raise DBAPIError.instance(
                statement, None, error, type(error), hide_parameters=True
            ) from None
        return
    compiled = (
        insert(table)
        .values({name: bindparam(name) for name in names})
        .compile(dialect=connection.dialect)
    )
    params: list[Any] = rows
    if not compiled.positional:  # pragma: no cover - SQLite and PostgreSQL are handled
        params = [dict(zip(names, row, strict=True)) for row in rows]
    elif list(compiled.positiontup or []) != names:
        where = [names.index(name) for name in compiled.positiontup or []]
        params = [tuple(row[i] for i in where) for row in rows]
    connection.exec_driver_sql(str(compiled), params)


def _memoized(process: Any) -> Any:
    if process is None:
        return lambda value: value
    memo: dict[Any, Any] = {}
    by_identity: dict[int, Any] = {}

    def convert(value: Any) -> Any:
        try:
            return memo[value]
        except KeyError:
            done = memo[value] = process(value)
            if len(memo) > MEMO_LIMIT:
                memo.clear()
            return done
        except TypeError:  # unhashable (a JSON list or dict): rows of a batch share some
            key = id(value)  # alive as long as the rows are, that is for this whole call
            if key not in by_identity:
                by_identity[key] = process(value)
            return by_identity[key]

    return convert


def among(connection: Connection, column: Any, values: list[Any]) -> Any:
    """``column IN (values)``; on PostgreSQL ``column = ANY(array)``, one parameter however
    many values (a long IN list costs the driver more than the database)."""
    if connection.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)
