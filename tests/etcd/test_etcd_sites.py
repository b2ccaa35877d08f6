"""roles/etcd with two sites in one play, on podman test hosts: one cluster per site, in parallel.

Each site has 2 masters and a witness (its worker), so 3 voting members. One play runs the role
on both sites (as site.yml does); then:
- each site's etcd lists exactly its own three members, each site has its own CA and cluster
  token, and a client certificate of one site is refused by the other site's etcd;
- a second run changes nothing;
- a third run with a changed setting, after one member per site lost its data and membership,
  re-adds that member in each site and restarts the other members one at a time: the join and
  every restart position run as one task for both sites (the sites proceed together), and
  within a site one member at a time. Both clusters are healthy afterwards.
Real etcd from Debian's package in each host.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "tools" / "containers.conf"
NAME = "etcdsites"
SITES = ("site1", "site2")
PKI = "/etc/etcd/pki"

pytestmark = [pytest.mark.podman, pytest.mark.root]

PLAY = [
    {
        "name": "etcd per site",
        "hosts": "edgesite_masters:edgesite_workers",
        "gather_facts": True,
        "tasks": [
            {
                "name": "Deploy etcd on the masters and the witness of each site",
                "ansible.builtin.include_role": {"name": "etcd"},
                "when": "inventory_hostname in groups['edgesite_masters']"
                " or inventory_hostname == edgesite_etcd_witness",
            }
        ],
    }
]


@dataclass
class Fleet:
    hosts: dict[str, list[str]]  # site -> [m1, m2, witness]
    ips: dict[str, str]
    playbook: Path
    inventory: Path
    tmp: Path


def env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONF)}


def sh(host: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", "exec", host, "sh", "-c", script],
        env=env(),
        capture_output=True,
        text=True,
        check=check,
    )


def run_role(fleet: Fleet, *extra: str) -> tuple[int, str]:
    binary = Path(sys.executable).parent / "ansible-playbook"
    proc = subprocess.run(
        [str(binary) if binary.exists() else "ansible-playbook", "-i", str(fleet.inventory),
         str(fleet.playbook), *extra],
        cwd=REPO,
        env={**env(), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
             "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_LOCAL_TEMP": str(fleet.tmp / "ansible-tmp"),
             "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(fleet.tmp / "facts")},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def recap(output: str) -> dict[str, dict[str, int]]:
    stats = {}
    for host, rest in re.findall(r"^(\S+)\s+: (ok=.*)$", output, re.M):
        stats[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", rest)}
    return stats


def task_results(output: str, prefix: str) -> list[list[tuple[str, str]]]:
    """For each task whose name starts with prefix: its (host, delegated-to) results."""
    blocks = []
    # Tasks of the handler's includes print as RUNNING HANDLER, the others as TASK.
    for block in re.split(r"\n(?:TASK|RUNNING HANDLER) \[", output)[1:]:
        if block.startswith(prefix):
            # The callback omits "-> delegate" when a host delegates to itself.
            found = re.findall(r"^(?:changed|ok): \[(\S+?)(?: -> (\S+))?\]", block, re.M)
            blocks.append([(host, delegate or host) for host, delegate in found])
    return blocks


def etcdctl(host: str, endpoint_ip: str, command: str, check: bool = True):
    return sh(
        host,
        f"ETCDCTL_API=3 etcdctl --endpoints https://{endpoint_ip}:2379 --cacert {PKI}/ca.crt"
        f" --cert {PKI}/client.crt --key {PKI}/client.key --command-timeout=5s {command}",
        check=check,
    )


def members(fleet: Fleet, site: str) -> list[str]:
    first = fleet.hosts[site][0]
    listed = etcdctl(first, fleet.ips[first], "member list -w json")
    return sorted(m["name"] for m in json.loads(listed.stdout)["members"] if m.get("name"))


def healthy(fleet: Fleet, site: str) -> list[bool]:
    first = fleet.hosts[site][0]
    out = etcdctl(first, fleet.ips[first], "endpoint health --cluster -w json").stdout
    return [h["health"] for h in json.loads(out)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("etcdsites")
    inventory = tmp / "hosts.yml"
    testhosts = [sys.executable, str(REPO / "tools" / "testhosts.py")]
    subprocess.run(
        [*testhosts, "up", "--name", NAME, "--sites", "2", "--masters", "2", "--workers", "1",
         "--inventory", str(inventory)],
        check=True, capture_output=True, env=env(),
    )  # fmt: skip
    try:
        text = inventory.read_text()
        data = json.loads(text[text.index("{") :])
        hosts: dict[str, list[str]] = {}
        ips: dict[str, str] = {}
        for group in ("edgesite_masters", "edgesite_workers"):
            for host, host_vars in data["all"]["children"][group]["hosts"].items():
                hosts.setdefault(host_vars["edgesite_site"], []).append(host)
                ips[host] = host_vars["edgesite_node_ip"]
        for group in ("edgesite_masters", "edgesite_workers"):
            for host_vars in data["all"]["children"][group]["hosts"].values():
                host_vars["edgesite_etcd_witness"] = hosts[host_vars["edgesite_site"]][2]
        inventory.write_text(json.dumps(data))
        playbook = tmp / "etcd.yml"
        playbook.write_text(json.dumps(PLAY))
        yield Fleet(hosts, ips, playbook, inventory, tmp)
    finally:
        subprocess.run([*testhosts, "down", "--name", NAME], check=False, capture_output=True)


def test_two_sites_in_one_play(fleet):
    rc, out = run_role(fleet)
    assert rc == 0, out[-6000:]

    # One cluster per site with exactly its own members, healthy.
    for site in SITES:
        assert members(fleet, site) == sorted(fleet.hosts[site]), site
        assert healthy(fleet, site) == [True, True, True], site
        config = sh(fleet.hosts[site][0], "cat /etc/etcd/etcd.conf.yml").stdout
        assert f'initial-cluster-token: "edgesite-{site}"' in config
        other = next(s for s in SITES if s != site)
        assert not any(h in config or fleet.ips[h] in config for h in fleet.hosts[other])
    # One CA per site, kept on the site's first master only; the other site refuses its client.
    cas = {site: sh(fleet.hosts[site][0], f"cat {PKI}/ca.crt").stdout for site in SITES}
    assert cas["site1"] != cas["site2"]
    for site in SITES:
        m1, m2, witness = fleet.hosts[site]
        assert sh(m1, f"test -e {PKI}/ca.key", check=False).returncode == 0
        assert sh(m2, f"test -e {PKI}/ca.key", check=False).returncode != 0
        assert sh(witness, f"cat {PKI}/ca.crt").stdout == cas[site]
        assert sh(m1, f"stat -c %a {PKI}/server.key").stdout.strip() == "600"
    crossed = etcdctl(fleet.hosts["site1"][0], fleet.ips[fleet.hosts["site2"][0]],
                      "member list", check=False)  # fmt: skip
    assert crossed.returncode != 0, crossed.stdout

    # Idempotent.
    rc, out = run_role(fleet)
    assert rc == 0, out[-6000:]
    stats = recap(out)
    for site in SITES:
        for host in fleet.hosts[site]:
            assert stats[host]["changed"] == 0, (host, out[-6000:])

    # Each site loses its second master's member and data; then a setting changes everywhere.
    for site in SITES:
        m1, m2, _ = fleet.hosts[site]
        sh(m2, "systemctl stop etcd")
        listed = json.loads(etcdctl(m1, fleet.ips[m1], "member list -w json").stdout)
        member_id = next(m["ID"] for m in listed["members"] if m.get("name") == m2)
        etcdctl(m1, fleet.ips[m1], f"member remove {member_id:x}")
        sh(m2, "rm -rf /var/lib/etcd/edgesite /etc/etcd/etcd.conf.yml")
    rc, out = run_role(fleet, "-e", json.dumps({"etcd_extra_config": {"max-txn-ops": 256}}))
    assert rc == 0, out[-6000:]

    # The joins of both sites ran as one task (in parallel), each announced through its own site.
    announced = task_results(out, "etcd : Announce to the cluster the new member")
    assert len(announced) == 1, out[-6000:]
    site_of = {h: s for s, hs in fleet.hosts.items() for h in hs}
    assert sorted(site_of[host] for host, _ in announced[0]) == list(SITES)
    for host, delegate in announced[0]:
        assert site_of[delegate] == site_of[host]
    # Rolling restarts: each position is one task for both sites, one member per site at a time,
    # and together they restart each site's members that kept their data.
    restarts = task_results(out, "etcd : Restart etcd on")
    assert restarts, out[-6000:]
    restarted: dict[str, list[str]] = {site: [] for site in SITES}
    for position in restarts:
        per_site = [site_of[delegate] for _, delegate in position]
        assert sorted(per_site) == list(SITES), position
        for host, delegate in position:
            assert site_of[host] == site_of[delegate]
            restarted[site_of[delegate]].append(delegate)
    for site in SITES:
        m1, m2, witness = fleet.hosts[site]
        assert sorted(restarted[site]) == sorted([m1, witness]), restarted
        assert members(fleet, site) == sorted(fleet.hosts[site]), site
        assert healthy(fleet, site) == [True, True, True], site
        config = sh(m1, "cat /etc/etcd/etcd.conf.yml").stdout
        assert "max-txn-ops: 256" in config
