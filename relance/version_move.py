"""Moving one enrollment to another version of its sequence: the pure decision.

``VersionMove(sequence, version).decide(old, touches, prospect, enrolled_at=, now=)``
says, for each touch of the chase, what ``relance migrate`` does (``relance.versions``
writes it):

- steps are matched by id;
- a touch already done (sent, skipped, failed, unknown, or being sent) stays as it is and
  is never sent again, even if its step changed or is gone;
- a planned touch whose step is gone (or is no longer on the clock) is skipped with the
  reason "removed in version N";
- every step of the new version not done yet, planned or new, is planned in the new
  version's order with its waits, measured from the last touch done (from the
  enrollment's start when none is done). A new step comes next even when it was added
  before steps already done;
- a touch that would fall in the past falls now instead, and the later ones keep their
  waits after it: a migration never fires a burst of overdue touches;
- each planned touch gets the prospect's variant of the new step (``relance.variants``).

The enrollment's start is not stored: when nothing is done yet, it is the first touch's
due time if the old first step had no wait, else the enrollment time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from relance.cadence import PlannedTouch, plan_touchpoints
from relance.prospect import Prospect
from relance.spec import Channel, Sequence, Step, Wait, WaitUnit
from relance.variants import assign_variant

KEPT = "kept"
SKIPPED = "skipped"
REPLANNED = "replanned"
UNCHANGED = "unchanged"
ADDED = "added"

_NO_WAIT = Wait(amount=0, unit=WaitUnit.DAYS)


@dataclass(frozen=True)
class StoredTouch:
    """A touch of the chase as the store has it."""

    id: int
    step_id: str
    channel: str
    position: int
    status: str
    due_at: datetime
    variant: str | None = None
    moved: tuple[str, ...] = ()


@dataclass(frozen=True)
class TouchMove:
    """What a migration does to one touch (or to one new step).

    ``action``: kept (done, left as it is), skipped (its step is gone), replanned or
    unchanged (planned again, at another time or the same), added (a new step).
    """

    step_id: str
    action: str
    status: str
    """The touch's status before: sent, planned...; "new" for a step it did not have."""
    touchpoint_id: int | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    variant_before: str | None = None
    variant: str | None = None
    channel: Channel | None = None
    position: int | None = None
    moved: tuple[str, ...] = ()
    reason: str | None = None


class VersionMove:
    """The pure decisions of moving enrollments to ``sequence``, stored as ``version``.

    Plans of the steps left to do are shared between the enrollments that have the
    same steps left (the planner keeps one compiled calendar per such plan).
    """

    def __init__(self, sequence: Sequence, version: int) -> None:
        self.sequence = sequence
        self.version = version
        self.positions = {step.id: index for index, step in enumerate(sequence.steps)}
        self._remaining: dict[tuple[tuple[str, ...], bool], Sequence] = {}

    def decide(
        self,
        old: Sequence,
        touches: list[StoredTouch],
        prospect: Prospect,
        *,
        enrolled_at: datetime,
        now: datetime,
    ) -> list[TouchMove]:
        """What happens to each touch of one enrollment, then the steps it gains, in order."""
        timed = {step.id: step for step in self.sequence.timed_steps}
        done = [touch for touch in touches if touch.status != "planned"]
        planned = {touch.step_id: touch for touch in touches if touch.status == "planned"}
        done_ids = {touch.step_id for touch in done}
        moves = [
            TouchMove(touch.step_id, KEPT, touch.status, touch.id, touch.due_at, touch.due_at)
            for touch in done
        ]
        for touch in planned.values():
            if touch.step_id not in timed:
                moves.append(
                    TouchMove(
                        touch.step_id,
                        SKIPPED,
                        touch.status,
                        touch.id,
                        touch.due_at,
                        variant_before=touch.variant,
                        reason=f"removed in version {self.version}",
                    )
                )
        left = [step for step in self.sequence.timed_steps if step.id not in done_ids]
        if not left:
            return moves
        plan = self._plan(left, prospect, _anchor(old, touches, enrolled_at), now)
        for placed in plan:
            step = timed[placed.step_id]
            before = planned.get(step.id)
            variant = assign_variant(self.sequence.id, step, prospect.email)
            common: dict[str, Any] = {
                "due_after": placed.due_at,
                "variant": variant,
                "channel": step.channel,
                "position": self.positions[step.id],
                "moved": tuple(placed.moved),
            }
            if before is None:
                moves.append(TouchMove(step.id, ADDED, "new", **common))
                continue
            same = (
                before.due_at == placed.due_at
                and before.variant == variant
                and before.channel == step.channel.value
            )
            moves.append(
                TouchMove(
                    step.id,
                    UNCHANGED if same else REPLANNED,
                    before.status,
                    before.id,
                    before.due_at,
                    variant_before=before.variant,
                    **common,
                )
            )
        return moves

    def _plan(
        self, left: list[Step], prospect: Prospect, start: datetime, now: datetime
    ) -> list[PlannedTouch]:
        plan = plan_touchpoints(self._only(left, from_now=False), prospect, start)
        if plan[0].due_at < now:
            # Overdue: the first falls now, the others keep their waits after it.
            plan = plan_touchpoints(self._only(left, from_now=True), prospect, now)
        return plan

    def _only(self, steps: list[Step], *, from_now: bool) -> Sequence:
        """The sequence reduced to ``steps`` (the first without its wait when ``from_now``)."""
        key = (tuple(step.id for step in steps), from_now)
        found = self._remaining.get(key)
        if found is None:
            if from_now:
                steps = [steps[0].model_copy(update={"wait": _NO_WAIT}), *steps[1:]]
            found = self._remaining[key] = self.sequence.model_copy(update={"steps": steps})
        return found


def _anchor(old: Sequence, touches: list[StoredTouch], enrolled_at: datetime) -> datetime:
    """What the steps left are measured from: the last touch done, else the start."""
    done = [touch.due_at for touch in touches if touch.status != "planned"]
    if done:
        return max(done)
    first = old.timed_steps[0]
    if first.wait.amount == 0:
        for touch in touches:
            if touch.step_id == first.id:
                return touch.due_at
    return enrolled_at


def version_changes(old: Sequence, new: Sequence) -> list[str]:
    """What changed from ``old`` to ``new``: "+id" (step added), "-id" (removed), "~id"
    (changed), "order" (steps reordered), then the other keys that changed ("cadence")."""
    before = {step.id: step for step in old.steps}
    after = {step.id: step for step in new.steps}
    changes = [f"+{step_id}" for step_id in after if step_id not in before]
    changes += [f"-{step_id}" for step_id in before if step_id not in after]
    changes += [
        f"~{step_id}" for step_id in after if before.get(step_id, after[step_id]) != after[step_id]
    ]
    kept_before = [step_id for step_id in before if step_id in after]
    kept_after = [step_id for step_id in after if step_id in before]
    if kept_before != kept_after:
        changes.append("order")
    changes += [
        name
        for name in Sequence.model_fields
        if name != "steps" and getattr(old, name) != getattr(new, name)
    ]
    return changes
