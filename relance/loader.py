"""Reading sequence files: YAML text in, a validated ``Sequence`` or located problems out.

The YAML is composed into nodes (PyYAML's ``compose`` with the safe loader) and turned into
plain data by hand, so that every value keeps the line and column it came from (a
``SourceMap``) and a key written twice is an error instead of silently keeping the last.
The data is then validated by the pydantic models of ``relance.spec`` and each pydantic
error becomes a ``Problem`` worded for the person who wrote the file (``relance.wording``);
YAML that does not parse is explained by ``relance.syntax``.

Nothing here raises on bad input: a file that cannot be read, decoded, parsed or validated
gives problems, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from relance.diagnostics import Loc, Problem, format_loc
from relance.spec import SEQUENCE_ID_PATTERN, Sequence
from relance.syntax import character_problem, encoding_problem, syntax_problem
from relance.wording import explain_validation_error

MAX_VALUES = 20_000
"""Most values a document may hold once aliases are expanded (a real sequence has hundreds)."""

MAX_DEPTH = 40
"""Deepest nesting of lists and mappings (a real sequence nests four levels)."""

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{name}" for name in ("null", "bool", "int", "float", "str", "timestamp")}


@dataclass(frozen=True)
class Position:
    """A place in a file; line and column start at 1."""

    line: int
    column: int


@dataclass(frozen=True)
class SourceMap:
    """Where each path of a document was written: the value, and the key that names it."""

    values: dict[Loc, Position] = field(default_factory=dict)
    keys: dict[Loc, Position] = field(default_factory=dict)
    plain: dict[Loc, str] = field(default_factory=dict)
    """The text of unquoted scalars, to show ``NO`` rather than ``False``."""

    def locate(self, loc: Loc) -> Position:
        """The value at ``loc``, or its nearest written parent, or the start of the file."""
        for end in range(len(loc), -1, -1):
            position = self.values.get(loc[:end])
            if position is not None:
                return position
        return Position(1, 1)

    def locate_key(self, loc: Loc) -> Position:
        """The key naming ``loc`` (for an unknown or duplicate key), else ``locate(loc)``."""
        return self.keys.get(loc) or self.locate(loc)


@dataclass(frozen=True)
class LoadResult:
    """The outcome of loading one file.

    ``sequence`` is set whenever the document validates against the models, even if other
    problems were found (a duplicate key, an id that is not the file name), so that the
    templates can still be checked in the same pass. Use the sequence only when
    ``problems`` is empty too, as ``ok`` says.
    """

    sequence: Sequence | None
    problems: list[Problem]
    source_map: SourceMap = field(default_factory=SourceMap)

    @property
    def ok(self) -> bool:
        return self.sequence is not None and not self.problems


def load_sequence_file(path: Path) -> LoadResult:
    """Load ``path``; its name without the extension must be the sequence id."""
    text = read_yaml_text(path)
    if isinstance(text, Problem):
        return LoadResult(None, [text])
    return load_sequence_text(text, file=str(path), stem=path.stem)


def read_yaml_text(path: Path) -> str | Problem:
    """The text of a YAML file (UTF-8, byte-order mark dropped), or why it cannot be read."""
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        reason = error.strerror or str(error)
        return Problem(file, 1, 1, "(file)", f"cannot read the file: {reason}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return encoding_problem(file, raw, error)
    return text.removeprefix("\ufeff")


SEQUENCE_KEYS = "id, name and steps"


def load_sequence_text(text: str, file: str, stem: str) -> LoadResult:
    """Load a sequence from ``text``; ``file`` names it in problems, ``stem`` is its id."""
    document = read_mapping(text, file, SEQUENCE_KEYS, "start from an existing file in sequences/")
    problems, source_map, data = document.problems, document.source_map, document.data
    if data is None:
        return LoadResult(None, problems, source_map)

    explained = document.explained
    problems += _check_file_name(data, file, stem, source_map, explained)
    step_id_problems = _check_step_ids(data, file, source_map)
    problems += step_id_problems
    sequence: Sequence | None = None
    try:
        sequence = Sequence.model_validate(data)
    except ValidationError as error:
        for problem in explain_validation_error(error, file, source_map, explained):
            if step_id_problems and problem.message.startswith(
                ("duplicate step id", "duplicate variant id")
            ):
                continue
            problems.append(problem)
    return LoadResult(sequence, _sorted(problems), source_map)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file, p.line, p.column, p.path, p.message))


# --- any YAML document validated by a model ---------------------------------------------


@dataclass(frozen=True)
class YamlDocument:
    """A YAML document read as a top-level mapping, with where each value was written.

    ``data`` is None when the document is not a mapping at all (the problems say why).
    """

    data: dict[str, Any] | None
    problems: list[Problem]
    source_map: SourceMap
    explained: set[Loc] = field(default_factory=set)
    """Paths already reported, whose validation errors would only repeat the problem."""


def read_mapping(text: str, file: str, keys: str, empty_hint: str) -> YamlDocument:
    """Parse ``text`` into plain data with positions; ``keys`` and ``empty_hint`` word the
    problem of an empty file or of a top level that is not a mapping."""
    builder = _Builder(file)
    try:
        data = builder.build_document(text)
    except _Abort as abort:
        return YamlDocument(None, [abort.problem], SourceMap())
    source_map = SourceMap(builder.values, builder.keys, builder.plain)
    problems = builder.problems
    expected = f"expected a mapping with keys such as {keys}"
    if data is _EMPTY:
        problems.append(
            Problem(file, 1, 1, "(top)", f"{expected}, got an empty file", hint=empty_hint)
        )
        return YamlDocument(None, _sorted(problems), source_map)
    if not isinstance(data, dict):
        top = source_map.locate(())
        got = _describe_top(data)
        problems.append(Problem(file, top.line, top.column, "(top)", f"{expected}, got {got}"))
        return YamlDocument(None, _sorted(problems), source_map)
    return YamlDocument(data, problems, source_map, set(builder.explained))


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ModelLoad(Generic[M]):
    """The outcome of loading a YAML document into a model: like ``LoadResult``,
    ``value`` is set whenever the data validates; use it only when ``ok``."""

    value: M | None
    problems: list[Problem]
    source_map: SourceMap = field(default_factory=SourceMap)

    @property
    def ok(self) -> bool:
        return self.value is not None and not self.problems


def load_model_text(
    text: str, file: str, model: type[M], *, keys: str, empty_hint: str
) -> ModelLoad[M]:
    """Load YAML ``text`` into ``model`` with the problems a sequence file gets: located
    ``file:line:col``, duplicate keys, unknown keys with a "did you mean", plain wording.
    ``keys`` names a few top-level keys for the message about an empty or odd document."""
    document = read_mapping(text, file, keys, empty_hint)
    if document.data is None:
        return ModelLoad(None, document.problems, document.source_map)
    problems = list(document.problems)
    value: M | None = None
    try:
        value = model.model_validate(document.data)
    except ValidationError as error:
        explained = document.explained
        problems += explain_validation_error(error, file, document.source_map, explained, model)
    return ModelLoad(value, _sorted(problems), document.source_map)


def load_model_file(path: Path, model: type[M], *, keys: str, empty_hint: str) -> ModelLoad[M]:
    """``load_model_text`` on a file; a file that cannot be read or decoded is a problem."""
    text = read_yaml_text(path)
    if isinstance(text, Problem):
        return ModelLoad(None, [text])
    return load_model_text(text, str(path), model, keys=keys, empty_hint=empty_hint)


# --- checks that need the positions of several values ---------------------------------


def _check_file_name(
    data: dict[str, Any], file: str, stem: str, source_map: SourceMap, explained: set[Loc]
) -> list[Problem]:
    extension = Path(file).suffix or ".yaml"
    if not re.fullmatch(SEQUENCE_ID_PATTERN, stem):
        return [
            Problem(
                file,
                1,
                1,
                "(file)",
                "expected a file name of lowercase letters, digits, '-' or '_', "
                f"got {stem + extension!r}",
                hint="the file name is the sequence id: rename the file",
            )
        ]
    sequence_id = data.get("id")
    if not isinstance(sequence_id, str) or sequence_id == stem:
        return []
    explained.add(("id",))
    at = source_map.locate(("id",))
    return [
        Problem(
            file,
            at.line,
            at.column,
            "id",
            f"expected {stem!r} (the file name without {extension}), got {sequence_id!r}",
            hint=f"write id: {stem}, or rename the file",
        )
    ]


def _check_step_ids(data: dict[str, Any], file: str, source_map: SourceMap) -> list[Problem]:
    """Duplicate step ids, and duplicate variant ids within a step, each at the duplicate."""
    steps = data.get("steps")
    if not isinstance(steps, list):
        return []
    problems = _duplicate_ids(
        steps,
        ("steps",),
        "step",
        "every step needs its own id: reports and the Prefect UI name steps by id",
        file,
        source_map,
    )
    for index, step in enumerate(steps):
        variants = step.get("variants") if isinstance(step, dict) else None
        if isinstance(variants, list):
            problems += _duplicate_ids(
                variants,
                ("steps", index, "variants"),
                "variant",
                "every variant needs its own id: touches and reports name variants by id",
                file,
                source_map,
            )
    return problems


def _duplicate_ids(
    items: list[Any], at: Loc, what: str, hint: str, file: str, source_map: SourceMap
) -> list[Problem]:
    first_line: dict[str, int] = {}
    problems = []
    for index, item in enumerate(items):
        item_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(item_id, str):
            continue
        loc: Loc = (*at, index, "id")
        position = source_map.locate(loc)
        if item_id in first_line:
            problems.append(
                Problem(
                    file,
                    position.line,
                    position.column,
                    format_loc(loc),
                    f"duplicate {what} id {item_id!r} (first at line {first_line[item_id]})",
                    hint=hint,
                )
            )
        else:
            first_line[item_id] = position.line
    return problems


def _describe_top(data: Any) -> str:
    if data is None:
        return "an empty value"
    if isinstance(data, list):
        return "a list"
    text = repr(data)
    return text if len(text) <= 40 else text[:37] + "..."


# --- from text to data, with positions -------------------------------------------------


class _Abort(Exception):
    """The document cannot be turned into data at all; carries the one problem to report."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(problem.message)


