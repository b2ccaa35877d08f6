"""What a site relies on after site.yml ran on 3 masters + 1 worker (embedded datastore).

The hosts' `k3s` is the TEST STAND-IN from tests/k3s/standin: no Kubernetes runs. Checked is
what EdgeSite's roles are responsible for: the config file each host got and was started
with, the units, and the site token's handling.
"""

from __future__ import annotations

import json
from functools import cache

import pytest
import testinfra
import yaml

MASTERS = ["k3s-m1", "k3s-m2", "k3s-m3"]
WORKER = "k3s-w1"
CONFIG = "/etc/rancher/k3s/config.yaml"
TOKEN = "/etc/rancher/k3s/token"
STARTS = "/var/lib/rancher/k3s/standin/starts.jsonl"


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
    # Embedded etcd, slimmed through etcd-arg (edge profile, lan timing).
    assert "snapshot-count=2000" in config["etcd-arg"]
    assert "quota-backend-bytes=536870912" in config["etcd-arg"]
    if name == MASTERS[0]:
        assert config["cluster-init"] is True
        assert "server" not in config
    else:
        assert "cluster-init" not in config
        assert config["server"] == f"https://{node_ip(other(MASTERS[0]))}:6443"


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
    assert [json.loads(line)["node"] for line in joined.splitlines()] == [*MASTERS[1:], WORKER]
    assert not host.file("/var/lib/rancher/k3s/standin/rejected.jsonl").exists
