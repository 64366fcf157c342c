"""Unauthenticated clients cost at most a request: a slow body gets 408, a client leaving
mid-body is one short log line. Over real HTTP, with uvicorn on loopback."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_support import LiveServer

from relance.settings import Settings
from relance.web.app import create_app

PATHS = [
    "/webhooks/sendgrid/events",
    "/webhooks/sendgrid/inbound/inbound-secret-0123456789",
    "/webhooks/calendly",
    "/webhooks/calcom",
    "/sdr/login",
]


class Kept(logging.Handler):
    """Every record of the loggers it is attached to."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    settings = Settings(
        home=Path(),
        data_dir=tmp_path,
        inbound_secret="inbound-secret-0123456789",
        sdr_token="sdr-token-0123456789",
        body_timeout_seconds=1,
    )
    with LiveServer(create_app(settings)) as live:
        yield live


@pytest.fixture
def logs() -> Iterator[Kept]:
    kept = Kept()
    names = ["uvicorn", ""]  # uvicorn does not propagate to the root logger
    for name in names:
        logging.getLogger(name).addHandler(kept)
    previous = logging.getLogger("relance").level
    logging.getLogger("relance").setLevel(logging.INFO)
    yield kept
    logging.getLogger("relance").setLevel(previous)
    for name in names:
        logging.getLogger(name).removeHandler(kept)


PART = b'--b\r\nContent-Disposition: form-data; name="text"\r\n\r\n'
"""The start of a well-formed multipart body, whose first field then never ends."""


def head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def answer(sock: socket.socket, data: bytes = b"") -> bytes:
    """The whole answer: the server closes the connection after it."""
    sock.settimeout(30)
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("path", PATHS)
def test_a_body_sent_byte_by_byte_gets_408(server: LiveServer, path: str) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head(path, 1000) + PART)
        status = b""
        for _ in range(200):  # a byte at a time, far slower than the deadline allows
            try:
                sock.sendall(b"a")
            except OSError:  # the server closed the connection after answering
                break
            sock.settimeout(0.05)
            try:
                status = sock.recv(4096)
            except TimeoutError:
                continue
            break
        status = answer(sock, status)
    assert status.startswith(b"HTTP/1.1 408 "), status[:100]
    assert b"the body did not arrive within 1 seconds" in status


@pytest.mark.parametrize("path", PATHS)
def test_a_client_leaving_mid_body_is_one_short_line(
    server: LiveServer, logs: Kept, path: str
) -> None:
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head(path, 1000) + b"--b\r\n")
            time.sleep(0.05)
    deadline = time.monotonic() + 10
    while len([r for r in logs.records if "left" in r.getMessage()]) < 5:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not [r for r in logs.records if r.exc_info]
    left = [r.getMessage() for r in logs.records if "left" in r.getMessage()]
    assert left == [f"POST {path}: the client left before sending its body"] * 5


def test_an_ordinary_request_is_untouched(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert answer(sock).startswith(b"HTTP/1.1 200 ")
