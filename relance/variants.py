"""A/B variants: which variant of a step each prospect gets. Pure and deterministic.

A step with ``variants`` (see ``relance.spec.Variant``) sends each prospect one of them,
always the same one for the same sequence, step and address, in proportion to the
weights. The assignment is made when the touch is planned (at enrollment, or when
``relance migrate`` adds the step) and recorded in ``touchpoints.variant``; the dispatcher
renders the recorded variant, and reports count by it.

How: weighted rendezvous hashing. Every variant draws a number for the prospect,
``u = sha256("<sequence id>:<step id>:<email>:<variant id>")`` read as a fraction in
(0, 1), and scores ``-ln(u) / weight``; the lowest score wins. The scores are independent
exponential draws of rates ``weight``, so a variant wins with probability
``weight / sum(weights)`` exactly.

Unlike cutting one hash along cumulative weights, this keeps prospects where they are when
the other variants change: adding a variant, or raising its weight, only moves prospects
*to* it; removing one, or lowering its weight, only moves *its* prospects away; the order
in which variants are written does not matter. So an edit of a live A/B test (a new
version of the sequence, then ``relance migrate``) reassigns only the prospects it must.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

from relance.spec import Sequence, Step, Variant

_SCALE = 2.0**64


def draw(key: str) -> float:
    """A number in (0, 1) that only ``key`` decides: the first 64 bits of its SHA-256."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "big") + 0.5) / _SCALE


def choose_variant(variants: Iterable[Variant], key: str) -> str:
    """The id of the variant ``key`` (sequence, step and prospect) gets.

    Raises ValueError when there is no variant to choose from.
    """
    best: tuple[float, str] | None = None
    for variant in variants:
        score = -math.log(draw(f"{key}:{variant.id}")) / variant.weight
        if best is None or (score, variant.id) < best:
            best = (score, variant.id)
    if best is None:
        raise ValueError("expected at least one variant to choose from, got none")
    return best[1]


def assign_variant(sequence_id: str, step: Step, email: str) -> str | None:
    """The variant of ``step`` the prospect at ``email`` gets, or None: the step has none."""
    if not step.variants:
        return None
    return choose_variant(step.variants, f"{sequence_id}:{step.id}:{email.strip().lower()}")


def assign_variants(sequence: Sequence, email: str) -> dict[str, str]:
    """step id -> variant id, for every step of ``sequence`` that has variants."""
    chosen: dict[str, str] = {}
    for step in sequence.steps:
        variant = assign_variant(sequence.id, step, email)
        if variant is not None:
            chosen[step.id] = variant
    return chosen
