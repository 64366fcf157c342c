"""What a template refers to, found by walking its Jinja2 syntax tree.

``TemplateUsage.scan`` follows includes, imports and extends whose names are known
without rendering (string constants, lists of them, and ``"..." ~ locale ~ "..."``), and
records the context names, ``prospect`` fields and attributes used anywhere, including
inside branches that a given render would skip. Missing files and syntax errors are
recorded as issues instead of raised, so that one pass reports all of them, and so are
the constructs the sandbox refuses (``unsafe_issues``): attributes starting with ``_``
(``lipsum.__globals__``), Jinja's default globals (``range``, ``lipsum``, ``cycler``...),
and files that resolve outside the templates directory.
"""

from __future__ import annotations

import difflib

import jinja2
from jinja2 import meta, nodes

Issue = tuple[str, str | None]
"""A message and its hint, before it is located in the sequence file."""

JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace"})
"""Jinja's default globals: the sandboxed environment templates render in has none."""

UNSAFE_HINT = (
    "templates run in a sandbox: they see the render context (prospect, sender, sequence, "
    "step, resource, meeting, unsubscribe_url, locale), filters, and no internals"
)


class OutsideTemplatesError(jinja2.TemplateNotFound):
    """A template file that resolves outside the templates directory (a link elsewhere)."""


def outside_message(name: str) -> str:
    return f"template templates/{name} resolves outside the templates directory: refused"


