"""Fault injection, long form: kill a dispatcher with SIGKILL at random points, restart it,
and count duplicates and losses against what the fake SendGrid received.

    .venv/bin/python bench/faults.py [--runs 120] [--emails 200] [--seed 5] [--postgres-every 4]

Each run: a fresh store with ``--emails`` due emails; a dispatcher process that fails at
one point (SIGKILL before a request, while it is with the provider, after its answer,
inside the record or the claim transaction before COMMIT; or the store fails at a record's
COMMIT); in some runs 503/429 answers and one answer held past the sender's timeout;
SendGrid's events for what it accepted (in 1 run out of 10, none: no event feed);
dispatcher processes restarted after the lease and after the grace. The kinds of point
take turns; where each strikes, and the rest, is random. Every ``--postgres-every``-th run
is on PostgreSQL (127.0.0.1:5432) when it answers. See tests/fault_support.py.

Prints one line per run, the totals per point, and one line of JSON; exits non-zero if a
run had a duplicate, a loss or another problem.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fault_support import (  # noqa: E402 - after the path set-up above
    RunResult,
    Scenario,
    fault_runs,
    postgres_reachable,
    summary,
)
from fault_worker import POINTS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=120)
    parser.add_argument("--emails", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--postgres-every", type=int, default=4, help="every n-th run on PostgreSQL (0: never)"
    )
    args = parser.parse_args()
    postgres = args.postgres_every > 0 and postgres_reachable()
    if args.postgres_every > 0 and not postgres:
        print("PostgreSQL at 127.0.0.1:5432 does not answer: every run is on SQLite")
    rng = random.Random(args.seed)
    results: list[RunResult] = []
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        fault_runs(Path(tmp), emails=args.emails, postgres=postgres) as run,
    ):
        for number in range(1, args.runs + 1):
            # The points take turns, so that each gets its share; the rest is random.
            scenario = Scenario.draw(rng, args.emails, POINTS[(number - 1) % len(POINTS)])
            on_postgres = postgres and number % args.postgres_every == 0
            result = run(number, scenario, "postgresql" if on_postgres else "sqlite")
            results.append(result)
            print(result.line(), flush=True)
            for problem in result.problems:
                print(f"    {problem}", flush=True)
    totals = summary(results)
    elapsed = time.perf_counter() - started
    print(
        f"\n{totals['runs']} runs in {elapsed:.0f} s ({totals['backends']}): "
        f"{totals['kills']} SIGKILLs, {totals['store_errors']} store failures at COMMIT, "
        f"{totals['faults_not_reached']} faults not reached; {totals['accepted']} of "
        f"{totals['touches']} touches accepted by the provider; duplicates "
        f"{totals['duplicates']}, losses {totals['losses']}; {totals['unknown']} outcomes "
        f"left unknown by a fault, {totals['unknown_resolved']} resolved, "
        f"{totals['unknown_left_for_review']} left for review (runs without an event feed)"
    )
    for point in POINTS:
        runs = [r for r in results if r.fault.startswith(point + "@")]
        print(
            f"  {point:14s} {len(runs):3d} runs: duplicates {sum(r.duplicates for r in runs)}, "
            f"losses {sum(r.losses for r in runs)}, unknown {sum(r.unknown for r in runs)} "
            f"(resolved {sum(r.unknown_resolved for r in runs)})"
        )
    print(json.dumps(totals))
    failed = any(r.problems or r.duplicates or r.losses for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
