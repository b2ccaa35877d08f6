"""Golden tests: the rules generated for each Service shape, for both backends.

Regenerate after an intended change with: EDGESITE_UPDATE_GOLDEN=1 pytest tests/proxy/test_golden.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edgesite_agent.proxy.config import parse_settings
from edgesite_agent.proxy.render import render
from tests.proxy.shapes import NODE, SHAPES

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = parse_settings({"cluster_cidrs": ["10.244.0.0/16"]})
BACKENDS = {"nft": "nft", "iptables": "iptables"}
IS_ROOT = os.geteuid() == 0


def _check(shape: str, backend: str) -> str:
    text = render(SHAPES[shape], backend, NODE, SETTINGS)
    path = GOLDEN / f"{shape}.{backend}"
    if os.environ.get("EDGESITE_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with EDGESITE_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"rules for {shape} ({backend}) differ from {path}"
    return text


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_rules_match_golden(shape: str, backend: str) -> None:
    _check(shape, backend)


def _in_fresh_netns(argv: list[str], text: str) -> subprocess.CompletedProcess[str]:
    # `unshare --net` gives a namespace that disappears with the process: nothing to clean.
    return subprocess.run(
        ["unshare", "--net", *argv], input=text, capture_output=True, text=True, timeout=60
    )


needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root for a network namespace")


@needs_root
@pytest.mark.root
@pytest.mark.skipif(shutil.which("nft") is None, reason="nft not installed")
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_nft_accepts_golden(shape: str) -> None:
    proc = _in_fresh_netns(["nft", "-c", "-f", "-"], _check(shape, "nft"))
    assert proc.returncode == 0, proc.stderr


@needs_root
@pytest.mark.root
@pytest.mark.skipif(shutil.which("iptables-restore") is None, reason="iptables not installed")
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_iptables_restore_accepts_golden(shape: str) -> None:
    proc = _in_fresh_netns(["iptables-restore", "--test", "--noflush"], _check(shape, "iptables"))
    assert proc.returncode == 0, proc.stderr


def test_all_shapes_together_are_accepted() -> None:
    """Every shape in one ruleset: names must not collide across services."""
    objects = [obj for objs in SHAPES.values() for obj in objs]
    for backend, argv in (
        ("nft", ["nft", "-c", "-f", "-"]),
        ("iptables", ["iptables-restore", "--test", "--noflush"]),
    ):
        text = render(objects, backend, NODE, SETTINGS)
        if not IS_ROOT:
            pytest.skip("needs root for a network namespace")
        proc = _in_fresh_netns(argv, text)
        assert proc.returncode == 0, f"{backend}: {proc.stderr}"