class TemplateUsage:
    """What a template and everything it includes, imports or extends refer to.

    ``fields`` maps each ``prospect`` field used to the first template using it;
    ``names`` does the same for top-level (context) names, and ``undeclared`` keeps those
    that no scanned template defines at its top level (a child template's
    ``{% from ... import button %}`` is seen by its blocks through the context);
    ``attributes`` lists the attributes used on each top-level name; ``issues`` holds
    missing files and syntax errors.
    """

    def __init__(self, env: jinja2.Environment, locale: str) -> None:
        self.env = env
        self.locale = locale
        self.issues: list[Issue] = []
        self.fields: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.attributes: dict[str, set[str]] = {}
        self.defined: set[str] = set()
        self.scanned: set[str] = set()
        """Every template name visited, found or not."""
        self.unguarded: dict[str, str] = {}
        """``prospect`` fields used outside an ``{% if %}`` (or ``| default``) testing them,
        with the first template doing so."""
        self._existing: list[str] | None = None

    @property
    def existing(self) -> list[str]:
        """Every template file the environment can load."""
        if self._existing is None:
            self._existing = self.env.list_templates()
        return self._existing

    def scan(self, name: str, used_by: str | None = None) -> None:
        """Record what ``name`` (and whatever it pulls in) refers to."""
        if name in self.scanned:
            return
        self.scanned.add(name)
        tree = self._parse(name, used_by)
        if tree is None:
            return
        for variable in sorted(meta.find_undeclared_variables(tree)):
            self.names.setdefault(variable, name)
        self.defined |= _top_level_definitions(tree)
        self.issues.extend(unsafe_issues(tree, name))
        for node in tree.find_all(nodes.Getattr):
            self._record(node.node, node.attr, name)
        for item in tree.find_all(nodes.Getitem):
            if isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str):
                self._record(item.node, item.arg.value, name)
        for call in tree.find_all(nodes.Call):
            self._record_get(call, name)
        for field in _unguarded_fields(tree, frozenset()):
            self.unguarded.setdefault(field, name)
        for statement in tree.find_all(
            (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
        ):
            self._follow(statement, name)

    @property
    def undeclared(self) -> dict[str, str]:
        """Top-level names used but defined by none of the scanned templates."""
        return {var: name for var, name in self.names.items() if var not in self.defined}

    def field_issues(self, known: set[str]) -> list[Issue]:
        """A prospect field used by a template but in none of ``known``."""
        issues: list[Issue] = []
        for field, name in self.fields.items():
            if field in known:
                continue
            close = difflib.get_close_matches(field, sorted(known), n=1)
            suggestion = f" (did you mean {close[0]}?)" if close else ""
            issues.append(
                (
                    f"template templates/{name} uses prospect.{field}, "
                    "which no prospect field provides",
                    f"declare it under prospect_fields: [{field}] so that imports must provide "
                    f"it, or fix the name{suggestion}",
                )
            )
        return issues

    def name_issues(
        self, allowed: set[str], context_names: frozenset[str], channel: str
    ) -> list[Issue]:
        """A top-level name that is neither ``allowed`` nor defined by a template."""
        issues: list[Issue] = []
        for variable, name in self.undeclared.items():
            if variable in allowed or variable in JINJA_GLOBALS:
                continue  # Jinja's globals: reported with their line by unsafe_issues
            if variable == "meeting":
                issues.append(
                    (
                        f"template templates/{name} uses meeting, which only "
                        "meeting_confirmation steps have",
                        f"this is a {channel} step: remove the meeting details, "
                        "or move them to the meeting_confirmation step",
                    )
                )
                continue
            close = difflib.get_close_matches(variable, sorted(allowed), n=1)
            known = ", ".join(sorted(context_names))
            issues.append(
                (
                    f"template templates/{name} uses {variable}, "
                    "which is not in the render context",
                    (f"did you mean {close[0]}? " if close else "") + f"templates can use {known}",
                )
            )
        return issues

    def _parse(self, name: str, used_by: str | None) -> nodes.Template | None:
        loader = self.env.loader
        try:
            if loader is None:
                raise jinja2.TemplateNotFound(name)
            source, _, _ = loader.get_source(self.env, name)
        except OutsideTemplatesError:
            self.issues.append((outside_message(name), "copy the file into templates/"))
            return None
        except jinja2.TemplateNotFound:
            message = f"expected a template file at templates/{name}, got none"
            if used_by:
                message += f" (used by templates/{used_by})"
            self.issues.append((message, self._close_names_hint(name)))
            return None
        try:
            return self.env.parse(source, name)
        except jinja2.TemplateSyntaxError as error:
            self.issues.append(
                (f"template templates/{name} line {error.lineno}: {error.message}", None)
            )
            return None

    def _record(self, target: nodes.Node, attribute: str, name: str) -> None:
        if not isinstance(target, nodes.Name) or target.ctx != "load":
            return
        self.attributes.setdefault(target.name, set()).add(attribute)
        if target.name == "prospect" and attribute != "get":
            self.fields.setdefault(attribute, name)

    def _record_get(self, call: nodes.Call, name: str) -> None:
        """prospect.get("field", default) uses ``field`` too."""
        target = call.node
        if (
            isinstance(target, nodes.Getattr)
            and target.attr == "get"
            and isinstance(target.node, nodes.Name)
            and target.node.name == "prospect"
            and call.args
            and isinstance(call.args[0], nodes.Const)
            and isinstance(call.args[0].value, str)
        ):
            self.fields.setdefault(call.args[0].value, name)

    def _follow(self, statement: nodes.Node, name: str) -> None:
        children = _constant_names(statement.template, self.locale)  # type: ignore[attr-defined]
        if not children:
            return  # computed at render time: the render check covers it
        ignore_missing = isinstance(statement, nodes.Include) and statement.ignore_missing
        present = [child for child in children if child in self.existing]
        if not present and ignore_missing:
            return
        # Given several names, Jinja takes the first that exists.
        self.scan(present[0] if present else children[0], used_by=name)

    def _close_names_hint(self, name: str) -> str | None:
        close = difflib.get_close_matches(name, self.existing, n=3, cutoff=0.6)
        if not close:
            return None
        names = [f"templates/{candidate}" for candidate in close]
        listed = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        return f"did you mean {listed}?"


def unsafe_issues(tree: nodes.Template, name: str) -> list[Issue]:
    """What the sandbox refuses, with its line: attributes (``x.__class__``,
    ``x["_private"]``, ``x|attr("__init__")``) starting with ``_``, and Jinja's globals."""
    found: list[tuple[int, str]] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Name)):
        attribute: object = None
        if isinstance(node, nodes.Getattr):
            attribute = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            attribute = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            first = node.args[0]
            attribute = first.value if isinstance(first, nodes.Const) else None
        elif isinstance(node, nodes.Name) and node.ctx == "load" and node.name in JINJA_GLOBALS:
            found.append((node.lineno, f"{node.name} is one of Jinja's globals, not available"))
        if isinstance(attribute, str) and attribute.startswith("_"):
            found.append((node.lineno, f"unsafe attribute {attribute}: refused by the sandbox"))
    return [
        (f"template templates/{name} line {line}: {message}", UNSAFE_HINT)
        for line, message in sorted(set(found))
    ]


