"""The HTML report of a real health.yml run, opened in headless Chromium (Debian's package):
it renders to a non-trivial PNG with the problem highlight visible, and the DOM Chromium
built lists the broken site first."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from .conftest import HealthRun

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="apt-get install chromium")

# The background of highlighted problem rows in report.py's CSS (#fde2e2).
PROBLEM_ROW_RGB = (0xFD, 0xE2, 0xE2)


def chromium(html: Path, tmp: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    # No network, no background services: the page must render from the file alone.
    args = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--window-size=1280,1000", *mode, html.as_uri(),
    ]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp)


def png_pixels(path: Path) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) with the stdlib."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if ctype == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            bpp = 3 if color == 2 else 4
        elif ctype == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        pixels.extend(tuple(line[i : i + 3]) for i in range(0, stride, bpp))  # type: ignore[misc]
        prev = line
    return width, height, pixels


class _Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sites: list[tuple[str, str]] = []
        self.rows: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and "data-site" in a:
            self.sites.append((a["data-site"] or "", a.get("class") or ""))
        if tag == "tr" and "data-node" in a:
            self.rows.append((self.sites[-1][0], a["data-node"] or "", a.get("class") or ""))


def test_report_renders_in_chromium_with_broken_site_first(
    health_run: HealthRun, tmp_path: Path
) -> None:
    html = health_run.report_dir / "report.html"
    assert "<script" not in html.read_text() and "http" not in html.read_text().split("<body>")[0]

    png = tmp_path / "report.png"
    shot = chromium(html, tmp_path, f"--screenshot={png}")
    assert png.exists(), shot.stderr[-2000:]
    width, height, pixels = png_pixels(png)
    assert (width, height) == (1280, 1000)
    colours = set(pixels)
    assert len(colours) > 50, "the screenshot is (nearly) blank"
    assert PROBLEM_ROW_RGB in colours, "no highlighted problem row visible"

    dom = chromium(html, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = _Sections()
    parsed.feed(dom.stdout)
    assert [s for s, _ in parsed.sites] == ["bravo", "alpha", "charlie"]
    assert "bad" in parsed.sites[0][1].split()
    assert all("ok" in cls.split() for _, cls in parsed.sites[1:])
    bravo_rows = {node: cls for site, node, cls in parsed.rows if site == "bravo"}
    assert bravo_rows["b-w1"] == "problem"
