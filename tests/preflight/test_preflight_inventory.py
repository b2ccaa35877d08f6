"""Preflight rejects bad inventories with a message that names the problem and the fix.

Each case runs the real site.yml against an inventory whose hosts point at a closed loopback
port: if preflight let a bad inventory through, the next play would try to reach the hosts
and the run would show it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MASTERS = {"m1": "10.0.0.11", "m2": "10.0.0.12", "m3": "10.0.0.13"}
WORKERS = {"w1": "10.0.0.21", "w2": "10.0.0.22"}


def host_entry(ip: str) -> dict:
    return {"edgesite_node_ip": ip}


def valid_inventory() -> dict:
    return {
        "all": {
            "vars": {
                # Nothing listens on the discard port: any connection attempt fails fast.
                "ansible_host": "127.0.0.1",
                "ansible_port": 9,
                "ansible_connection": "ssh",
                "prereq_time_sync_required": False,
            },
            "children": {
                "edgesite_masters": {"hosts": {h: host_entry(ip) for h, ip in MASTERS.items()}},
                "edgesite_workers": {"hosts": {h: host_entry(ip) for h, ip in WORKERS.items()}},
            },
        }
    }


def masters(inv: dict) -> dict:
    return inv["all"]["children"]["edgesite_masters"]["hosts"]


def workers(inv: dict) -> dict:
    return inv["all"]["children"]["edgesite_workers"]["hosts"]


def without_group(group: str):
    def change(inv):
        del inv["all"]["children"][group]

    return change


def no_masters(inv):
    workers(inv).update(masters(inv))
    inv["all"]["children"]["edgesite_masters"]["hosts"] = {}


def four_masters(inv):
    masters(inv)["m4"] = host_entry("10.0.0.14")


def duplicate_names(inv):
    masters(inv)["m1"]["edgesite_node_name"] = "node-a"
    workers(inv)["w1"]["edgesite_node_name"] = "node-a"


def duplicate_ips(inv):
    workers(inv)["w2"]["edgesite_node_ip"] = "10.0.0.11"


def set_all(key, value):
    def change(inv):
        inv["all"]["vars"][key] = value

    return change


def set_host(group, host, key, value):
    def change(inv):
        inv["all"]["children"][group]["hosts"][host][key] = value

    return change


def two_masters(inv):
    del masters(inv)["m3"]


def two_masters_master_witness(inv):
    two_masters(inv)
    inv["all"]["vars"]["edgesite_etcd_witness"] = "m2"


def worker_also_master(inv):
    masters(inv)["w1"] = host_entry("10.0.0.21")


def vip_outside_tls_san(inv):
    inv["all"]["vars"]["edgesite_site_vip"] = "10.0.0.100"
    inv["all"]["vars"]["edgesite_tls_san"] = ["api.store.example"]


BAD_INVENTORIES = {
    "missing masters group": (
        without_group("edgesite_masters"),
        "inventory has no group 'edgesite_masters'",
    ),
    "missing workers group": (
        without_group("edgesite_workers"),
        "inventory has no group 'edgesite_workers'",
    ),
    "zero masters": (no_masters, "site 'default' has no master"),
    "four masters": (four_masters, "site 'default' has 4 masters (m1, m2, m3, m4)"),
    "duplicate node names": (
        duplicate_names,
        "node name 'node-a' is used by 2 hosts (m1, w1)",
    ),
    "duplicate node IPs": (duplicate_ips, "node IP '10.0.0.11' is used by 2 hosts (m1, w2)"),
    "bool given as free text": (
        set_all("edgesite_agent_enabled", "maybe"),
        "edgesite_agent_enabled",
    ),
    "labels given as a list": (
        set_all("edgesite_node_labels", ["zone-a"]),
        "edgesite_node_labels",
    ),
    "unknown datastore": (
        set_all("edgesite_datastore", "etcd2"),
        "edgesite_datastore must be one of: embedded, external, sqlite",
    ),
    "unknown flannel backend": (
        set_all("edgesite_flannel_backend", "calico"),
        "edgesite_flannel_backend must be one of",
    ),
    "sqlite with three masters": (
        set_all("edgesite_datastore", "sqlite"),
        "'sqlite' works with exactly one master, the site has 3",
    ),
    "two masters without witness": (two_masters, "has 2 masters and no etcd witness"),
    "witness that is a master": (two_masters_master_witness, "'m2' is already a master"),
    "worker listed as master too": (
        worker_also_master,
        "host 'w1' is in both the masters and the workers group",
    ),
    "uppercase node name": (
        set_host("edgesite_workers", "w1", "edgesite_node_name", "Camera_Box"),
        "'Camera_Box', which is not a valid Kubernetes node name",
    ),
    "node IP not an address": (
        set_host("edgesite_masters", "m2", "edgesite_node_ip", "gateway.local"),
        "node IP 'gateway.local', which is not an IP address",
    ),
    "malformed k3s version": (
        set_all("edgesite_k3s_version", "1.31"),
        "edgesite_k3s_version '1.31' is not a pinned k3s release",
    ),
    "site setting differs between hosts": (
        set_host("edgesite_masters", "m3", "edgesite_datastore", "external"),
        "edgesite_datastore must be the same on every host of the site",
    ),
    "VIP not an address": (
        set_all("edgesite_site_vip", "api.site"),
        "edgesite_site_vip 'api.site' is not an IP address",
    ),
    "VIP not in tls-san": (
        vip_outside_tls_san,
        "edgesite_site_vip '10.0.0.100' is not in edgesite_tls_san ['api.store.example']",
    ),
    "token too short": (
        set_all("edgesite_k3s_token", "sesame"),
        "has an edgesite_k3s_token of 6 characters; use at least 16",
    ),
}


def write_inventory(tmp_path, inventory: dict, artifacts_dir=None):
    if artifacts_dir is not None:
        inventory["all"]["vars"].setdefault("edgesite_artifacts_dir", str(artifacts_dir))
    path = tmp_path / "hosts.yml"
    path.write_text(json.dumps(inventory))
    return path


@pytest.mark.parametrize("case", sorted(BAD_INVENTORIES))
def test_bad_inventory_rejected_before_any_host_is_touched(
    case, tmp_path, run_playbook, artifacts_dir
):
    change, expected = BAD_INVENTORIES[case]
    inventory = copy.deepcopy(valid_inventory())
    change(inventory)
    result = run_playbook("site.yml", write_inventory(tmp_path, inventory, artifacts_dir))
    assert result.rc != 0, result.output
    assert expected in result.output, result.output
    # The run stopped in preflight: no host was contacted, let alone changed.
    assert "Gathering Facts" not in result.output, result.output
    assert "UNREACHABLE" not in result.output, result.output


def two_masters_with_worker_witness(inv):
    # External etcd: the witness is its third member (an embedded-etcd witness would be a
    # k3s agent, never an etcd voter; preflight refuses that, tests/preflight/test_witness.py).
    two_masters(inv)
    inv["all"]["vars"]["edgesite_datastore"] = "external"
    inv["all"]["vars"]["edgesite_etcd_witness"] = "w1"


def two_masters_acknowledged(inv):
    two_masters(inv)
    inv["all"]["vars"]["edgesite_etcd_two_member_risk_acknowledged"] = True


def two_sites_reusing_addresses(inv):
    # NATed edge sites often reuse the same private range: addresses only need to be
    # unique inside a site.
    inv["all"]["children"]["site_b"] = {
        "vars": {"edgesite_site": "b"},
        "children": {},
        "hosts": {"b-m1": host_entry("10.0.0.11"), "b-w1": host_entry("10.0.0.21")},
    }
    masters(inv)["b-m1"] = {}
    workers(inv)["b-w1"] = {}


def single_master_sqlite(inv):
    inv["all"]["children"]["edgesite_masters"]["hosts"] = {"m1": host_entry("10.0.0.11")}
    inv["all"]["vars"]["edgesite_datastore"] = "sqlite"


def vip_with_default_tls_san(inv):
    inv["all"]["vars"]["edgesite_site_vip"] = "10.0.0.100"


GOOD_INVENTORIES = {
    "three masters": lambda inv: None,
    "VIP with the default tls-san": vip_with_default_tls_san,
    "token from the vault, long enough": set_all("edgesite_k3s_token", "x" * 16),
    "two masters with a worker witness": two_masters_with_worker_witness,
    "two masters with the risk acknowledged": two_masters_acknowledged,
    "two sites reusing addresses": two_sites_reusing_addresses,
    "single master on sqlite": single_master_sqlite,
}


@pytest.mark.parametrize("case", sorted(GOOD_INVENTORIES))
def test_valid_inventory_passes_preflight(case, tmp_path, run_playbook, artifacts_dir):
    inventory = copy.deepcopy(valid_inventory())
    GOOD_INVENTORIES[case](inventory)
    result = run_playbook(
        "playbooks/preflight.yml", write_inventory(tmp_path, inventory, artifacts_dir)
    )
    assert result.rc == 0, result.output


def test_example_inventory_passes_preflight(run_playbook, artifacts_dir):
    result = run_playbook(
        "playbooks/preflight.yml",
        REPO / "inventories" / "example",
        "-e",
        f"edgesite_artifacts_dir={artifacts_dir}",
    )
    assert result.rc == 0, result.output


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        ("w1", "site 'default': this run holds 0 of its 3 masters (none; missing m1, m2, m3)"),
        ("m1,w1", "site 'default': this run holds 1 of its 3 masters (m1; missing m2, m3)"),
    ],
)
def test_run_with_part_of_a_sites_masters_is_refused(
    limit, expected, tmp_path, run_playbook, artifacts_dir
):
    inventory = write_inventory(tmp_path, valid_inventory(), artifacts_dir)
    result = run_playbook("site.yml", inventory, "--limit", limit)
    assert result.rc != 0, result.output
    assert expected in result.output, result.output
    assert "Gathering Facts" not in result.output, result.output


def test_limit_to_one_whole_site_passes_preflight(tmp_path, run_playbook, artifacts_dir):
    inventory = copy.deepcopy(valid_inventory())
    two_sites_reusing_addresses(inventory)
    # Site b alone: its one master and its worker.
    result = run_playbook(
        "playbooks/preflight.yml",
        write_inventory(tmp_path, inventory, artifacts_dir),
        "--limit",
        "site_b",
    )
    assert result.rc == 0, result.output


def test_several_problems_are_shown_one_per_line(tmp_path, run_playbook, artifacts_dir):
    # Two problems of one site: a reused node IP and a short token.
    inventory = copy.deepcopy(valid_inventory())
    duplicate_ips(inventory)
    set_host("edgesite_masters", "m3", "edgesite_k3s_token", "sesame")(inventory)
    result = run_playbook(
        "playbooks/preflight.yml", write_inventory(tmp_path, inventory, artifacts_dir)
    )
    assert result.rc != 0, result.output
    lines = result.output.splitlines()
    # The error line ansible-playbook prints, then each problem on a line of its own.
    start = next(
        i for i, line in enumerate(lines) if line.startswith("[ERROR]: ") and line.endswith("Fix:")
    )
    problems = []
    for line in lines[start + 1 :]:
        if not line.startswith("- "):
            break
        problems.append(line)
    assert len(problems) == 2, result.output
    assert any("node IP '10.0.0.11' is used by 2 hosts" in p for p in problems), problems
    assert any("host 'm3' has an edgesite_k3s_token of 6 characters" in p for p in problems), (
        problems
    )
    assert not any("\\n" in p for p in problems), problems
