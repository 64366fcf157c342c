"""Planning throughput: how many touchpoints ``plan_touchpoints`` places per second.

Builds prospects with varied deal values, cycle lengths, zones and countries, then plans
a sequence for each, from enrollment times spread over a year. Prints the figures, then
one line of JSON with them.

    .venv/bin/python bench/plan.py [--prospects 100000] [--sequence outbound-2w|builtin|PATH]

The default sequence is sequences/outbound-2w.yaml (business days only); ``builtin`` is
a six-step sequence mixing calendar days, business days and hours.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from relance.cadence import plan_touchpoints
from relance.catalog import resolve_sequence
from relance.prospect import Prospect
from relance.settings import Settings
from relance.spec import Sequence

ROOT = Path(__file__).resolve().parent.parent

PLACES = [
    ("Europe/Paris", "FR"),
    ("Europe/Berlin", "DE"),
    ("Europe/London", "GB"),
    ("Europe/Madrid", "ES"),
    ("America/New_York", "US"),
    ("America/Los_Angeles", "US"),
    ("America/Sao_Paulo", "BR"),
    ("Asia/Kolkata", "IN"),
    ("Australia/Sydney", "AU"),
    ("Pacific/Auckland", "NZ"),
]


def builtin_sequence() -> Sequence:
    email = {"subject": "s.j2", "html": "h.j2", "text": "t.j2"}
    steps = [
        ("intro", "email", "0d", email),
        ("call", "call", "2 business days", {"script": "c.j2"}),
        ("case-study", "email", "3d", email),
        ("nudge", "reminder", "4h", {"reminder": "r.j2"}),
        ("follow-up", "call", "1 business day", {"script": "c.j2"}),
        ("last", "email", "1w", email),
    ]
    return Sequence.model_validate(
        {
            "id": "bench",
            "name": "Bench",
            "steps": [
                {"id": i, "channel": c, "wait": w, "objective": i, "templates": t}
                for i, c, w, t in steps
            ],
        }
    )


def load(reference: str) -> Sequence:
    if reference == "builtin":
        return builtin_sequence()
    path = ROOT / "sequences" / f"{reference}.yaml"
    if reference == "outbound-2w" and not path.is_file():
        return builtin_sequence()
    return resolve_sequence(str(path) if path.is_file() else reference, Settings(home=ROOT))


def make_prospects(count: int, rng: random.Random) -> list[Prospect]:
    prospects = []
    for index in range(count):
        zone, country = PLACES[index % len(PLACES)]
        prospects.append(
            Prospect(
                email=f"p{index}@example.com",
                deal_value=0 if rng.random() < 0.1 else round(rng.lognormvariate(9.6, 1.0)),
                cycle_days=0 if rng.random() < 0.1 else round(rng.lognormvariate(4.1, 0.6)),
                timezone=zone,
                country=country,
            )
        )
    return prospects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prospects", type=int, default=100_000)
    parser.add_argument("--sequence", default="outbound-2w")
    args = parser.parse_args()

    rng = random.Random(20260101)
    sequence = load(args.sequence)
    prospects = make_prospects(args.prospects, rng)
    year = datetime(2026, 1, 1, tzinfo=UTC)
    starts = [year + timedelta(minutes=rng.randrange(365 * 24 * 60)) for _ in prospects]

    began = time.perf_counter()
    touchpoints = 0
    for prospect, start in zip(prospects, starts, strict=True):
        touchpoints += len(plan_touchpoints(sequence, prospect, start))
    seconds = time.perf_counter() - began

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = touchpoints / seconds
    print(
        f"sequence {sequence.id} ({len(sequence.timed_steps)} timed steps), "
        f"{len(prospects):,} prospects in {len(PLACES)} zones"
    )
    print(f"planned {touchpoints:,} touchpoints in {seconds:.2f} s")
    print(f"{rate:,.0f} touchpoints/s ({1e6 / rate:.1f} µs each), peak RSS {peak_rss_mb:.0f} MB")
    json.dump(
        {
            "bench": "plan",
            "sequence": sequence.id,
            "prospects": len(prospects),
            "touchpoints": touchpoints,
            "touchpoints_per_s": round(rate),
            "seconds": round(seconds, 3),
            "peak_rss_mb": round(peak_rss_mb, 1),
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
