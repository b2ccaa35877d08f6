"""Three sites in one inventory through the full site.yml on podman test hosts.

- site1 and site2: external etcd (the etcd role, real etcd) on their one master, plus a worker;
- site3: SQLite master whose worker's container is stopped, so that host is unreachable.

After one run, each converged site must name only its own servers, token, datastore members
and etcd CA, and the unreachable host must fail only its own site, with the recap saying so.
The hosts' `k3s` is the TEST STAND-IN (tests/k3s/standin): what is checked is the config each
host is given, not a running Kubernetes.
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
import yaml
from k3s.artifacts import add_version
from k3s.site_hosts import sh

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "tools" / "containers.conf"

NAME = "fleetiso"
K3S = "v1.36.4+k3s1"
DATASTORE = {"site1": "external", "site2": "external", "site3": "sqlite"}
CONVERGED = ("site1", "site2")
BROKEN = "site3"
PKI = "/etc/etcd/pki"

pytestmark = [pytest.mark.podman, pytest.mark.root]


@dataclass
class Fleet:
    hosts: dict[str, list[str]]  # site -> hosts, master first
    ips: dict[str, str]
    rc: int
    output: str


def podman(*args: str) -> None:
    env = {**os.environ, "CONTAINERS_CONF": str(CONF)}
    subprocess.run(["podman", *args], env=env, check=True, capture_output=True)


def ansible_playbook() -> str:
    candidate = Path(sys.executable).parent / "ansible-playbook"
    return str(candidate) if candidate.exists() else "ansible-playbook"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleetiso")
    inventory_file = tmp / "hosts.yml"
    testhosts = [sys.executable, str(REPO / "tools" / "testhosts.py")]
    subprocess.run(
        [*testhosts, "up", "--name", NAME, "--sites", "3", "--masters", "1", "--workers", "1",
         "--inventory", str(inventory_file)],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        artifacts = tmp / "artifacts"
        add_version(artifacts, K3S)
        text = inventory_file.read_text()
        inventory = json.loads(text[text.index("{") :])
        inventory["all"]["vars"].update(
            edgesite_artifacts_dir=str(artifacts),
            prereq_time_sync_required=False,
            # Test containers lack CAP_SYS_RESOURCE: the units cannot raise their limits.
            k3s_server_service_limits={},
            k3s_agent_service_limits={},
            k3s_server_kubeconfig_dir=str(tmp / "kube"),
            k3s_server_health_delay=1,
            k3s_server_health_retries=10,
            k3s_agent_health_delay=1,
        )
        hosts: dict[str, list[str]] = {}
        ips: dict[str, str] = {}
        for group in ("edgesite_masters", "edgesite_workers"):
            for host, host_vars in inventory["all"]["children"][group]["hosts"].items():
                site = host_vars["edgesite_site"]
                host_vars["edgesite_datastore"] = DATASTORE[site]
                # A per-site name in every API certificate: it must not leak into other sites.
                host_vars["edgesite_tls_san"] = [f"api.{site}.edge.test"]
                hosts.setdefault(site, []).append(host)
                ips[host] = host_vars["edgesite_node_ip"]
        inventory_file.write_text(json.dumps(inventory))
        # The inventory still lists it: the run finds it unreachable, as a site whose uplink
        # went down would be.
        podman("stop", "-t", "0", hosts[BROKEN][1])
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
            ANSIBLE_CACHE_PLUGIN_CONNECTION=str(tmp / "facts"),
        )
        proc = subprocess.run(
            [ansible_playbook(), "-i", str(inventory_file), str(REPO / "site.yml"),
             "--skip-tags", "edge_agent"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        yield Fleet(hosts, ips, proc.returncode, proc.stdout + proc.stderr)
    finally:
        subprocess.run([*testhosts, "down", "--name", NAME], check=False, capture_output=True)


def recap_counts(output: str) -> dict[str, dict[str, int]]:
    stats = {}
    for host, rest in re.findall(r"^(\S+)\s+: (ok=.*)$", output, re.M):
        stats[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", rest)}
    return stats


def read_config(host: str) -> tuple[str, dict]:
    text = sh(host, "cat /etc/rancher/k3s/config.yaml").stdout
    return text, yaml.safe_load(text)


def etcd_members(host: str, endpoint_host: str, fleet: Fleet) -> subprocess.CompletedProcess:
    """etcdctl on `host` with its own client certificate against `endpoint_host`'s etcd."""
    return sh(
        host,
        f"ETCDCTL_API=3 etcdctl --endpoints https://{fleet.ips[endpoint_host]}:2379"
        f" --cacert {PKI}/ca.crt --cert {PKI}/client.crt --key {PKI}/client.key"
        " --command-timeout=5s member list -w json",
        check=False,
    )


