"""A real HTTP server on 127.0.0.1 that plays SendGrid's Mail Send endpoint for tests.

Every request body is validated against the official OpenAPI description of the v3 Mail
Send API (`../shared/sendgrid/tsg_mail_v3.json` beside the repository, or the file named
by RELANCE_SENDGRID_SCHEMA), plus the few rules that its descriptions state in words. If
the schema cannot be found, the fake refuses to start: it never runs without validation.

    with FakeSendGrid() as sendgrid:
        sender = SendGridSender(api_key=sendgrid.api_key, host=sendgrid.url)
        sender.send(message)
        assert sendgrid.requests[0]["subject"] == "Hello"

Only `POST /v3/mail/send` exists (404 otherwise). Answers: 401 without
`Authorization: Bearer <api_key>`; 400 in SendGrid's error shape for a body that is not
JSON or not valid (recorded in `.rejected` with the reason); else the next scripted failure
if any (`fail_next`); else 202 with an `X-Message-Id` header (the body is kept in
`.requests`, its id at the same index in `.message_ids`). `delay` seconds are waited before
every answer; `.max_in_flight` is the most requests it was answering at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from jsonschema import Draft202012Validator

SCHEMA_ENV = "RELANCE_SENDGRID_SCHEMA"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCHEMA_PATH = REPO_ROOT.parent / "shared" / "sendgrid" / "tsg_mail_v3.json"
MAIL_SEND_PATH = "/v3/mail/send"

# Headers that SendGrid does not let `headers` override (from the schema's description).
RESERVED_HEADERS = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)


class SchemaNotFoundError(RuntimeError):
    """The official Mail Send schema is not where the fake looks for it."""


@dataclass(frozen=True)
class Failure:
    """A scripted answer: `status` with SendGrid's error body and optional Retry-After."""

    status: int
    message: str = "scripted failure"
    field: str | None = None
    retry_after: float | None = None


def schema_path() -> Path:
    """The schema file: RELANCE_SENDGRID_SCHEMA if set, else ../shared/sendgrid/ beside the repo."""
    override = os.environ.get(SCHEMA_ENV)
    path = Path(override) if override else DEFAULT_SCHEMA_PATH
    if not path.is_file():
        raise SchemaNotFoundError(
            f"the SendGrid Mail Send schema is not at {path}; "
            f"set {SCHEMA_ENV} to the path of tsg_mail_v3.json"
        )
    return path


