"""site.yml, upgrade.yml and reset.yml on podman test hosts (3 masters + 1 worker).

The hosts' `k3s` is the TEST STAND-IN from tests/k3s/standin (no Kubernetes runs). What is
checked is what EdgeSite's roles are responsible for: the config each host is started with,
join order, units, token handling, idempotence, upgrade order and gating, and reset.
Tests in this module run in order against one set of hosts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from k3s.artifacts import add_version
from k3s.site_hosts import recap, sh, stand_up, standin_records, tear_down

REPO = Path(__file__).resolve().parents[2]
NAME = "k3spy"
V1, V2, V3 = "v1.36.4+k3s1", "v1.36.5+k3s1", "v1.36.6+k3s1"
MASTERS = [f"edgesite-{NAME}-m{i}" for i in (1, 2, 3)]
WORKER = f"edgesite-{NAME}-w1"
SITE = "k3s-test-site"
_SITE_DEFAULTS = yaml.safe_load((REPO / "roles/edgesite/defaults/main.yml").read_text())
EDGE_LAN_ETCD_ARGS = sorted(
    f"{key}={value}"
    for key, value in (
        _SITE_DEFAULTS["edgesite_etcd_profiles"]["edge"]
        | _SITE_DEFAULTS["edgesite_etcd_networks"]["lan"]
    ).items()
)

pytestmark = [pytest.mark.podman, pytest.mark.root]


def starts(host: str) -> list[dict]:
    return standin_records(host, "starts.jsonl")


# The edge agent play is skipped to keep these runs short: the agent runs against the
# stand-in's test API in tests/k3s/test_day2.py and molecule/default.
SKIP_EDGE_AGENT = ("--skip-tags", "edge_agent")


def running_version(host: str) -> str:
    return starts(host)[-1]["version"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("k3ssite")
    hosts = stand_up(
        NAME, 3, 1, tmp, V1,
        edgesite_site=SITE,
        k3s_server_kubeconfig_dir=str(tmp / "kube"),
        k3s_server_health_delay=1,
        k3s_server_health_retries=10,
        k3s_agent_health_delay=1,
    )  # fmt: skip
    yield {"inventory": hosts.inventory, "artifacts": hosts.artifacts, "kube": tmp / "kube"}
    tear_down(hosts)


def test_site_converges_without_printing_the_token(site, run_playbook):
    result = run_playbook("site.yml", site["inventory"], "-v", *SKIP_EDGE_AGENT)
    assert result.rc == 0, result.output[-5000:]
    token = sh(MASTERS[0], "cat /etc/rancher/k3s/token").stdout.strip()
    assert len(token) >= 32
    assert token not in result.output


def test_token_is_shared_and_0600_everywhere(site):
    token = sh(MASTERS[0], "cat /etc/rancher/k3s/token").stdout
    for host in [*MASTERS, WORKER]:
        assert sh(host, "stat -c %a:%U /etc/rancher/k3s/token").stdout.strip() == "600:root"
        assert sh(host, "cat /etc/rancher/k3s/token").stdout == token
        config = sh(host, "cat /etc/rancher/k3s/config.yaml").stdout
        assert token.strip() not in config


def test_rendered_config_per_host(site):
    ips = {h: sh(h, "hostname -I").stdout.split()[0] for h in [*MASTERS, WORKER]}
    configs = {h: yaml.safe_load(sh(h, "cat /etc/rancher/k3s/config.yaml").stdout) for h in ips}
    first = configs[MASTERS[0]]
    assert first["cluster-init"] is True and "server" not in first
    for host in MASTERS:
        config = configs[host]
        assert config["node-ip"] == ips[host] and config["node-name"] == host
        assert config["disable"] == ["traefik", "servicelb"]
        assert config["disable-kube-proxy"] is True
        assert config["flannel-backend"] == "vxlan"
        assert config["token-file"] == "/etc/rancher/k3s/token"
        assert "node-monitor-grace-period=2m" in config["kube-controller-manager-arg"]
        # Embedded etcd slimmed from the site's etcd profile (edge, lan by default): the same
        # definitions the etcd role renders for an external cluster.
        assert config["etcd-arg"] == EDGE_LAN_ETCD_ARGS
    for host in MASTERS[1:]:
        assert configs[host]["server"] == f"https://{ips[MASTERS[0]]}:6443"
        assert "cluster-init" not in configs[host]
    agent = configs[WORKER]
    assert agent == {
        "server": f"https://{ips[MASTERS[0]]}:6443",
        "token-file": "/etc/rancher/k3s/token",
        "node-name": WORKER,
        "node-ip": ips[WORKER],
    }
    # Each service was started with exactly the file that is on disk now.
    for host in ips:
        assert yaml.safe_load(starts(host)[-1]["config"]) == configs[host]


def test_units_active_and_join_order(site):
    for host in MASTERS:
        assert sh(host, "systemctl is-active k3s").stdout.strip() == "active"
    assert sh(WORKER, "systemctl is-active k3s-agent").stdout.strip() == "active"
    first_starts = [starts(h)[0]["started_ns"] for h in [*MASTERS, WORKER]]
    assert first_starts == sorted(first_starts)
    joined = sh(MASTERS[0], "cat /var/lib/rancher/k3s/standin/joined.jsonl").stdout
    assert [json.loads(line)["node"] for line in joined.splitlines()] == [*MASTERS[1:], WORKER]


def test_admin_kubeconfig_on_controller(site):
    path = site["kube"] / f"{SITE}.yaml"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    server = yaml.safe_load(path.read_text())["clusters"][0]["cluster"]["server"]
    assert server == f"https://{sh(MASTERS[0], 'hostname -I').stdout.split()[0]}:6443"


ETCD_TLS = "/var/lib/rancher/k3s/server/tls/etcd"
ETCDCTL = (
    "ETCDCTL_API=3 $(ls /var/lib/rancher/k3s/data/*/bin/etcdctl | head -1)"
    f" --endpoints=https://127.0.0.1:2379 --cacert={ETCD_TLS}/server-ca.crt"
    f" --cert={ETCD_TLS}/client.crt --key={ETCD_TLS}/client.key"
)


def etcdctl(host: str, args: str) -> dict:
    return json.loads(sh(host, f"{ETCDCTL} {args} -w json").stdout)


def test_embedded_etcd_is_one_cluster_of_every_master(site):
    """Issue 17: the stand-in's servers share a real etcd, laid out as k3s lays it out."""
    members = etcdctl(MASTERS[0], "member list")["members"]
    assert sorted(m["name"].rsplit("-", 1)[0] for m in members) == MASTERS
    clusters = {etcdctl(h, "endpoint status")[0]["Status"]["header"]["cluster_id"]
                for h in MASTERS}  # fmt: skip
    assert len(clusters) == 1, clusters
    # The bootstrap data every server shares: one CA for the whole cluster.
    cas = {sh(h, "sha256sum /var/lib/rancher/k3s/server/tls/ca.crt").stdout.split()[0]
           for h in MASTERS}  # fmt: skip
    assert len(cas) == 1
    keys = sh(MASTERS[0], f"{ETCDCTL} get --prefix /bootstrap --keys-only").stdout.split()
    assert len(keys) == 1 and re.fullmatch(r"/bootstrap/[0-9a-f]{12}", keys[0]), keys


