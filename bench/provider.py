"""A fake SendGrid in its own process that reports which touchpoints it accepted, and how often.

The benchmarks and the cluster recipe point every dispatcher at it, then count
duplicates on the provider's side (the touchpoint id travels in each personalization's
``custom_args``), which is where a customer would see them.

    with fake_sendgrid(delay=0.1) as (url, accepted):
        ...  # dispatchers send to url
    accepted.duplicates  # touchpoint ids accepted more than once

Run alone, ``python bench/provider.py [delay]`` prints its URL, serves until standard
input closes, then prints one line of JSON: accepted and rejected counts and the
touchpoint ids accepted more than once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "SG.fake-key"


@dataclass
class Accepted:
    """What the fake provider saw, filled in when its block ends."""

    requests: int = 0
    rejected: int = 0
    touchpoints: int = 0
    """Distinct touchpoint ids accepted."""
    duplicates: dict[str, int] = field(default_factory=dict)
    """Touchpoint id -> times accepted, for those accepted more than once."""


def touchpoints_in(body: dict[str, Any]) -> list[str]:
    """The touchpoint ids a Mail Send body carries (one per personalization)."""
    return [
        str(personalization["custom_args"]["touchpoint_id"])
        for personalization in body.get("personalizations", [])
        if "touchpoint_id" in personalization.get("custom_args", {})
    ]


@contextmanager
def fake_sendgrid(delay: float = 0.0) -> Iterator[tuple[str, Accepted]]:
    """(url, accepted) of a fake SendGrid in a child process; ``accepted`` is filled at the end."""
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), str(delay)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    accepted = Accepted()
    try:
        url = child.stdout.readline().strip()
        if not url:
            raise RuntimeError("the fake SendGrid did not start (is the Mail Send schema there?)")
        yield url, accepted
    finally:
        child.stdin.close()
        report = json.loads(child.stdout.readline() or "{}")
        child.wait(timeout=60)
        accepted.requests = report.get("accepted", 0)
        accepted.rejected = report.get("rejected", 0)
        accepted.touchpoints = report.get("touchpoints", 0)
        accepted.duplicates = report.get("duplicates", {})


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.fakes.sendgrid_server import FakeSendGrid

    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    with FakeSendGrid(api_key=API_KEY, delay=delay) as fake:
        print(fake.url, flush=True)
        sys.stdin.read()
        counts = Counter(tid for body in list(fake.requests) for tid in touchpoints_in(body))
        report = {
            "accepted": len(fake.requests),
            "rejected": len(fake.rejected),
            "touchpoints": len(counts),
            "duplicates": {tid: n for tid, n in counts.items() if n > 1},
        }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
