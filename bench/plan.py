"""Planning throughput: how many touchpoints ``plan_touchpoints`` places per second.

Builds prospects with varied deal values, cycle lengths, countries and regions (their
regional holidays on), half of them with a zone given and half with a zone inferred from
the region, the country or the phone number, then plans a sequence for each, from
enrollment times spread over a year. Prints the figures, then one line of JSON with them.

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
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from relance.cadence import plan_touchpoints
from relance.catalog import resolve_sequence
from relance.prospect import Prospect
from relance.settings import Settings
from relance.spec import Sequence

ROOT = Path(__file__).resolve().parent.parent

PLACES = [
    ("Europe/Paris", "FR", "FR-57", ""),
    ("Europe/Berlin", "DE", "DE-BY", ""),
    ("Europe/London", "GB", "GB-SCT", ""),
    ("Europe/Madrid", "ES", "ES-CT", ""),
    ("America/New_York", "US", "US-NY", ""),
    ("America/Los_Angeles", "US", "US-CA", ""),
    ("America/Sao_Paulo", "BR", "BR-SP", ""),
    ("Asia/Kolkata", "IN", None, ""),
    ("Australia/Sydney", "AU", "AU-NSW", ""),
    ("Pacific/Auckland", "NZ", None, ""),
    ("Asia/Jerusalem", "IL", None, ""),
    ("America/Chicago", "US", None, "+1 312 555 0100"),
]
"""(zone, country, region, phone): the zone is given for half of the prospects, and
inferred for the other half (region, country or phone)."""


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
        zone, country, region, phone = PLACES[index % len(PLACES)]
        prospects.append(
            Prospect(
                email=f"p{index}@example.com",
                deal_value=0 if rng.random() < 0.1 else round(rng.lognormvariate(9.6, 1.0)),
                cycle_days=0 if rng.random() < 0.1 else round(rng.lognormvariate(4.1, 0.6)),
                timezone=zone if (index // len(PLACES)) % 2 else None,
                country=country,
                region=region,
                phone=phone,
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
    sources = Counter(str(prospect.timezone_source) for prospect in prospects)
    print(
        f"sequence {sequence.id} ({len(sequence.timed_steps)} timed steps), "
        f"{len(prospects):,} prospects in {len(PLACES)} places, "
        f"{sum(1 for p in prospects if p.region):,} with a region; zones: "
        + ", ".join(f"{source} {count:,}" for source, count in sorted(sources.items()))
    )
    print(f"planned {touchpoints:,} touchpoints in {seconds:.2f} s")
    print(f"{rate:,.0f} touchpoints/s ({1e6 / rate:.1f} µs each), peak RSS {peak_rss_mb:.0f} MB")
    json.dump(
        {
            "bench": "plan",
            "sequence": sequence.id,
            "prospects": len(prospects),
            "touchpoints": touchpoints,
            "with_region": sum(1 for p in prospects if p.region),
            "zone_sources": dict(sorted(sources.items())),
            "touchpoints_per_s": round(rate),
            "seconds": round(seconds, 3),
            "peak_rss_mb": round(peak_rss_mb, 1),
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