def test_converged_sites_finish_without_failures(fleet):
    stats = recap_counts(fleet.output)
    for site in CONVERGED:
        for host in fleet.hosts[site]:
            assert stats[host]["failed"] == 0, fleet.output[-6000:]
            assert stats[host]["unreachable"] == 0, fleet.output[-6000:]
    for site in CONVERGED:
        master, worker = fleet.hosts[site]
        assert sh(master, "systemctl is-active k3s").stdout.strip() == "active"
        assert sh(worker, "systemctl is-active k3s-agent").stdout.strip() == "active"


def test_each_site_names_only_its_own_servers_and_token(fleet):
    tokens = {}
    for site in CONVERGED:
        master, worker = fleet.hosts[site]
        site_tokens = {
            h: sh(h, "cat /etc/rancher/k3s/token").stdout.strip() for h in (master, worker)
        }
        assert len(set(site_tokens.values())) == 1, site  # one token per site, on every host
        tokens[site] = site_tokens[master]
        assert len(tokens[site]) >= 32
        own_api = f"https://{fleet.ips[master]}:6443"
        _, server = read_config(master)
        assert "server" not in server  # the site's only master joins nobody
        assert server["tls-san"] == [f"api.{site}.edge.test"]
        assert server["datastore-endpoint"] == f"https://{fleet.ips[master]}:2379"
        _, agent = read_config(worker)
        assert agent["server"] == own_api
    assert tokens["site1"] != tokens["site2"]
    # Nothing of another site (its hosts, addresses, names, token) anywhere in a site's config.
    for site in CONVERGED:
        foreign = [
            value
            for other in fleet.hosts
            if other != site
            for host in fleet.hosts[other]
            for value in (host, fleet.ips[host], f"api.{other}.edge.test")
        ] + [tokens[other] for other in CONVERGED if other != site]
        for host in fleet.hosts[site]:
            text, _ = read_config(host)
            leaked = [value for value in foreign if value in text]
            assert leaked == [], (host, leaked)


def test_each_etcd_holds_only_its_own_site_and_trusts_only_its_own_ca(fleet):
    masters = {site: fleet.hosts[site][0] for site in CONVERGED}
    for site, master in masters.items():
        listed = etcd_members(master, master, fleet)
        assert listed.returncode == 0, listed.stderr
        members = json.loads(listed.stdout)["members"]
        assert [m["name"] for m in members] == [master], site
        assert [m["peerURLs"] for m in members] == [[f"https://{fleet.ips[master]}:2380"]]
    # One CA per site: a client certificate of one site must not open another site's datastore.
    assert (
        sh(masters["site1"], f"cat {PKI}/ca.crt").stdout
        != sh(masters["site2"], f"cat {PKI}/ca.crt").stdout
    )
    crossed = etcd_members(masters["site1"], masters["site2"], fleet)
    assert crossed.returncode != 0, crossed.stdout
    assert sh(masters["site2"], f"test -e {PKI}/ca.key", check=False).returncode == 0


def test_unreachable_host_fails_only_its_site_and_the_recap_names_it(fleet):
    assert fleet.rc != 0  # the run reports the broken site
    stats = recap_counts(fleet.output)
    broken_master, broken_worker = fleet.hosts[BROKEN]
    assert stats[broken_worker]["unreachable"] == 1, fleet.output[-6000:]
    recap = fleet.output[fleet.output.index("EDGESITE SITE RECAP") :]
    assert f"site {BROKEN}: FAILED (1 of 2 hosts)" in recap, recap
    assert f"{broken_worker}: unreachable at 'Gathering Facts'" in recap, recap
    for site in CONVERGED:
        assert f"site {site}: ok (2 hosts)" in recap, recap
    assert f"sites: 2 ok, 1 failed ({BROKEN})" in recap, recap
    # The failed site comes first in the recap.
    assert recap.index(f"site {BROKEN}:") < min(recap.index(f"site {s}:") for s in CONVERGED)
    # Its reachable master still converged: an unreachable worker holds back nothing else.
    assert sh(broken_master, "systemctl is-active k3s").stdout.strip() == "active"
