"""What a site relies on after site.yml ran on 3 masters + 1 worker.

Shared by the scenarios `k3s` (embedded datastore) and `k3s_external` (external etcd deployed
by the etcd role on the masters): EDGESITE_K3S_DATASTORE and EDGESITE_K3S_HOSTS (the host
name prefix) come from the scenario's verifier env. The hosts' `k3s` is the TEST STAND-IN from
tests/k3s/standin: no Kubernetes runs. Checked is what EdgeSite's roles are responsible for:
the config file each host got and was started with, the units, the site token's handling, and
for the external datastore the real etcd cluster k3s is pointed at.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import pytest
import testinfra
import yaml

DATASTORE = os.environ.get("EDGESITE_K3S_DATASTORE", "embedded")
PREFIX = os.environ.get("EDGESITE_K3S_HOSTS", "k3s")
MASTERS = [f"{PREFIX}-m1", f"{PREFIX}-m2", f"{PREFIX}-m3"]
WORKER = f"{PREFIX}-w1"
ETCD_PKI = "/etc/etcd/pki"
CONFIG = "/etc/rancher/k3s/config.yaml"
TOKEN = "/etc/rancher/k3s/token"
STARTS = "/var/lib/rancher/k3s/standin/starts.jsonl"
REPO = Path(__file__).resolve().parents[3]
_SITE_DEFAULTS = yaml.safe_load((REPO / "roles/edgesite/defaults/main.yml").read_text())
EDGE_LAN_ETCD_ARGS = sorted(
    f"{key}={value}"
    for key, value in (
        _SITE_DEFAULTS["edgesite_etcd_profiles"]["edge"]
        | _SITE_DEFAULTS["edgesite_etcd_networks"]["lan"]
    ).items()
)


@cache
def other(name: str):
    return testinfra.get_host(f"podman://{name}")


def name_of(host) -> str:
    return host.backend.get_hostname()


def node_ip(host) -> str:
    return host.check_output("hostname -I").split()[0]


def config_of(host) -> dict:
    return yaml.safe_load(host.file(CONFIG).content_string)


def test_unit_active_and_enabled(host):
    unit = "k3s-agent" if name_of(host) == WORKER else "k3s"
    out = host.check_output(f"systemctl is-active {unit}; systemctl is-enabled {unit}")
    assert out.split() == ["active", "enabled"]


def test_token_0600_and_identical_on_every_node(host):
    token = host.file(TOKEN)
    assert (token.mode, token.user, token.group) == (0o600, "root", "root")
    first = other(MASTERS[0]).file(TOKEN).content_string
    assert len(first.strip()) >= 32
    assert token.content_string == first
    # The config points at the token file; the secret itself is never in it.
    assert first.strip() not in host.file(CONFIG).content_string


def test_master_config(host):
    name = name_of(host)
    if name not in MASTERS:
        pytest.skip("master config")
    config = config_of(host)
    assert config["node-name"] == name
    assert config["node-ip"] == node_ip(host)
    assert config["token-file"] == TOKEN
    assert config["tls-san"] == ["k3s-api.molecule.test"]
    assert config["flannel-backend"] == "vxlan"
    # kube-proxy-lite (edgesite_agent_enabled) replaces k3s's kube-proxy.
    assert config["disable-kube-proxy"] is True
    assert config["disable"] == ["traefik", "servicelb"]
    if DATASTORE == "external":
        # Every server points at its own site's 3 etcd members over https with the etcd
        # role's client certificate; no embedded etcd, nobody joins another server.
        endpoints = [f"https://{node_ip(other(m))}:2379" for m in MASTERS]
        assert config["datastore-endpoint"].split(",") == endpoints
        assert config["datastore-cafile"] == f"{ETCD_PKI}/ca.crt"
        assert config["datastore-certfile"] == f"{ETCD_PKI}/client.crt"
        assert config["datastore-keyfile"] == f"{ETCD_PKI}/client.key"
        assert not {"cluster-init", "server", "etcd-arg"} & set(config)
        key = host.file(f"{ETCD_PKI}/client.key")
        assert key.is_file and key.mode == 0o600
        assert host.file(f"{ETCD_PKI}/client.crt").is_file
        assert host.file(f"{ETCD_PKI}/ca.crt").is_file
        return
    # Embedded etcd, slimmed through etcd-arg from the site's etcd profile (edge, lan): the
    # same definitions the etcd role renders for an external cluster.
    assert config["etcd-arg"] == EDGE_LAN_ETCD_ARGS
    assert "snapshot-count=2000" in config["etcd-arg"]
    assert "datastore-endpoint" not in config
    if name == MASTERS[0]:
        assert config["cluster-init"] is True
        assert "server" not in config
    else:
        assert "cluster-init" not in config
        assert config["server"] == f"https://{node_ip(other(MASTERS[0]))}:6443"


def test_external_etcd_healthy_with_the_three_masters(host):
    if DATASTORE != "external" or name_of(host) != MASTERS[0]:
        pytest.skip("external datastore, checked once from the first master")
    etcdctl = (
        f"ETCDCTL_API=3 etcdctl --cacert {ETCD_PKI}/ca.crt --cert {ETCD_PKI}/client.crt "
        f"--key {ETCD_PKI}/client.key --endpoints https://127.0.0.1:2379"
    )
    members = json.loads(host.check_output(f"{etcdctl} member list -w json"))["members"]
    assert sorted(m["name"] for m in members) == MASTERS
    assert not any(m.get("isLearner") for m in members)
    assert sorted(u for m in members for u in m["clientURLs"]) == sorted(
        f"https://{node_ip(other(m))}:2379" for m in MASTERS
    )
    health = json.loads(host.check_output(f"{etcdctl} endpoint health --cluster -w json"))
    assert [h["health"] for h in health] == [True, True, True]
    status = json.loads(host.check_output(f"{etcdctl} endpoint status --cluster -w json"))
    assert len({s["Status"]["leader"] for s in status}) == 1


def test_worker_config(host):
    if name_of(host) != WORKER:
        pytest.skip("worker config")
    assert config_of(host) == {
        "server": f"https://{node_ip(other(MASTERS[0]))}:6443",
        "token-file": TOKEN,
        "node-name": WORKER,
        "node-ip": node_ip(host),
    }


def test_standin_started_with_exactly_this_config(host):
    # The unit passes no flags of its own: the service was started with the file on disk now.
    records = [json.loads(line) for line in host.file(STARTS).content_string.splitlines()]
    assert records, "the test stand-in never started"
    last = records[-1]
    assert last["role"] == ("agent" if name_of(host) == WORKER else "server")
    assert last["config_path"] == CONFIG
    assert yaml.safe_load(last["config"]) == config_of(host)
    # One start per node: the idempotent re-run restarted nothing.
    assert len(records) == 1


def test_every_node_joined_the_first_master_with_the_site_token(host):
    if name_of(host) != MASTERS[0]:
        pytest.skip("join records live on the first master")
    joined = host.file("/var/lib/rancher/k3s/standin/joined.jsonl").content_string
    # Embedded: the other masters join the first one's etcd; external: they share the etcd
    # cluster instead, and only the worker joins through the first master.
    expected = [*MASTERS[1:], WORKER] if DATASTORE == "embedded" else [WORKER]
    assert [json.loads(line)["node"] for line in joined.splitlines()] == expected
    assert not host.file("/var/lib/rancher/k3s/standin/rejected.jsonl").exists
