"""The several-machines recipe, run on one machine: a Prefect server on PostgreSQL, a process
work pool, two workers, the dispatch deployment and the webhook service, all on 127.0.0.1.

    .venv/bin/python bench/cluster.py [--prospects 600] [--runs 4] [--workers 2] [--timeout 300]

The steps are the commands of the README's "Running on several machines":

1. two new PostgreSQL databases (127.0.0.1:5432, or RELANCE_TEST_POSTGRES_URL's server):
   Relance's store and Prefect's;
2. ``prefect server start`` on a free port, its database on PostgreSQL;
3. ``relance db upgrade``;
4. ``prefect work-pool create relance --type process``;
5. ``prefect deploy --all --concurrency-limit 4`` (prefect.yaml as shipped: every minute);
6. ``--workers`` times ``prefect worker start --pool relance --limit 2``, and
   ``relance serve`` on a free port, checked on ``/healthz``;
7. ``relance enroll`` of ``--prospects`` prospects whose first email is due now, SendGrid
   being a fake in its own process (``bench/provider.py``);
8. ``--runs`` times ``prefect deployment run dispatch/dispatch`` at once. It waits until
   every touch is sent and checks that none was accepted twice by the provider, none is
   left behind, every run completed and each worker ran some of them;
9. stops everything it started and drops both databases, on failure and Ctrl-C too.

Each dispatch run sends in small chunks (``RELANCE_CLAIM_CHUNK=4``) to a provider that
answers in ``--delay`` seconds, so that runs last long enough to overlap and share the
due touches. Prints each step's time, then one line of JSON; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.provider import API_KEY, Accepted, fake_sendgrid  # noqa: E402
from bench.services import Cluster, ClusterError, Service, free_port  # noqa: E402

BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get(
    "RELANCE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
LIMIT = 2
"""Flow runs one worker takes at once."""

PLACE = ("Europe/Paris", "FR", "manufacturing")  # timezone, country, industry
CONCURRENCY_LIMIT = 4

SEQUENCE = """\
id: cluster
name: Cluster check
timezone: Europe/Paris
country: FR
send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}
holidays: {country: false}
prospect_fields: [industry]
locales: [en]
steps:
  - id: email-benchmark
    channel: email
    wait: "0d"
    objective: Give something useful first, the benchmark, with no ask.
    resource:
      title: 2025 on-time delivery benchmark for manufacturers
      url: https://example.com/resources/on-time-delivery-benchmark-2025
    templates:
      subject: outbound-2w/{locale}/email-benchmark.subject.j2
      html: outbound-2w/{locale}/email-benchmark.html.j2
      text: outbound-2w/{locale}/email-benchmark.text.j2
"""
"""Open every day and hour but 23:59 to midnight in Paris, which the check waits out."""


@contextmanager
def databases(prefixes: Sequence[str]) -> Iterator[list[str]]:
    """New PostgreSQL databases for the block (names ``<prefix>_<random>``), then dropped."""
    admin = create_engine(
        make_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    token = secrets.token_hex(4)
    names: list[str] = []
    try:
        with admin.connect() as connection:
            for prefix in prefixes:
                name = f"{prefix}_{token}"
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
                names.append(name)
        yield names
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def database_url(name: str, driver: str) -> str:
    url = make_url(PG_ADMIN_URL).set(drivername=f"postgresql+{driver}", database=name)
    return url.render_as_string(hide_password=False)


def write_prospects(path: Path, count: int) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "first_name", "company", "timezone", "country", "industry"])
        for i in range(count):
            writer.writerow(
                [f"lead{i}@client{i % 97}.example", f"Lead{i}", f"Client {i % 97}", *PLACE]
            )


def environment(workdir: Path, store_url: str, prefect_url: str, api_url: str) -> dict[str, str]:
    """What every process of the cluster is given: the same on every machine but the host."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "RELANCE_", "SENDGRID_"))
    }
    env.update(
        PREFECT_HOME=str(workdir / "prefect-home"),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_DATABASE_CONNECTION_URL=prefect_url,
        PREFECT_LOGGING_LEVEL="INFO",
        PREFECT_WORKER_QUERY_SECONDS="2",  # default 10: the check would mostly wait
        RELANCE_HOME=str(ROOT),
        RELANCE_DATA_DIR=str(workdir / "data"),
        RELANCE_DATABASE_URL=store_url,
        RELANCE_CLAIM_CHUNK="4",
        RELANCE_BATCH_SIZE="50",
    )
    if "RELANCE_SENDGRID_SCHEMA" in os.environ:
        env["RELANCE_SENDGRID_SCHEMA"] = os.environ["RELANCE_SENDGRID_SCHEMA"]
    return env


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = time.perf_counter()

    @contextmanager
    def step(self, name: str, label: str) -> Iterator[None]:
        started = time.perf_counter()
        print(f"{label}...", end=" ", file=sys.stderr, flush=True)
        try:
            yield
        except BaseException:
            print("failed", file=sys.stderr, flush=True)
            raise
        self.seconds[name] = round(time.perf_counter() - started, 1)
        print(f"{self.seconds[name]} s", file=sys.stderr, flush=True)

    def total(self) -> float:
        return round(time.perf_counter() - self._started, 1)


