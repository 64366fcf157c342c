"""Loading sequence files: positions, wording, and no exception whatever the input."""

from __future__ import annotations

import copy
from datetime import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from relance.diagnostics import Problem
from relance.loader import MAX_VALUES, LoadResult, Position, load_sequence_file, load_sequence_text

MINIMAL = """\
id: demo
name: Demo
steps:
  - id: first-call
    channel: call
    wait: 0d
    objective: Catch attention
    templates: {script: demo/first-call.script.j2}
"""


def load(text: str, stem: str = "demo") -> LoadResult:
    return load_sequence_text(text, file="demo.yaml", stem=stem)


def messages(result: LoadResult) -> list[tuple[int, int, str, str, str | None]]:
    return [(p.line, p.column, p.path, p.message, p.hint) for p in result.problems]


def test_a_valid_sequence_loads_with_positions() -> None:
    result = load(MINIMAL)
    assert result.problems == []
    assert result.ok
    assert result.sequence is not None
    assert result.sequence.steps[0].id == "first-call"
    assert result.source_map.locate(("steps", 0, "channel")) == Position(5, 14)
    assert result.source_map.locate_key(("steps", 0, "channel")) == Position(5, 5)
    assert result.source_map.locate(("steps", 0, "templates", "html")) == Position(8, 16)
    assert result.source_map.locate(("nowhere",)) == Position(1, 1)


def test_yaml_clock_times_are_read_as_times() -> None:
    result = load(MINIMAL + "send_window: {start: 08:30, end: 18:00}\n")
    assert result.sequence is not None
    assert result.sequence.send_window.start == time(8, 30)


def test_a_duplicate_key_at_any_depth_is_reported_at_the_second() -> None:
    text = MINIMAL.replace(
        "templates: {script: demo/first-call.script.j2}",
        "templates:\n      script: demo/a.j2\n      script: demo/b.j2",
    )
    assert messages(load(text)) == [
        (
            10,
            7,
            "steps[0].templates.script",
            "duplicate key 'script' (first at line 9)",
            "remove one: other YAML tools would silently keep only the last",
        )
    ]


def test_an_unknown_top_level_key_suggests_the_close_one_and_hides_the_missing_one() -> None:
    result = load(MINIMAL.replace("steps:", "step:"))
    assert messages(result) == [(3, 1, "step", "unknown key", "did you mean 'steps'?")]
    assert result.sequence is None


def test_a_boolean_where_text_is_expected_hints_at_quotes() -> None:
    result = load(MINIMAL + "country: no\n")
    assert messages(result) == [
        (9, 10, "country", "expected text, got no (read as false)", 'quote it: "no"')
    ]


def test_a_number_where_text_is_expected_shows_what_was_written() -> None:
    result = load(MINIMAL.replace("name: Demo", "name: 10:30"))
    assert messages(result)[0][3] == "expected text, got 10:30 (read as the number 630)"


def test_the_id_must_be_the_file_name() -> None:
    result = load(MINIMAL, stem="outbound-2w")
    assert messages(result) == [
        (
            1,
            5,
            "id",
            "expected 'outbound-2w' (the file name without .yaml), got 'demo'",
            "write id: outbound-2w, or rename the file",
        )
    ]
    assert result.sequence is not None and not result.ok


def test_a_duplicate_step_id_is_reported_once_at_the_second() -> None:
    second = MINIMAL.split("steps:\n")[1].replace("wait: 0d", "wait: 1d")
    result = load(MINIMAL + second)
    assert [(line, path, message) for line, _, path, message, _ in messages(result)] == [
        (9, "steps[1].id", "duplicate step id 'first-call' (first at line 4)")
    ]


def test_problems_are_sorted_by_line() -> None:
    text = MINIMAL.replace("channel: call", "channel: sms").replace("name: Demo", "name: ''")
    lines = [p.line for p in load(text).problems]
    assert lines == sorted(lines) and len(lines) == 2


def test_merge_keys_fill_in_and_explicit_keys_win() -> None:
    text = (
        "id: demo\nname: Demo\nsteps:\n"
        "  - &call {id: first-call, channel: call, objective: A, templates: {script: a.j2}}\n"
        "  - <<: *call\n    id: second-call\n    objective: B\n"
    )
    result = load(text)
    assert result.problems == []
    assert result.sequence is not None
    assert [s.objective for s in result.sequence.steps] == ["A", "B"]


def test_an_alias_inside_its_own_anchor_is_a_problem() -> None:
    result = load(MINIMAL + "locales: &l [fr, *l]\n")
    assert ("locales[1]", "expected a value, got an alias (*name) inside its own anchor") in [
        (p.path, p.message) for p in result.problems
    ]


def test_an_alias_bomb_stops_early() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    result = load("\n".join(lines) + "\n")
    assert [p.message for p in result.problems] == [
        f"expected at most {MAX_VALUES} values, got more once aliases are expanded"
    ]