@cache
def mail_send_validator(path: Path) -> Draft202012Validator:
    """A validator for the requestBody of `POST /v3/mail/send` in the OpenAPI file at `path`.

    OpenAPI 3.1 schemas are JSON Schema 2020-12. Their `$ref`s are inlined once here: the
    validator then never resolves a reference per request, which halves its cost.
    """
    document = json.loads(path.read_text(encoding="utf-8"))
    try:
        request_body = document["paths"][MAIL_SEND_PATH]["post"]["requestBody"]
        while "$ref" in request_body:  # OpenAPI may reference a requestBody, not a schema
            request_body = _resolve_pointer(document, request_body["$ref"])
        schema = request_body["content"]["application/json"]["schema"]
    except (KeyError, TypeError) as error:
        raise SchemaNotFoundError(
            f"{path} has no JSON requestBody schema for POST {MAIL_SEND_PATH}: {error!r}"
        ) from error
    inlined = _inline_refs(schema, document, ())
    Draft202012Validator.check_schema(inlined)
    return Draft202012Validator(inlined, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _inline_refs(node: Any, document: Any, followed: tuple[str, ...]) -> Any:
    """`node` with every local `$ref` replaced by what it points to (siblings kept, via allOf)."""
    if isinstance(node, list):
        return [_inline_refs(item, document, followed) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" not in node:
        return {key: _inline_refs(value, document, followed) for key, value in node.items()}
    reference = node["$ref"]
    if reference in followed:
        raise SchemaNotFoundError(f"recursive $ref {reference} cannot be inlined")
    target = _inline_refs(_resolve_pointer(document, reference), document, (*followed, reference))
    siblings = {
        key: _inline_refs(value, document, followed) for key, value in node.items() if key != "$ref"
    }
    return {**siblings, "allOf": [target]} if siblings else target


def _resolve_pointer(document: Any, reference: str) -> Any:
    if not reference.startswith("#/"):
        raise SchemaNotFoundError(f"only local references are supported, got {reference}")
    node = document
    for token in reference[2:].split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def problems_in(body: Any, validator: Draft202012Validator) -> list[tuple[str | None, str]]:
    """(field, message) for everything wrong with a Mail Send body; empty when it is valid."""
    found = [
        (".".join(str(part) for part in error.absolute_path) or None, error.message)
        for error in sorted(validator.iter_errors(body), key=lambda error: error.json_path)
    ]
    if found or not isinstance(body, dict):
        return found
    return _rules_in_words(body)


def _rules_in_words(body: dict[str, Any]) -> list[tuple[str | None, str]]:
    """Rules that the schema states in its descriptions rather than in keywords."""
    found: list[tuple[str | None, str]] = []
    personalizations = body["personalizations"]
    if not personalizations:
        found.append(("personalizations", "at least one personalization is required"))
    for index, personalization in enumerate(personalizations):
        if not personalization["to"]:
            found.append((f"personalizations.{index}.to", "at least one recipient is required"))
        if "subject" not in body and "subject" not in personalization and "template_id" not in body:
            found.append(("subject", "the subject is required"))
        found += _header_problems(personalization.get("headers", {}), f"personalizations.{index}")
        for key, value in personalization.get("custom_args", {}).items():
            if not isinstance(value, str):
                found.append(
                    (f"personalizations.{index}.custom_args.{key}", "values must be strings")
                )
    found += _header_problems(body.get("headers", {}), None)
    content = body.get("content", [])
    if not content and "template_id" not in body:
        found.append(("content", "content is required unless a template_id is given"))
    types = [part["type"] for part in content]
    if "text/plain" in types and types[0] != "text/plain":
        found.append(("content", "text/plain must be the first content type"))
    for index, attachment in enumerate(body.get("attachments", [])):
        if attachment.get("disposition") == "inline" and not attachment.get("content_id"):
            found.append((f"attachments.{index}.content_id", "inline attachments need one"))
    return found


def _header_problems(headers: dict[str, Any], prefix: str | None) -> list[tuple[str | None, str]]:
    where = f"{prefix}.headers" if prefix else "headers"
    found: list[tuple[str | None, str]] = []
    for name, value in headers.items():
        if name.lower() in RESERVED_HEADERS:
            found.append((f"{where}.{name}", f"the header {name} may not be overridden"))
        if not isinstance(value, str):
            found.append((f"{where}.{name}", "header values must be strings"))
    return found


def error_body(problems: list[tuple[str | None, str]]) -> bytes:
    """SendGrid's error shape: {"errors": [{"message", "field", "help"}]}."""
    errors = [{"message": message, "field": field, "help": None} for field, message in problems]
    return json.dumps({"errors": errors}).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many concurrent clients connect at once
    fake: FakeSendGrid

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that gave up waiting (its timeout) is not the fake's error
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the fake records what matters

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        with fake.in_flight():
            status, headers, body = fake.answer(self.path, self.headers.get("Authorization"), raw)
            if fake.delay:
                time.sleep(fake.delay)
        self._respond(status, headers, body)

    def do_GET(self) -> None:
        self._respond(404, {}, error_body([(None, "not found")]))

    do_PUT = do_PATCH = do_DELETE = do_GET

    def _respond(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


class FakeSendGrid:
    """SendGrid's `POST /v3/mail/send`, served on a random port of 127.0.0.1."""

    def __init__(self, *, api_key: str = "SG.fake-key", delay: float = 0.0) -> None:
        self.api_key = api_key
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.message_ids: list[str] = []  # X-Message-Id of requests[i]
        self.rejected: list[tuple[Any, str]] = []
        self.max_in_flight = 0  # most requests being answered at once
        self._in_flight = 0
        self._validator = mail_send_validator(schema_path())
        self._failures: deque[Failure] = deque()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give a client as its host, e.g. http://127.0.0.1:54321."""
        if self._server is None:
            raise RuntimeError("the fake SendGrid is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeSendGrid:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        message: str = "scripted failure",
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next `count` valid requests with `status` instead of 202."""
        with self._lock:
            self._failures.extend([Failure(status, message, field, retry_after)] * count)

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count a request as being answered while the block runs."""
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def answer(
        self, path: str, authorization: str | None, raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Decide the status, headers and body for one request."""
        if path.split("?")[0] != MAIL_SEND_PATH:
            return 404, {}, error_body([(None, f"no route for {path}")])
        if authorization != f"Bearer {self.api_key}":
            message = "The provided authorization grant is invalid, expired, or revoked"
            return 401, {}, error_body([(None, message)])
        try:
            body = json.loads(raw)
        except ValueError as error:
            return self._reject(raw.decode(errors="replace"), [(None, f"invalid JSON: {error}")])
        problems = problems_in(body, self._validator)
        if problems:
            return self._reject(body, problems)
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
            if failure is None:
                message_id = f"fake-{len(self.requests) + 1:08d}"
                self.requests.append(cast(dict[str, Any], body))
                self.message_ids.append(message_id)
        if failure is not None:
            headers = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = f"{failure.retry_after:g}"
            return failure.status, headers, error_body([(failure.field, failure.message)])
        return 202, {"X-Message-Id": message_id}, b""

    def _reject(
        self, body: Any, problems: list[tuple[str | None, str]]
    ) -> tuple[int, dict[str, str], bytes]:
        reason = "; ".join(
            f"{field}: {message}" if field else message for field, message in problems
        )
        with self._lock:
            self.rejected.append((body, reason))
        return 400, {}, error_body(problems)


@contextmanager
def fake_in_child_process(delay: float = 0.0) -> Iterator[tuple[str, dict[str, int]]]:
    """(url, counts) of a fake SendGrid in a child process, as a real provider would be.

    ``counts`` is filled when the block ends: {"accepted": N, "rejected": M}.
    """
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.sendgrid_server", str(delay)],
        cwd=Path(__file__).resolve().parents[2],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    counts: dict[str, int] = {}
    try:
        yield child.stdout.readline().strip(), counts
    finally:
        child.stdin.close()
        counts.update(json.loads(child.stdout.readline() or "{}"))
        child.wait(timeout=60)


def main() -> None:
    """Serve until standard input closes: `python -m tests.fakes.sendgrid_server [delay]`.

    Prints the URL on the first line, and the counts of accepted and rejected requests at the
    end: for benchmarks that keep the fake out of the measured process.
    """
    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    with FakeSendGrid(delay=delay) as fake:
        print(fake.url, flush=True)
        sys.stdin.read()
        print(json.dumps({"accepted": len(fake.requests), "rejected": len(fake.rejected)}))


if __name__ == "__main__":
    main()
