"""`edgesite-agent proxy render|cleanup` through the agent's real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgesite_agent.proxy.config import parse_settings
from edgesite_agent.proxy.render import render
from tests.proxy.shapes import NODE, SHAPES

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgesite_agent", "proxy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )


@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_render_prints_the_rules_of_a_list(tmp_path: Path, backend: str) -> None:
    objects = [o for objs in SHAPES.values() for o in objs]
    (tmp_path / "objs.json").write_text(json.dumps({"kind": "List", "items": objects}))
    (tmp_path / "proxy.json").write_text(json.dumps({"cluster_cidrs": ["10.244.0.0/16"]}))
    proc = _cli(
        "render", "--backend", backend, "--input", str(tmp_path / "objs.json"),
        "--node", NODE, "--settings", str(tmp_path / "proxy.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    settings = parse_settings({"cluster_cidrs": ["10.244.0.0/16"]})
    assert proc.stdout == render(objects, backend, NODE, settings)


def test_render_names_the_bad_setting(tmp_path: Path) -> None:
    (tmp_path / "objs.json").write_text("[]")
    (tmp_path / "proxy.json").write_text(json.dumps({"backend": "ipvs"}))
    proc = _cli(
        "render", "--input", str(tmp_path / "objs.json"), "--settings", str(tmp_path / "proxy.json")
    )
    assert proc.returncode == 2 and "proxy.backend" in proc.stderr


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a network namespace")
def test_cleanup_in_a_namespace(tmp_path: Path) -> None:
    ns = f"es{os.getpid() % 100000}-cli"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        text = render(SHAPES["clusterip"], "nft", NODE, parse_settings({}))
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text, text=True,
                       check=True)  # fmt: skip
        proc = _cli("cleanup", "--netns", ns)
        assert proc.returncode == 0 and "nftables" in proc.stdout, proc.stderr
        listing = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"],
                                 capture_output=True, text=True, check=True)  # fmt: skip
        assert "edgesite" not in listing.stdout
        assert "nothing to remove" in _cli("cleanup", "--netns", ns).stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