def test_a_server_with_another_token_refuses_to_start(site):
    """k3s: bootstrap data already found and encrypted with a different token."""
    host = MASTERS[2]
    token = sh(host, "cat /etc/rancher/k3s/token").stdout.strip()
    try:
        sh(
            host,
            "systemctl stop k3s && echo another-token-of-32-characters-x > /etc/rancher/k3s/token",
        )
        started = sh(host, "timeout 120 systemctl start k3s", check=False)
        assert started.returncode != 0
        refused = standin_records(host, "refused.jsonl")
        assert "bootstrap data already found and encrypted with different token" in (
            refused[-1]["reason"])  # fmt: skip
    finally:
        sh(host, f"echo {token} > /etc/rancher/k3s/token && chmod 600 /etc/rancher/k3s/token")
        sh(host, "systemctl reset-failed k3s; timeout 120 systemctl start k3s")
    assert sh(host, "/usr/local/bin/k3s kubectl get --raw=/readyz").stdout.strip() == "ok"


def test_health_reads_embedded_etcd_where_k3s_serves_it(site, run_playbook, tmp_path):
    """Issue 17 defect 4: k3s's etcd answers JSON only on 127.0.0.1:2382 (2379 is gRPC)."""
    result = run_playbook("playbooks/health.yml", site["inventory"],
                          "-e", f"health_report_dir={tmp_path}")  # fmt: skip
    assert result.rc == 0, result.output[-5000:]
    report = json.loads((tmp_path / "report.json").read_text())
    datastore = next(s for s in report["sites"] if s["site"] == SITE)["datastore"]
    assert datastore["kind"] == "embedded" and datastore["source"] == "etcd", datastore
    assert datastore["leader"] in MASTERS, datastore
    assert sorted(m["name"] for m in datastore["members"]) == MASTERS
    assert datastore["alarms"] == []


def cluster_id(host: str) -> int:
    return etcdctl(host, "endpoint status")[0]["Status"]["header"]["cluster_id"]