def prefect(*args: str) -> list[str]:
    return [str(BIN / "prefect"), *args]


def relance(*args: str) -> list[str]:
    return [str(BIN / "relance"), *args]


def run_recipe(args: argparse.Namespace) -> dict[str, Any]:
    timer = Timer()
    result: dict[str, Any] = {"bench": "cluster", "prospects": args.prospects, "runs": args.runs}
    result["workers"] = args.workers
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="relance-cluster-")))
        with timer.step("postgres", "1. PostgreSQL databases"):
            store_db, prefect_db = stack.enter_context(
                databases(["relance_cluster", "prefect_cluster"])
            )
        result["databases"] = [store_db, prefect_db]
        sendgrid_url, accepted = stack.enter_context(fake_sendgrid(args.delay))
        server_port, serve_port = free_port(), free_port()
        api_url = f"http://127.0.0.1:{server_port}/api"
        env = environment(
            workdir,
            database_url(store_db, "psycopg"),
            database_url(prefect_db, "asyncpg"),
            api_url,
        )
        env.update(
            SENDGRID_API_KEY=API_KEY,
            RELANCE_SENDGRID_HOST=sendgrid_url,
            RELANCE_PUBLIC_URL=f"http://127.0.0.1:{serve_port}",
        )
        cluster = Cluster(workdir, env, time.monotonic() + args.timeout)
        try:
            client = stack.enter_context(httpx.Client(base_url=api_url, timeout=10))
            result.update(_steps(cluster, timer, args, client, serve_port))
        finally:
            with timer.step("teardown", "9. stopping everything, dropping the databases"):
                cluster.stop_all()
                if args.logs:
                    shutil.copytree(workdir / "logs", args.logs, dirs_exist_ok=True)
                stack.close()
    _check(result, accepted, args.prospects)
    result["seconds"] = {**timer.seconds, "total": timer.total()}
    return result