def test_deep_nesting_is_a_problem() -> None:
    for depth in (60, 5000):
        result = load(f"id: {'[' * depth}{']' * depth}\n")
        assert result.problems[0].message.startswith("expected lists and mappings nested at most")


def test_values_yaml_cannot_build_are_problems() -> None:
    text = MINIMAL + "holidays: {extra: [2030-02-30]}\ndescription: " + "9" * 5000 + "\n"
    assert [p.message for p in load(text).problems] == [
        "expected a real date such as 2025-12-24, got 2030-02-30",
        "expected a number of reasonable size, got one of 5000 characters",
    ]


def test_tags_are_refused() -> None:
    result = load(MINIMAL + "description: !!python/object:os.system x\n")
    assert [p.message for p in result.problems] == [
        "expected a plain value, got the tag !!python/object:os.system"
    ]


def test_infinite_numbers_are_refused() -> None:
    result = load(MINIMAL + "cadence: {reference_deal_value: .inf}\n")
    assert [p.message for p in result.problems] == ["expected a finite number, got .inf"]


def test_a_zone_database_directory_is_not_a_time_zone() -> None:
    result = load(MINIMAL + "timezone: Europe\n")
    assert [p.message for p in result.problems] == [
        "expected an IANA time zone such as \"Europe/Paris\", got 'Europe'"
    ]


def test_a_file_that_is_not_utf8_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_bytes(MINIMAL.replace("Demo", "Relanc\xe9").encode("latin-1"))
    assert load_sequence_file(path).problems == [
        Problem(
            str(path),
            2,
            13,
            "(file)",
            "expected UTF-8 text, got the byte 0xe9",
            "save the file as UTF-8 in your editor",
        )
    ]


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode("utf-8"))
    assert load_sequence_file(path).ok


def test_an_unreadable_path_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "demo.yaml").mkdir()
    result = load_sequence_file(tmp_path / "demo.yaml")
    assert result.sequence is None
    assert result.problems[0].message.startswith("cannot read the file: ")


def test_an_invisible_character_is_located() -> None:
    result = load(MINIMAL.replace("Catch attention", "Catch\x07attention"))
    assert messages(result)[0][:4] == (
        7,
        21,
        "(syntax)",
        "invalid YAML: the character U+0007 is not allowed",
    )


def test_a_file_name_that_cannot_be_an_id_is_a_problem() -> None:
    result = load_sequence_text(MINIMAL, file="My Demo.yaml", stem="My Demo")
    assert [p.message for p in result.problems] == [
        "expected a file name of lowercase letters, digits, '-' or '_', got 'My Demo.yaml'"
    ]


# --- no input makes the loader raise ---------------------------------------------------


def check_never_raises(text: str) -> None:
    result = load(text)
    assert result.sequence is not None or result.problems
    for problem in result.problems:
        assert problem.line >= 1 and problem.column >= 1
        assert problem.message
        assert problem.format()


@given(st.text())
def test_any_text_loads_without_raising(text: str) -> None:
    check_never_raises(text)


yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["call", "email", "0d", "2 business days", "09:00", "NO", "fr", "*x"]),
)
yaml_keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["id", "name", "steps", "channel", "wait", "templates", "send_window"]),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(yaml_keys, children, max_size=5)
    ),
    max_leaves=30,
)


@given(yaml_values)
def test_any_yaml_structure_loads_without_raising(value: Any) -> None:
    check_never_raises(yaml.safe_dump(value))


VALID: dict[str, Any] = yaml.safe_load(MINIMAL)


@st.composite
def mutated_sequences(draw: st.DrawFn) -> dict[str, Any]:
    """The valid sequence with a few values replaced, removed or added at random places."""
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        target: Any = data
        while True:
            keys = list(target) if isinstance(target, dict) else list(range(len(target)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            if not isinstance(target[key], dict | list) or draw(st.booleans()):
                break
            target = target[key]
        if not keys:
            continue
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            target[key] = draw(yaml_values)
        elif action == "remove":
            del target[key]
        elif isinstance(target, dict):
            target[draw(yaml_keys)] = draw(yaml_values)
        else:
            target.append(draw(yaml_values))
    return data


@given(mutated_sequences())
def test_mutated_sequences_load_without_raising(data: dict[str, Any]) -> None:
    check_never_raises(yaml.safe_dump(data, sort_keys=False))


@given(st.data())
def test_edited_text_loads_without_raising(data: st.DataObject) -> None:
    text = MINIMAL
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        edit = data.draw(st.sampled_from(["delete", "insert", "duplicate line"]))
        if edit == "delete":
            text = text[:at] + text[at + 1 :]
        elif edit == "insert":
            text = (
                text[:at] + data.draw(st.sampled_from(list(":-[]{}&*!|>'\"#\t \n%@`"))) + text[at:]
            )
        else:
            lines = text.splitlines(keepends=True)
            index = data.draw(st.integers(0, len(lines) - 1))
            text = "".join([*lines[: index + 1], lines[index], *lines[index + 1 :]])
    check_never_raises(text)