def _prospect_field(node: nodes.Node) -> str | None:
    if (
        isinstance(node, nodes.Getattr)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "prospect"
    ):
        return node.attr
    return None


def _tested(node: nodes.Node) -> frozenset[str]:
    """The prospect fields an ``if`` test reads: its branch may use them safely."""
    items = [node, *node.find_all(nodes.Getattr)]
    return frozenset(field for item in items if (field := _prospect_field(item)))


def _unguarded_fields(node: nodes.Node, guarded: frozenset[str]) -> set[str]:
    """Prospect fields used where no enclosing test reads them (nor ``| default``)."""
    if isinstance(node, nodes.If | nodes.CondExpr):
        tested = guarded | _tested(node.test)
        found = _unguarded_fields(node.test, tested)
        body: list[nodes.Node] = node.body if isinstance(node, nodes.If) else [node.expr1]
        rest: list[nodes.Node | None] = (
            [*node.elif_, *node.else_] if isinstance(node, nodes.If) else [node.expr2]
        )
        for inside in body:
            found |= _unguarded_fields(inside, tested)
        for other in rest:
            if other is not None:
                found |= _unguarded_fields(other, guarded)
        return found
    if isinstance(node, nodes.Filter) and node.name in ("default", "d"):
        return set()
    field = _prospect_field(node)
    if field is not None:
        return set() if field in guarded else {field}
    found = set()
    for child in node.iter_child_nodes():
        found |= _unguarded_fields(child, guarded)
    return found


def _top_level_definitions(tree: nodes.Template) -> set[str]:
    """Names a template's top level defines: imports, macros and assignments."""
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, nodes.Import):
            defined.add(node.target)
        elif isinstance(node, nodes.FromImport):
            defined.update(item if isinstance(item, str) else item[1] for item in node.names)
        elif isinstance(node, nodes.Macro):
            defined.add(node.name)
        elif isinstance(node, nodes.Assign | nodes.AssignBlock):
            defined.update(target.name for target in node.target.find_all(nodes.Name))
            if isinstance(node.target, nodes.Name):
                defined.add(node.target.name)
    return defined


def _constant_names(node: nodes.Node, locale: str) -> list[str] | None:
    """The template names an include expression gives, when known without rendering."""
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, nodes.Name) and node.name == "locale":
        return [locale]
    if isinstance(node, nodes.Tuple | nodes.List):
        names: list[str] = []
        for item in node.items:
            item_names = _constant_names(item, locale)
            if item_names is None:
                return None
            names.extend(item_names)
        return names
    if isinstance(node, nodes.Concat):
        parts = node.nodes
    elif isinstance(node, nodes.Add):
        parts = [node.left, node.right]
    else:
        return None
    text = ""
    for part in parts:
        part_names = _constant_names(part, locale)
        if part_names is None or len(part_names) != 1:
            return None
        text += part_names[0]
    return [text]