_EMPTY = object()


class _Builder:
    """Turns composed YAML nodes into plain data while recording where each value was."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.values: dict[Loc, Position] = {}
        self.keys: dict[Loc, Position] = {}
        self.plain: dict[Loc, str] = {}
        self.problems: list[Problem] = []
        self.explained: set[Loc] = set()
        """Paths already reported here, whose pydantic errors would only repeat it."""
        self.count = 0
        self.open_nodes: set[int] = set()
        self.loader: yaml.SafeLoader | None = None

    def build_document(self, text: str) -> Any:
        try:
            self.loader = yaml.SafeLoader(text)  # checks the characters first
            node = self.loader.get_single_node()
        except yaml.MarkedYAMLError as error:
            raise _Abort(syntax_problem(self.file, text, error)) from None
        except yaml.reader.ReaderError as error:
            raise _Abort(character_problem(self.file, text, error)) from None
        except yaml.YAMLError as error:
            raise _Abort(Problem(self.file, 1, 1, "(syntax)", f"invalid YAML: {error}")) from None
        except RecursionError:
            raise _Abort(self._too_deep(None)) from None
        if node is None:
            return _EMPTY
        return self.build(node, (), 0)

    def build(self, node: Node, loc: Loc, depth: int) -> Any:
        self._count_value()
        if depth > MAX_DEPTH:
            raise _Abort(self._too_deep(node))
        self.values[loc] = _position(node)
        if id(node) in self.open_nodes:
            self._report(node, loc, "expected a value, got an alias (*name) inside its own anchor")
            return None
        if isinstance(node, ScalarNode):
            return self._build_scalar(node, loc)
        if node.tag not in (f"{_TAG}map", f"{_TAG}seq"):
            self._report(node, loc, f"expected a plain list or mapping, got the tag {_tag(node)}")
            return None
        self.open_nodes.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(item, (*loc, i), depth + 1) for i, item in enumerate(node.value)]
            assert isinstance(node, MappingNode)
            return {
                key: self.build(value, (*loc, key), depth + 1)
                for key, value in self._mapping_entries(node, loc)
            }
        finally:
            self.open_nodes.discard(id(node))

    def _count_value(self) -> None:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _Abort(
                Problem(
                    self.file,
                    1,
                    1,
                    "(top)",
                    f"expected at most {MAX_VALUES} values, got more once aliases are expanded",
                    hint="use fewer anchors (&name) and aliases (*name)",
                )
            )

    def _build_scalar(self, node: ScalarNode, loc: Loc) -> Any:
        if node.tag == f"{_TAG}merge":  # "<<" used as a value, not as a merge key
            return node.value
        if node.tag not in _SCALAR_TAGS:
            self._report(node, loc, f"expected a plain value, got the tag {_tag(node)}")
            return None
        if node.style is None:
            self.plain[loc] = node.value
        assert self.loader is not None
        try:
            return self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, ArithmeticError):
            self._report(node, loc, _unreadable(node))
            return None

    def _mapping_entries(self, node: MappingNode, loc: Loc) -> Iterator[tuple[str, Node]]:
        """The entries in written order, then those merged in with ``<<``; keys must be unique."""
        entries: dict[str, tuple[Node, Node]] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == f"{_TAG}merge":
                merges.append(value_node)
            elif not isinstance(key_node, ScalarNode):
                message = "expected a key made of plain text, got a list or mapping"
                self.problems.append(self._problem(key_node, loc, message))
            elif key_node.value in entries:
                first = entries[key_node.value][0].start_mark.line + 1
                child = (*loc, key_node.value)
                self.problems.append(
                    self._problem(
                        key_node,
                        child,
                        f"duplicate key {key_node.value!r} (first at line {first})",
                        hint="remove one: other YAML tools would silently keep only the last",
                    )
                )
            else:
                entries[key_node.value] = (key_node, value_node)
        for source in self._merge_sources(merges, loc):
            for key_node, value_node in source.value:
                self._count_value()
                if isinstance(key_node, ScalarNode) and key_node.tag != f"{_TAG}merge":
                    entries.setdefault(key_node.value, (key_node, value_node))
        for key, (key_node, value_node) in entries.items():
            self.keys[(*loc, key)] = _position(key_node)
            yield key, value_node

    def _merge_sources(self, merges: list[Node], loc: Loc) -> list[MappingNode]:
        sources: list[MappingNode] = []
        for merge in merges:
            items = merge.value if isinstance(merge, SequenceNode) else [merge]
            for item in items:
                if isinstance(item, MappingNode):
                    sources.append(item)
                else:
                    message = "expected a mapping or a list of mappings after '<<'"
                    self.problems.append(self._problem(item, loc, message))
        return sources

    def _report(self, node: Node, loc: Loc, message: str, hint: str | None = None) -> None:
        self.problems.append(self._problem(node, loc, message, hint))
        self.explained.add(loc)

    def _problem(self, node: Node, loc: Loc, message: str, hint: str | None = None) -> Problem:
        at = _position(node)
        return Problem(self.file, at.line, at.column, format_loc(loc), message, hint)

    def _too_deep(self, node: Node | None) -> Problem:
        at = _position(node) if node is not None else Position(1, 1)
        return Problem(
            self.file,
            at.line,
            at.column,
            "(top)",
            f"expected lists and mappings nested at most {MAX_DEPTH} deep, got deeper",
        )


def _position(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _tag(node: Node) -> str:
    tag = str(node.tag)
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _unreadable(node: ScalarNode) -> str:
    text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
    if node.tag == f"{_TAG}timestamp":
        return f"expected a real date such as 2025-12-24, got {text}"
    if node.tag == f"{_TAG}int":
        return f"expected a number of reasonable size, got one of {len(node.value)} characters"
    return f"expected a readable value, got {text}"