def test_a_rebuilt_first_master_rejoins_the_running_cluster(site, run_playbook):
    """Issue 17 defect 1: the first master's disk is lost and the host rebuilt; site.yml must
    join it to the running cluster with the running token, not start a second cluster."""
    before, token = cluster_id(MASTERS[1]), sh(MASTERS[1], "cat /etc/rancher/k3s/token").stdout
    sh(MASTERS[0], "systemctl stop k3s && rm -rf /var/lib/rancher/k3s/server /etc/rancher/k3s")
    result = run_playbook("site.yml", site["inventory"], *SKIP_EDGE_AGENT)
    assert result.rc == 0, result.output[-5000:]
    for host in MASTERS:
        assert cluster_id(host) == before, host
        assert sh(host, "cat /etc/rancher/k3s/token").stdout == token, host
    members = etcdctl(MASTERS[1], "member list")["members"]
    assert sorted(m["name"].rsplit("-", 1)[0] for m in members) == MASTERS, members
    config = yaml.safe_load(sh(MASTERS[0], "cat /etc/rancher/k3s/config.yaml").stdout)
    assert "cluster-init" not in config and config["server"].endswith(":6443"), config
    # One datastore: the worker that joined before the rebuild is Ready as the rebuilt sees it.
    ready = 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'
    seen = sh(MASTERS[0], f"/usr/local/bin/k3s kubectl get node {WORKER} -o '{ready}'")
    assert seen.stdout.strip() == "True"


def test_second_run_changes_nothing(site, run_playbook):
    result = run_playbook("site.yml", site["inventory"], *SKIP_EDGE_AGENT)
    assert result.rc == 0, result.output[-5000:]
    stats = recap(result.output)
    assert set(stats) == {*MASTERS, WORKER}
    assert all(s["changed"] == 0 for s in stats.values()), stats


def test_upgrade_restarts_servers_one_at_a_time_then_workers(site, run_playbook):
    add_version(site["artifacts"], V2)
    before = {h: len(starts(h)) for h in [*MASTERS, WORKER]}
    result = run_playbook(
        "playbooks/upgrade.yml", site["inventory"],
        "-e", f"edgesite_k3s_version={V2}", "-e", "k3s_upgrade_drain=false",
    )  # fmt: skip
    assert result.rc == 0, result.output[-5000:]
    new_starts = []
    for host in [*MASTERS, WORKER]:
        records = starts(host)[before[host] :]
        assert [r["version"] for r in records] == [V2], host  # restarted exactly once
        new_starts.append(records[0]["started_ns"])
        assert V2 in sh(host, "/usr/local/bin/k3s --version").stdout
    assert new_starts == sorted(new_starts)
    # Strictly one at a time: each master's gate passed before the next master was touched.
    # Task headers only: a gate that retries under load also prints its name in a retry line.
    gates = [
        m.start()
        for m in re.finditer(r"^TASK \[.*Wait for the API to report ready", result.output, re.M)
    ]
    installs = [
        m.start() for m in re.finditer(r"^TASK \[.*Install the k3s binary", result.output, re.M)
    ]
    assert len(gates) == 3 and len(installs) >= 4
    assert installs[0] < gates[0] < installs[1] < gates[1] < installs[2] < gates[2]


def test_failed_health_check_stops_the_rollout(site, run_playbook):
    add_version(site["artifacts"], V3)
    sh(MASTERS[1], "touch /var/lib/rancher/k3s/standin/fail-health")
    try:
        result = run_playbook(
            "playbooks/upgrade.yml", site["inventory"],
            "-e", f"edgesite_k3s_version={V3}", "-e", "k3s_upgrade_drain=false",
        )  # fmt: skip
    finally:
        sh(MASTERS[1], "rm -f /var/lib/rancher/k3s/standin/fail-health")
    assert result.rc != 0
    assert "did not pass the health gate in this run; the site's rollout stops here" in (
        result.output
    )
    assert running_version(MASTERS[0]) == V3
    assert running_version(MASTERS[1]) == V3  # restarted, then failed its gate
    for host in (MASTERS[2], WORKER):  # never touched, binary included
        assert running_version(host) == V2
        assert V2 in sh(host, "/usr/local/bin/k3s --version").stdout


def test_reset_refuses_without_confirmation(site, run_playbook):
    result = run_playbook("playbooks/reset.yml", site["inventory"])
    assert result.rc != 0
    assert f"-e edgesite_reset_confirm={SITE}" in result.output
    for host in [*MASTERS, WORKER]:
        assert sh(host, "test -x /usr/local/bin/k3s", check=False).returncode == 0


LEFTOVERS = [
    "/usr/local/bin/k3s",
    "/etc/rancher",
    "/var/lib/rancher",
    "/etc/systemd/system/k3s.service",
    "/etc/systemd/system/k3s-agent.service",
    "/run/k3s",
    "/var/lib/kubelet",
]


def test_reset_leaves_nothing_behind(site, run_playbook):
    result = run_playbook(
        "playbooks/reset.yml", site["inventory"], "-e", f"edgesite_reset_confirm={SITE}"
    )
    assert result.rc == 0, result.output[-5000:]
    for host in [*MASTERS, WORKER]:
        left = sh(host, f"ls -d {' '.join(LEFTOVERS)} 2>/dev/null", check=False).stdout
        assert left == "", (host, left)
        units = sh(host, "systemctl list-unit-files 'k3s*' --no-legend", check=False).stdout
        assert units.strip() == "", (host, units)
        assert sh(host, "pgrep -f 'k3s (server|agent)'", check=False).returncode == 1
    assert not (site["kube"] / f"{SITE}.yaml").exists()
