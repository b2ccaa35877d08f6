"""edgesite.fleet builds with ansible-galaxy into a tarball that installs and documents itself.

AWX project syncs and ansible-builder install the collection from such a tarball (or its
directory), so a file missing from the tarball is a module missing in production.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from awx.tools import REPO, tool

COLLECTION = REPO / "collections" / "ansible_collections" / "edgesite" / "fleet"


def plugin_files(kind: str) -> set[str]:
    return {
        f"plugins/{kind}/{p.name}"
        for p in (COLLECTION / "plugins" / kind).iterdir()
        if p.is_file() and p.suffix in {".py", ".yml", ".yaml"}
    }


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    galaxy = tool("ansible-galaxy")
    assert galaxy, "ansible-galaxy is part of the dev toolchain"
    out = tmp_path_factory.mktemp("collection-build")
    proc = subprocess.run(
        [galaxy, "collection", "build", str(COLLECTION), "--output-path", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    meta = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    path = out / f"{meta['namespace']}-{meta['name']}-{meta['version']}.tar.gz"
    assert path.is_file(), sorted(p.name for p in out.iterdir())
    return path


def test_tarball_holds_every_module_filter_and_module_util(tarball):
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    for kind in ("modules", "filter", "module_utils"):
        expected = plugin_files(kind)
        assert expected, f"no {kind} in the source tree"
        assert expected <= names, expected - names
    # The modules the playbooks call by name.
    for module in ("etcd_snapshot", "etcd_member", "etcd_info", "site_info"):
        assert f"plugins/modules/{module}.py" in names
    assert {"plugins/filter/health_report.py", "plugins/filter/site_problems.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/output")]


def test_manifest_matches_galaxy_yml(tarball):
    meta = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    with tarfile.open(tarball) as tar:
        member = tar.extractfile("MANIFEST.json")
        assert member is not None
        manifest = json.load(member)["collection_info"]
    assert (manifest["namespace"], manifest["name"], manifest["version"]) == (
        meta["namespace"],
        meta["name"],
        meta["version"],
    )
    assert manifest["dependencies"] == meta["dependencies"]


def test_tarball_installs_and_its_modules_load(tarball, tmp_path):
    galaxy, doc = tool("ansible-galaxy"), tool("ansible-doc")
    assert galaxy and doc
    target = tmp_path / "collections"
    # Outside the repo and without its ansible.cfg: the repo's collections_path already holds
    # edgesite.fleet, and galaxy would then report "already installed" and install nothing.
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(target),
    }
    # --no-deps/--offline: the dependencies come from the ansible bundle; Galaxy is unreachable.
    proc = subprocess.run(
        [galaxy, "collection", "install", "--no-deps", "--offline", "-p", str(target),
         str(tarball)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for module in ("edgesite.fleet.etcd_snapshot", "edgesite.fleet.site_info"):
        proc = subprocess.run(
            [doc, "--json", module], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        docs = json.loads(proc.stdout)
        assert module in docs, proc.stdout[:500] + proc.stderr[:2000]
        doc_json = docs[module]
        assert str(target) in doc_json["doc"]["filename"]
        assert doc_json["doc"]["options"]
