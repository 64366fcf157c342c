"""``relance report --html`` opened in headless Chromium: the screenshot shows the funnel.

The page is written by the command, opened from disk (file://, no server, no network),
and photographed at 1280x1600. The PNG is read here (no imaging library): every stage's
bar is found by its colour, one under the other, each as wide as its number of prospects.
The page and its screenshot are kept in test-artifacts/ (report.html, report.png).

Without chromium the test is skipped, and fails under CI=true (``make browser`` installs it).
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import pytest
from browser import dump_dom, require_chromium, screenshot
from report_support import build_history
from typer.testing import CliRunner

import relance.cli  # noqa: F401 - registers every command
from relance.cli.app import app
from relance.report_html import STAGE_COLOURS
from relance.store import Store

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
SIZE = (1280, 1600)
FUNNEL = {"Suspect": 13, "Lead": 12, "Prospect": 5, "MQL": 5, "SQL": 3, "Meeting": 2, "Client": 1}
"""Prospects per stage in report_support's history."""


def read_png(path: Path) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, rows of pixels) of an 8-bit RGB or RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    position, compressed = 8, []
    width = height = bpp = 0
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, colour, interlace) in ((8, 2, 0), (8, 6, 0)), "unexpected PNG format"
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            compressed.append(body)
    raw = zlib.decompress(b"".join(compressed))
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride) if kind else ():
            left = line[x - bpp] if x >= bpp else 0
            up = previous[x]
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            else:
                corner = previous[x - bpp] if x >= bpp else 0
                guess = left + up - corner
                near = min((abs(guess - left), 0, left), (abs(guess - up), 1, up),
                           (abs(guess - corner), 2, corner))  # fmt: skip
                line[x] = (line[x] + near[2]) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, bpp, rows


def widest_run(rows: list[bytes], bpp: int, colour: str) -> tuple[int, int]:
    """(length in pixels, row) of the longest horizontal run of exactly ``colour``."""
    pixel = bytes.fromhex(colour.lstrip("#")) + (b"\xff" if bpp == 4 else b"")
    pattern = re.compile(b"(?:" + re.escape(pixel) + b")+")
    best = (0, -1)
    for y, row in enumerate(rows):
        for match in pattern.finditer(row):
            if match.start() % bpp == 0:
                best = max(best, ((match.end() - match.start()) // bpp, -y))
    return best[0], -best[1]


@pytest.fixture
def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``relance report --html`` on a store with a known history, kept as an artifact."""
    data_dir = tmp_path / "data"
    store = Store(f"sqlite:///{(data_dir / 'relance.db').as_posix()}")
    build_history(store, tmp_path / "project")
    store.dispose()
    monkeypatch.delenv("RELANCE_DATABASE_URL", raising=False)
    monkeypatch.setenv("RELANCE_DATA_DIR", str(data_dir))
    ARTIFACTS.mkdir(exist_ok=True)
    html = ARTIFACTS / "report.html"
    result = CliRunner().invoke(
        app, ["report", "--html", str(html), "--now", "2026-03-08T08:00:00Z"]
    )
    assert result.exit_code == 0, result.output
    return html


def test_the_report_opens_in_chromium_and_the_screenshot_shows_the_funnel(page: Path) -> None:
    require_chromium()
    png = screenshot(page.as_uri(), ARTIFACTS / "report.png", SIZE)
    width, height, bpp, rows = read_png(png)
    assert (width, height) == SIZE

    bars = [widest_run(rows, bpp, colour) for colour in STAGE_COLOURS]
    assert all(length > 0 for length, _ in bars), f"a funnel stage is not on screen: {bars}"
    tops = [y for _, y in bars]
    assert tops == sorted(tops) and len(set(tops)) == 7, f"stages out of order: {tops}"
    assert tops[0] > 300 and tops[-1] < SIZE[1]
    widest = bars[0][0]
    assert widest > 500  # the top of the funnel spans most of the chart
    for (stage, prospects), (length, _) in zip(FUNNEL.items(), bars, strict=True):
        expected = widest * prospects / FUNNEL["Suspect"]
        assert abs(length - expected) <= 3, f"{stage}: {length}px wide, expected {expected:.0f}"

    dom = dump_dom(page.as_uri())
    assert '<svg id="funnel-chart"' in dom
    for stage, prospects in FUNNEL.items():
        assert f'data-stage="{stage}" data-prospects="{prospects}"' in dom
    for conversion in ("92%", "42%", "100%", "60%", "67%", "50%"):
        assert f"↓ {conversion}</text>" in dom