def _steps(
    cluster: Cluster,
    timer: Timer,
    args: argparse.Namespace,
    client: httpx.Client,
    serve_port: int,
) -> dict[str, Any]:
    with timer.step(
        "server", "2. prefect server start (database on PostgreSQL), in the background"
    ):
        port = str(client.base_url.port)
        server = cluster.start(
            "prefect-server",
            prefect("server", "start", "--host", "127.0.0.1", "--port", port),
            stop_last=True,
        )
    with timer.step("db", "3. relance db upgrade"):
        cluster.run("db-upgrade", relance("db", "upgrade"))
    with timer.step("server_ready", "   waiting for the Prefect server"):
        cluster.wait_for(
            "starting the Prefect server",
            lambda: client.get("/health").json() is True,
            server,
        )
    with timer.step("pool", "4. prefect work-pool create relance --type process"):
        cluster.run("work-pool", prefect("work-pool", "create", "relance", "--type", "process"))
    with timer.step("deploy", f"5. prefect deploy --all --concurrency-limit {CONCURRENCY_LIMIT}"):
        deploy = f"--no-prompt deploy --all --concurrency-limit {CONCURRENCY_LIMIT}"
        cluster.run("deploy", prefect(*deploy.split()))
        deployment = client.get("/deployments/name/dispatch/dispatch").json()
    with timer.step("workers", f"6. {args.workers} x prefect worker start, relance serve"):
        workers = [
            cluster.start(
                f"worker-{n}",
                prefect(*f"worker start --pool relance --name worker-{n} --limit {LIMIT}".split()),
            )
            for n in range(1, args.workers + 1)
        ]
        serve = cluster.start(
            "relance-serve", relance("serve", "--host", "127.0.0.1", "--port", str(serve_port))
        )
        for worker in workers:
            cluster.wait_for(f"starting {worker.name}", partial(worker.logged, "started!"), worker)
        healthz = f"http://127.0.0.1:{serve_port}/healthz"
        cluster.wait_for(
            "starting relance serve",
            lambda: httpx.get(healthz, timeout=5).json() == {"status": "ok"},
            serve,
        )
    with timer.step("enroll", f"7. relance enroll ({args.prospects} prospects, due now)"):
        _wait_out_closed_minute()
        sequence_file = cluster.workdir / "cluster.yaml"
        sequence_file.write_text(SEQUENCE)
        contacts = cluster.workdir / "prospects.csv"
        write_prospects(contacts, args.prospects)
        report = json.loads(
            cluster.run(
                "enroll", relance("enroll", str(sequence_file), "--csv", str(contacts), "--json")
            )
        )
    store = create_engine(cluster.env["RELANCE_DATABASE_URL"])
    try:
        with timer.step("trigger", f"8. {args.runs} x prefect deployment run dispatch/dispatch"):
            outputs = cluster.run_together(
                "deployment-run", prefect("deployment", "run", "dispatch/dispatch"), args.runs
            )
            run_ids = [m.group(1) for o in outputs for m in [re.search(r"UUID: (\S+)", o)] if m]
            if len(run_ids) != args.runs:
                raise ClusterError("no flow run id in:\n" + "\n".join(outputs))
        with timer.step("dispatch", "   waiting until every touch is sent"):
            runs = _wait_for_dispatch(cluster, client, store, run_ids)
        figures = _figures(store, workers, runs, deployment["id"], client)
    finally:
        store.dispose()
    figures["enrolled"] = len(report["enrolled"])
    return figures


def _wait_out_closed_minute() -> None:
    """Touches enrolled just before 23:59 in Paris would wait for midnight: start after it."""
    local = datetime.now(ZoneInfo("Europe/Paris"))
    if local.hour == 23 and local.minute >= 56:
        time.sleep((60 - local.minute) * 60 - local.second + 5)


def _store_counts(store: Any) -> dict[str, int]:
    with store.connect() as connection:
        rows = connection.execute(text("SELECT status, count(*) FROM touchpoints GROUP BY status"))
        return {str(status): int(count) for status, count in rows}


