"""The edgesite.fleet.site_info module run by ansible-playbook against real peers over real
sockets: the test Kubernetes API server (TLS, admin client certificate) and a real etcd
(external datastore, read from the controller with the etcd modules' client)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.etcd.cluster import ETCD_BIN, EtcdCluster
from tests.etcd.pki import make_pki
from tests.kubeapi import KubeAPIServer, certs

from .conftest import K3S, REPO, ansible_bin, ansible_env, k8s_node

PLAYBOOK = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - edgesite.fleet.site_info: {args}
      register: out
      check_mode: true
    - ansible.builtin.copy:
        content: "{{{{ out | to_json }}}}"
        dest: {result_file}
        mode: "0600"
"""


def run_module(tmp: Path, args: dict) -> dict:
    result = tmp / "result.json"
    # JSON is YAML: the parameters go into the task literally, as a user would write them.
    (tmp / "pb.yml").write_text(
        PLAYBOOK.format(args=json.dumps(args), result_file=json.dumps(str(result)))
    )
    proc = subprocess.run(
        [ansible_bin("ansible-playbook"), "-i", "localhost,", "-c", "local",
         str(tmp / "pb.yml"), "-e", f"ansible_python_interpreter={sys.executable}"],
        cwd=REPO, env=ansible_env(tmp), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(result.read_text())


@pytest.fixture
def api(fleet_tls: Path) -> Iterator[KubeAPIServer]:
    srv = KubeAPIServer(fleet_tls)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    if not Path(ETCD_BIN).exists():
        pytest.skip("etcd binary not installed (apt-get install etcd-server)")
    base = tmp_path_factory.mktemp("etcd")
    cluster = EtcdCluster.create(base, make_pki(base / "pki"), 1, f"t-{uuid.uuid4().hex[:8]}")
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()
        shutil.rmtree(base, ignore_errors=True)


def test_module_reports_not_ready_node_and_external_etcd(
    api: KubeAPIServer, etcd: EtcdCluster, fleet_tls: Path, tmp_path: Path
) -> None:
    api.upsert("nodes", k8s_node("m1", ("control-plane", "master")))
    api.upsert("nodes", k8s_node("w1", ready=False))
    kc = certs.write_kubeconfig(tmp_path / "s.yaml", api.url, fleet_tls / "ca.crt",
                                certs.admin_cert(fleet_tls))  # fmt: skip
    inventory = [
        {"host": "m1", "node_name": "m1", "is_master": True, "is_worker": False},
        {"host": "w1", "node_name": "w1", "is_master": False, "is_worker": True},
    ]
    out = run_module(tmp_path, {
        "site": "s1", "kubeconfig": str(kc), "datastore": "external", "k3s_version": K3S,
        "inventory_nodes": inventory, "etcd": etcd.conn_args(),
        "agents": [{"host": "w1", "node": "w1", "readyz_status": -1, "error": "refused"}],
    })  # fmt: skip
    assert out["changed"] is False
    site = out["site"]
    assert site["api"] == {"url": api.url, "reachable": True, "version": K3S, "error": ""}
    w1 = next(r for r in site["nodes"] if r["node"] == "w1")
    assert w1["ready"] is False
    assert any(p.startswith("NotReady (NodeStatusUnknown") for p in w1["problems"])
    assert any("agent not answering" in p for p in w1["problems"])
    ds = site["datastore"]
    assert ds["source"] == "etcd" and ds["healthy"] is True, ds
    assert ds["leader"] == "m1" and [m["name"] for m in ds["members"]] == ["m1"]
    assert ds["db_size"] > 0 and ds["alarms"] == []
    # The API server saw the admin identity list Nodes.
    assert any(r.path == "/api/v1/nodes" and r.user == "admin" for r in api.requests)


def test_module_reports_missing_kubeconfig_as_a_site_problem(tmp_path: Path) -> None:
    out = run_module(tmp_path, {"site": "s2", "kubeconfig": str(tmp_path / "absent.yaml")})
    assert out["site"]["healthy"] is False
    assert out["site"]["problems"][0].startswith("Kubernetes API not reachable: cannot read")


@pytest.fixture
def k3s_style_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A real one-member etcd whose member is named the way k3s names embedded members."""
    if not Path(ETCD_BIN).exists():
        pytest.skip("etcd binary not installed (apt-get install etcd-server)")
    base = tmp_path_factory.mktemp("etcd-embedded")
    cluster = EtcdCluster(base=base, pki=make_pki(base / "pki"), token=f"t-{uuid.uuid4().hex[:8]}")
    cluster.members.append(cluster.new_member("m1-0a1b2c3d"))
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()
        shutil.rmtree(base, ignore_errors=True)


def test_embedded_etcd_leader_alarms_and_members_by_node(
    api: KubeAPIServer, k3s_style_etcd: EtcdCluster, fleet_tls: Path, tmp_path: Path
) -> None:
    api.upsert("nodes", k8s_node("m1", ("control-plane", "etcd", "master")))
    kc = certs.write_kubeconfig(tmp_path / "e.yaml", api.url, fleet_tls / "ca.crt",
                                certs.admin_cert(fleet_tls))  # fmt: skip
    out = run_module(tmp_path, {
        "site": "e1", "kubeconfig": str(kc), "datastore": "embedded", "k3s_version": K3S,
        "inventory_nodes": [{"host": "m1", "node_name": "m1", "is_master": True}],
        "etcd": k3s_style_etcd.conn_args(),
    })  # fmt: skip
    site = out["site"]
    ds = site["datastore"]
    assert ds["kind"] == "embedded" and ds["source"] == "etcd" and ds["healthy"] is True, ds
    # Named by node, as the rest of the report; etcd's own name is kept alongside.
    assert ds["leader"] == "m1"
    assert [(m["name"], m["etcd_name"]) for m in ds["members"]] == [("m1", "m1-0a1b2c3d")]
    assert ds["alarms"] == [] and ds["db_size"] > 0
    assert site["healthy"] is True, site
