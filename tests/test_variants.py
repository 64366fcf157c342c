"""A/B variants: deterministic weighted assignment, validation, rendering, and dispatch.

The statistical tests use a fixed list of addresses, so that their counts are exact: a
change of the assignment rule changes them and fails the test on purpose.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from store_support import T0, RecordingSender, tick

from relance.catalog import resolve_sequence
from relance.dispatcher import Dispatcher
from relance.enrollments import enroll
from relance.errors import RenderError
from relance.prospect import Prospect
from relance.rendering import (
    Sender,
    check_templates,
    render_step,
    template_environment,
)
from relance.settings import Settings
from relance.spec import Sequence, Step
from relance.store import Store
from relance.tables import touchpoints
from relance.variants import assign_variant, assign_variants, choose_variant, draw

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = Settings(home=ROOT, sequences_dir=None, templates_dir=None)
SENDER = Sender(name="Camille Durand", email="camille@example.com", company="Exemple SAS")
EMAILS = [f"p{index:05d}@example.com" for index in range(10_000)]


def email_step(variants: list[dict[str, Any]], step_id: str = "email-benchmark") -> Step:
    return Step.model_validate(
        {
            "id": step_id,
            "channel": "email",
            "objective": "Say hello.",
            "templates": {"subject": "s.j2", "html": "h.html.j2", "text": "t.j2"},
            "variants": variants,
        }
    )


def variant(variant_id: str, weight: float = 1, subject: str | None = None) -> dict[str, Any]:
    templates = {"subject": subject or f"{variant_id}.subject.j2"}
    return {"id": variant_id, "weight": weight, "templates": templates}


def assignments(step: Step, sequence_id: str = "outbound-2w") -> list[str | None]:
    return [assign_variant(sequence_id, step, email) for email in EMAILS]


def within(count: int, total: int, share: float, sigmas: float = 4) -> bool:
    spread = sigmas * math.sqrt(total * share * (1 - share))
    return abs(count - total * share) <= spread


# --- assignment -----------------------------------------------------------------------


def test_a_prospect_always_gets_the_same_variant() -> None:
    step = email_step([variant("a"), variant("b"), variant("c")])
    first = assignments(step)
    assert assignments(step) == first
    assert assign_variant("outbound-2w", step, " P00042@Example.COM ") == first[42]


def test_a_step_without_variants_assigns_none() -> None:
    step = Step.model_validate(
        {
            "id": "hello",
            "channel": "email",
            "objective": "Say hello.",
            "templates": {"subject": "s.j2", "html": "h.html.j2", "text": "t.j2"},
        }
    )
    assert assign_variant("demo", step, "ana@example.com") is None
    assert "variants" not in step.model_dump()  # stored versions keep their digest


def test_fifty_fifty_splits_ten_thousand_prospects_in_half() -> None:
    counts = Counter(assignments(email_step([variant("a", 50), variant("b", 50)])))
    assert counts == {"a": 5103, "b": 4897}
    assert within(counts["a"], len(EMAILS), 0.5)


def test_weights_one_to_three_give_a_quarter_and_three_quarters() -> None:
    counts = Counter(assignments(email_step([variant("a", 1), variant("b", 3)])))
    assert counts == {"a": 2499, "b": 7501}
    assert within(counts["a"], len(EMAILS), 0.25)


def test_three_uneven_variants_follow_their_weights() -> None:
    step = email_step([variant("a", 0.5), variant("b", 0.3), variant("c", 0.2)])
    counts = Counter(assignments(step))
    assert counts == {"a": 5145, "b": 2963, "c": 1892}
    for name, share in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert within(counts[name], len(EMAILS), share)


def test_the_shipped_ab_test_splits_outbound_prospects_in_half() -> None:
    sequence = resolve_sequence("outbound-2w", SHIPPED)
    step = sequence.step("email-benchmark")
    counts = Counter(assignments(step, sequence.id))
    assert counts == {"question": 5044, "title": 4956}
    assert within(counts["title"], len(EMAILS), 0.5)


def test_adding_a_variant_only_moves_prospects_to_it() -> None:
    before = assignments(email_step([variant("a"), variant("b")]))
    after = assignments(email_step([variant("a"), variant("b"), variant("c")]))
    moved = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert {new for _, new in moved} == {"c"}
    assert within(len(moved), len(EMAILS), 1 / 3)


def test_raising_a_weight_only_moves_prospects_to_that_variant() -> None:
    before = assignments(email_step([variant("a"), variant("b"), variant("c")]))
    after = assignments(email_step([variant("a"), variant("b", 2), variant("c")]))
    moved = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert moved and {new for _, new in moved} == {"b"}


def test_removing_a_variant_only_moves_its_own_prospects() -> None:
    before = assignments(email_step([variant("a"), variant("b"), variant("c")]))
    after = assignments(email_step([variant("a"), variant("b")]))
    moved = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert {old for old, _ in moved} == {"c"}
    assert len(moved) == before.count("c")


def test_the_order_in_which_variants_are_written_does_not_matter() -> None:
    forward = assignments(email_step([variant("a", 2), variant("b"), variant("c")]))
    backward = assignments(email_step([variant("c"), variant("b"), variant("a", 2)]))
    assert forward == backward


def test_each_sequence_and_step_draws_independently() -> None:
    step = email_step([variant("a"), variant("b")])
    other_step = email_step([variant("a"), variant("b")], step_id="follow-up")
    here = assignments(step)
    same_step = sum(x == y for x, y in zip(here, assignments(step, "other"), strict=True))
    same_id = sum(x == y for x, y in zip(here, assignments(other_step), strict=True))
    assert within(same_step, len(EMAILS), 0.5) and within(same_id, len(EMAILS), 0.5)


def test_draws_are_strictly_between_zero_and_one() -> None:
    values = [draw(email) for email in EMAILS]
    assert min(values) > 0 and max(values) < 1
    assert within(sum(value < 0.5 for value in values), len(values), 0.5)


def test_choosing_among_no_variants_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one variant"):
        choose_variant([], "demo:hello:ana@example.com")


def test_assign_variants_covers_every_step_with_variants() -> None:
    sequence = resolve_sequence("outbound-2w", SHIPPED)
    assert assign_variants(sequence, "ana@example.com") == {"email-benchmark": "question"}
    assert assign_variants(sequence, "chloe@example.com") == {"email-benchmark": "title"}


# --- templates ------------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def ab_sequence(**variants_extra: Any) -> Sequence:
    return Sequence.model_validate(
        {
            "id": "demo",
            "name": "Demo",
            "locale": "en",
            "locales": ["fr"],
            "steps": [
                {
                    "id": "hello",
                    "channel": "email",
                    "objective": "Say hello.",
                    "templates": {
                        "subject": "{locale}/subject.j2",
                        "html": "{locale}/body.html.j2",
                        "text": "{locale}/body.text.j2",
                    },
                    "variants": [
                        {"id": "plain", "weight": 1},
                        {"id": "question", "weight": 1, **variants_extra},
                    ],
                }
            ],
        }
    )


def ab_files(root: Path) -> Path:
    files: dict[str, str] = {}
    for locale in ("en", "fr"):
        files[f"{locale}/subject.j2"] = f"{locale} hello {{{{ prospect.first_name }}}}"
        files[f"{locale}/question.subject.j2"] = (
            f"{locale} question for {{{{ prospect.company }}}}?"
        )
        files[f"{locale}/body.html.j2"] = (
            f'<p>{locale} body</p><a href="{{{{ unsubscribe_url }}}}">x</a>'
        )
        files[f"{locale}/body.text.j2"] = f"{locale} body {{{{ unsubscribe_url }}}}"
        files[f"{locale}/short.html.j2"] = f"<p>{locale} short</p>"
        files[f"{locale}/short.text.j2"] = f"{locale} short"
    return write(root, files)


def test_a_variant_renders_its_own_parts_and_the_steps_others(tmp_path: Path) -> None:
    env = template_environment(ab_files(tmp_path))
    sequence = ab_sequence(templates={"subject": "{locale}/question.subject.j2"})
    step = sequence.step("hello")
    ana = Prospect(email="ana@example.com", first_name="Ana", company="Acme", locale="fr")
    plain = render_step(env, sequence, step, ana, sender=SENDER, variant="plain")
    question = render_step(env, sequence, step, ana, sender=SENDER, variant="question")
    assert (plain.subject, question.subject) == ("fr hello Ana", "fr question for Acme?")
    assert plain.html == question.html and plain.text == question.text
    assert render_step(env, sequence, step, ana, sender=SENDER) == plain


def test_an_unknown_variant_is_a_render_error(tmp_path: Path) -> None:
    env = template_environment(ab_files(tmp_path))
    sequence = ab_sequence(templates={"subject": "{locale}/question.subject.j2"})
    with pytest.raises(RenderError, match="no variant 'gone' in step hello of demo"):
        render_step(
            env,
            sequence,
            sequence.step("hello"),
            Prospect(email="ana@example.com"),
            sender=SENDER,
            variant="gone",
        )


def test_check_templates_covers_every_variant_in_every_locale(tmp_path: Path) -> None:
    root = ab_files(tmp_path)
    (root / "fr" / "question.subject.j2").unlink()
    (root / "en" / "short.html.j2").write_text("{{ prospect.budget_code }}", encoding="utf-8")
    sequence = ab_sequence(
        templates={
            "subject": "{locale}/question.subject.j2",
            "html": "{locale}/short.html.j2",
            "text": "{locale}/short.text.j2",
        }
    )
    findings = check_templates(sequence, root)
    assert {finding.loc[:-1] for finding in findings} == {("steps", 0, "variants", 1, "templates")}
    assert sorted((finding.loc[-1], finding.message) for finding in findings) == [
        (
            "html",
            "template templates/en/short.html.j2 uses prospect.budget_code, "
            "which no prospect field provides",
        ),
        ("subject", "expected a template file at templates/fr/question.subject.j2, got none"),
    ]


def test_the_shipped_subjects_differ_and_fit_in_every_language() -> None:
    sequence = resolve_sequence("outbound-2w", SHIPPED)
    step = sequence.step("email-benchmark")
    env = template_environment(SHIPPED.templates_path)
    ana = Prospect(email="ana@example.com", company="Acme Industrie", fields={"industry": "x"})
    subjects: dict[tuple[str, str], str] = {}
    for locale in sequence.all_locales:
        for arm in step.variants:
            rendered = render_step(
                env, sequence, step, ana, sender=SENDER, locale=locale, variant=arm.id
            )
            assert rendered.subject is not None and len(rendered.subject) <= 78
            subjects[(locale, arm.id)] = rendered.subject
    assert [(v.id, v.weight) for v in step.variants] == [("title", 50), ("question", 50)]
    assert subjects == {
        ("fr", "title"): "Benchmark 2025 : les délais de livraison dans l'industrie",
        ("fr", "question"): "87 % de livraisons à l'heure : où se situe Acme Industrie ?",
        ("en", "title"): "2025 benchmark: on-time delivery in manufacturing",
        ("en", "question"): "87% of orders ship on time: where does Acme Industrie stand?",
    }
    assert check_templates(sequence, SHIPPED.templates_path) == []


# --- dispatch: the variant recorded at enrollment is the one sent -----------------------

NAMES = ["ana", "bob", "chloe", "david", "emma", "farid"]
"""With the shipped test: ana, bob, david get "question"; chloe, emma, farid get "title"."""


def shipped_dispatcher(store: Store, tmp_path: Path) -> tuple[Dispatcher, RecordingSender]:
    settings = Settings(home=ROOT, data_dir=tmp_path / "data", claim_chunk=4)
    sender = RecordingSender()
    env = template_environment(settings.templates_path)
    return Dispatcher(store, settings, sender, env), sender


def outbound_people() -> list[Prospect]:
    return [
        Prospect(
            email=f"{name}@example.com",
            first_name=name.title(),
            company=f"{name.title()} SA",
            locale="en" if index % 2 else "fr",
            fields={"industry": "automotive"},
        )
        for index, name in enumerate(NAMES)
    ]


def recorded_variants(store: Store, step_id: str) -> dict[int, str | None]:
    with store.reading() as connection:
        return {
            row.id: row.variant
            for row in connection.execute(
                select(touchpoints.c.id, touchpoints.c.variant).where(
                    touchpoints.c.step_id == step_id
                )
            )
        }


def test_the_variant_recorded_at_enrollment_is_the_one_sent(store: Store, tmp_path: Path) -> None:
    sequence = resolve_sequence("outbound-2w", SHIPPED)
    people = outbound_people()
    result = enroll(store, sequence, people, start=T0, now=T0)
    recorded = recorded_variants(store, "email-benchmark")
    assert Counter(recorded.values()) == {"question": 3, "title": 3}
    assert set(recorded_variants(store, "call-intro").values()) == {None}
    dispatcher, sender = shipped_dispatcher(store, tmp_path)
    tick(store, dispatcher, T0 + timedelta(days=1, hours=1))  # Tuesday 10:00 in Paris
    assert len(sender.sent) == len(people)
    env = template_environment(SHIPPED.templates_path)
    step = sequence.step("email-benchmark")
    by_email = {person.email: person for person in people}
    ids = dict(result.enrolled)
    for message in sender.sent:
        person = by_email[message.to_email]
        touch = int(message.touchpoint_id)
        chosen = assign_variant(sequence.id, step, person.email)
        assert recorded[touch] == chosen
        expected = render_step(env, sequence, step, person, sender=SENDER, variant=chosen)
        assert message.subject == expected.subject
        assert message.enrollment_id == str(ids[person.email])
    subjects = {message.to_email: message.subject for message in sender.sent}
    assert subjects["ana@example.com"] == ("87 % de livraisons à l'heure : où se situe Ana SA ?")
    assert subjects["bob@example.com"] == "87% of orders ship on time: where does Bob SA stand?"
    assert subjects["chloe@example.com"] == (
        "Benchmark 2025 : les délais de livraison dans l'industrie"
    )
    assert subjects["david@example.com"] == (
        "87% of orders ship on time: where does David SA stand?"
    )


def test_follow_ups_answer_the_subject_of_the_variant_sent(store: Store, tmp_path: Path) -> None:
    sequence = resolve_sequence("outbound-2w", SHIPPED)
    enroll(store, sequence, outbound_people(), start=T0, now=T0)
    dispatcher, sender = shipped_dispatcher(store, tmp_path)
    tick(store, dispatcher, T0 + timedelta(days=1, hours=1))
    first = {message.to_email: message.subject for message in sender.sent}
    sender.sent.clear()
    tick(store, dispatcher, T0 + timedelta(days=7, hours=1))  # Monday 9 March: the case study
    follow_ups = {message.to_email: message.subject for message in sender.sent}
    assert {message.step_id for message in sender.sent} == {"email-case-study"}
    assert follow_ups == {email: f"Re: {subject}" for email, subject in first.items()}


def test_a_touch_planned_without_its_variant_gets_the_prospects_own_when_sent(
    store: Store, tmp_path: Path
) -> None:
    sequence = resolve_sequence("outbound-2w", SHIPPED)
    enroll(store, sequence, outbound_people()[:2], start=T0, now=T0)
    with store.transaction() as connection:
        connection.execute(update(touchpoints).values(variant=None))
    dispatcher, sender = shipped_dispatcher(store, tmp_path)
    tick(store, dispatcher, T0 + timedelta(days=1, hours=1))
    assert list(recorded_variants(store, "email-benchmark").values()) == ["question"] * 2
    assert [m.subject.startswith(("87 %", "87%")) for m in sender.sent] == [True, True]