def _read_runs(client: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post("/flow_runs/filter", json=body)
    response.raise_for_status()
    runs: list[dict[str, Any]] = response.json()
    return runs


def _wait_for_dispatch(
    cluster: Cluster, client: httpx.Client, store: Any, run_ids: list[str]
) -> list[dict[str, Any]]:
    final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
    while True:
        runs = _read_runs(client, {"flow_runs": {"id": {"any_": run_ids}}})
        done = [run for run in runs if (run.get("state") or {}).get("type") in final]
        counts = _store_counts(store)
        waiting = counts.get("planned", 0) + counts.get("sending", 0)
        if len(done) == len(run_ids) and waiting == 0:
            return runs
        if len(done) == len(run_ids) and waiting:
            raise ClusterError(f"every run ended, touches left: {counts}")
        if time.monotonic() > cluster.deadline:
            states = Counter((run.get("state") or {}).get("type") for run in runs)
            raise ClusterError(f"timed out: runs {dict(states)}, touches {counts}")
        time.sleep(0.5)


def _figures(
    store: Any,
    workers: list[Service],
    triggered: list[dict[str, Any]],
    deployment_id: str,
    client: httpx.Client,
) -> dict[str, Any]:
    """Who ran what: flow runs per worker (their logs), sends per worker, overlap of runs."""
    runs_by_worker: dict[str, int] = {}
    ticks: dict[str, str] = {}
    for worker in workers:
        log = worker.log.read_text(errors="replace")
        moments = re.findall(r"tick at (\S+): ", log)  # one line per dispatch run
        runs_by_worker[worker.name] = len(moments)
        ticks.update(dict.fromkeys(moments, worker.name))
    sends_by_worker: Counter[str] = Counter()
    with store.connect() as connection:
        per_tick = connection.execute(
            text("SELECT sent_at, count(*) FROM touchpoints WHERE status = 'sent' GROUP BY 1")
        )
        for sent_at, count in per_tick:
            moment = sent_at.astimezone(UTC).isoformat()  # as the flow logs it
            sends_by_worker[ticks.get(moment, "unknown")] += int(count)
    every_run = _read_runs(client, {"deployments": {"id": {"any_": [deployment_id]}}})
    spans = [
        (datetime.fromisoformat(run["start_time"]), datetime.fromisoformat(run["end_time"]))
        for run in every_run
        if run.get("start_time") and run.get("end_time")
    ]
    counts = _store_counts(store)
    return {
        "emails_sent": counts.get("sent", 0),
        "left_behind": sum(n for status, n in counts.items() if status != "sent"),
        "touch_statuses": counts,
        "flow_runs": {
            "triggered": len(triggered),
            "completed": sum(1 for r in triggered if r["state"]["type"] == "COMPLETED"),
            "all_runs_of_deployment": len(every_run),
            "by_worker": runs_by_worker,
            "most_at_once": _most_at_once(spans),
        },
        "sends_by_worker": dict(sends_by_worker),
    }


def _most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = current = 0
    for _, change in edges:
        current += change
        most = max(most, current)
    return most


def _check(result: dict[str, Any], accepted: Accepted, prospects: int) -> None:
    result["accepted_by_provider"] = accepted.requests
    result["rejected_by_provider"] = accepted.rejected
    result["duplicates"] = len(accepted.duplicates)
    problems = []
    if accepted.duplicates:
        problems.append(f"touches accepted twice by the provider: {accepted.duplicates}")
    if accepted.rejected:
        problems.append(f"{accepted.rejected} requests rejected by the provider")
    if accepted.touchpoints != prospects or accepted.requests != prospects:
        problems.append(f"provider accepted {accepted.requests} emails for {prospects} prospects")
    if result.get("left_behind"):
        problems.append(f"touches left behind: {result['touch_statuses']}")
    runs = result.get("flow_runs", {})
    if runs.get("completed") != runs.get("triggered"):
        problems.append(f"runs not completed: {runs}")
    idle = [name for name, count in runs.get("by_worker", {}).items() if count == 0]
    if idle:
        problems.append(f"workers that ran no flow run: {idle}")
    result["problems"] = problems
    result["ok"] = not problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prospects", type=int, default=600)
    parser.add_argument("--runs", type=int, default=4, help="dispatch runs triggered at once")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.1, help="provider answer time (s)")
    parser.add_argument("--timeout", type=float, default=300, help="for the whole recipe (s)")
    parser.add_argument("--logs", type=Path, help="keep every process's log in this directory")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    try:
        result = run_recipe(args)
    except ClusterError as error:
        print(f"\nFAILED: {error}", file=sys.stderr)
        print(json.dumps({"bench": "cluster", "ok": False, "problems": [str(error)]}))
        sys.exit(1)
    for problem in result["problems"]:
        print(f"FAILED: {problem}", file=sys.stderr)
    print(
        f"{result.get('emails_sent')} emails by {result['flow_runs']['triggered']} runs on "
        f"{args.workers} workers (runs per worker {result['flow_runs']['by_worker']}, "
        f"sends per worker {result.get('sends_by_worker')}, at most "
        f"{result['flow_runs']['most_at_once']} runs at once); provider accepted "
        f"{result['accepted_by_provider']}, duplicates {result['duplicates']}, "
        f"left behind {result.get('left_behind')}; {result['seconds']['total']} s in all",
        file=sys.stderr,
    )
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
