"""inventories/example-fleet: three sites of different shapes pass preflight as shipped, and
the site model keeps them apart (a fault in one site is reported for that site only)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.k3s.artifacts import add_version

from .conftest import K3S, REPO, ansible_bin, ansible_env

EXAMPLE = REPO / "inventories" / "example-fleet"


def preflight(inventory: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    artifacts = tmp / "artifacts"
    if not artifacts.exists():
        add_version(artifacts, K3S)  # the k3s test stand-in, verified like a real release
    return subprocess.run(
        [ansible_bin("ansible-playbook"), "-i", str(inventory),
         str(REPO / "playbooks" / "preflight.yml"), "-e", f"edgesite_artifacts_dir={artifacts}",
         "-e", "preflight_show_records=true"],
        cwd=REPO, env=ansible_env(tmp), capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def test_example_fleet_passes_preflight(tmp_path: Path) -> None:
    run = preflight(EXAMPLE, tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    for site, datastore in (("store-0001", "sqlite"), ("store-0002", "external"),
                            ("store-0003", "embedded")):  # fmt: skip
        assert f"site: {site}" in out and f"datastore: {datastore}" in out


def test_a_broken_site_is_named_alone(tmp_path: Path) -> None:
    inv = tmp_path / "inv"
    shutil.copytree(EXAMPLE, inv)
    # store-0002 loses its witness: only that site may be reported.
    vars_file = inv / "group_vars" / "site_store_0002" / "edgesite.yml"
    vars_file.write_text(vars_file.read_text().replace("edgesite_etcd_witness: store-0002-w1", ""))
    run = preflight(inv, tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "site 'store-0002' has 2 masters and no etcd witness" in out
    assert "site 'store-0001'" not in out and "site 'store-0003'" not in out
