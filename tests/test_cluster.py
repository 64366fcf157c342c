"""The several-machines recipe of the README, for real, on loopback (bench/cluster.py).

A Prefect server on PostgreSQL, the process work pool, the dispatch deployment, two
workers and the webhook service are started as the README says; dispatch runs triggered
at once on both workers send every due touch exactly once. About a minute.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from store_support import PG_ADMIN_URL, postgres_unavailable

ROOT = Path(__file__).resolve().parent.parent
PROSPECTS = 300

pytestmark = [pytest.mark.postgres, pytest.mark.prefect]


@pytest.fixture
def postgres_up() -> None:
    engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except Exception as error:  # down or refusing us
        postgres_unavailable(str(error).splitlines()[0])
    finally:
        engine.dispose()


def run_cluster(*arguments: str) -> tuple[dict[str, object], str]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cluster.py"), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=420,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{done.stderr}"
    return json.loads(lines[-1]), done.stderr


@pytest.mark.usefixtures("postgres_up")
def test_two_workers_send_every_touch_once_and_clean_up() -> None:
    result, log = run_cluster("--prospects", str(PROSPECTS), "--runs", "4", "--timeout", "360")
    print(log)
    assert result["problems"] == [], log
    assert result["ok"] is True
    assert result["enrolled"] == PROSPECTS
    assert result["emails_sent"] == PROSPECTS
    assert result["accepted_by_provider"] == PROSPECTS
    assert result["duplicates"] == 0
    assert result["left_behind"] == 0
    runs = result["flow_runs"]
    assert isinstance(runs, dict)
    assert runs["completed"] == runs["triggered"] == 4
    assert sorted(runs["by_worker"]) == ["worker-1", "worker-2"]
    assert all(count >= 1 for count in runs["by_worker"].values())
    assert _leftover_databases(result) == []


def _leftover_databases(result: dict[str, object]) -> list[str]:
    """The recipe's databases are dropped when it ends."""
    engine = create_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as connection:
            names = connection.exec_driver_sql(
                "SELECT datname FROM pg_database WHERE datname = ANY(%(names)s)",
                {"names": result["databases"]},
            ).scalars()
            return list(names)
    finally:
        engine.dispose()
