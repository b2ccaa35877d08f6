"""What a k3s site relies on after the etcd role ran on three masters."""

import json
from pathlib import Path

import pytest
import yaml

PKI = "/etc/etcd/pki"
REPO = Path(__file__).resolve().parents[3]
SITE_DEFAULTS = yaml.safe_load((REPO / "roles/edgesite/defaults/main.yml").read_text())
ETCDCTL = (
    f"ETCDCTL_API=3 etcdctl --cacert {PKI}/ca.crt --cert {PKI}/client.crt --key {PKI}/client.key "
    "--endpoints https://127.0.0.1:2379"
)

# Runs on the test host with its python3: one HTTPS request, optionally with the client cert.
PROBE = r"""
import http.client, ssl, sys
ctx = ssl.create_default_context(cafile="/etc/etcd/pki/ca.crt")
if sys.argv[2] == "cert":
    ctx.load_cert_chain("/etc/etcd/pki/client.crt", "/etc/etcd/pki/client.key")
try:
    conn = http.client.HTTPSConnection("127.0.0.1", 2379, timeout=5, context=ctx)
    conn.request("GET", sys.argv[1])
    print(conn.getresponse().status)
except (ssl.SSLError, OSError) as exc:
    print("refused", type(exc).__name__)
"""


def probe(host, path, cert):
    host.run("cat > /tmp/probe.py <<'EOF'\n" + PROBE + "\nEOF")
    return host.check_output(f"python3 /tmp/probe.py {path} {cert}").strip()


def first_host_only(host):
    # Cluster-wide facts look the same from every member; checking them once keeps verify fast.
    if host.backend.get_hostname() != "etcd-1":
        pytest.skip("cluster-wide check, done from etcd-1")


def test_three_healthy_members_and_one_leader(host):
    first_host_only(host)
    members = json.loads(host.check_output(f"{ETCDCTL} member list -w json"))["members"]
    assert len(members) == 3
    assert not any(m.get("isLearner") for m in members)
    status = json.loads(host.check_output(f"{ETCDCTL} endpoint status --cluster -w json"))
    assert len(status) == 3
    leaders = {s["Status"]["leader"] for s in status}
    assert len(leaders) == 1
    assert sum(1 for s in status if s["Status"]["header"]["member_id"] in leaders) == 1
    health = json.loads(host.check_output(f"{ETCDCTL} endpoint health --cluster -w json"))
    assert [h["health"] for h in health] == [True, True, True]


def test_v2_api_answers_404(host):
    first_host_only(host)
    assert probe(host, "/v2/keys", "cert") == "404"


def test_client_without_certificate_is_refused(host):
    first_host_only(host)
    assert probe(host, "/v3/cluster/member/list", "nocert").startswith("refused")


def test_member_running_with_private_keys(host):
    # One remote command per host: every testinfra call is a full ansible round trip.
    out = host.check_output(
        "systemctl is-active etcd; systemctl is-enabled etcd; "
        f"stat -c '%n %a %U' {PKI}/server.key {PKI}/peer.key {PKI}/client.key"
    ).splitlines()
    assert out[:2] == ["active", "enabled"]
    for line in out[2:]:
        name, mode, user = line.split()
        assert (mode, user) == ("600", "etcd"), name


def test_config_file_not_command_line(host):
    out = host.check_output(
        "cat /etc/etcd/etcd.conf.yml; echo ====; cat /etc/systemd/system/etcd.service"
    )
    config, unit = out.split("====")
    assert "enable-v2: false" in config
    assert config.count('"client-cert-auth": true') == 2  # clients and peers
    # The role ran without the edgesite role here: the profile still comes from its one
    # definition (roles/edgesite defaults), edge profile and lan timing.
    rendered = yaml.safe_load(config)
    wanted = (
        SITE_DEFAULTS["edgesite_etcd_profiles"]["edge"]
        | SITE_DEFAULTS["edgesite_etcd_networks"]["lan"]
    )
    assert {key: rendered[key] for key in wanted} == wanted
    assert rendered["snapshot-count"] == 2000
    assert "--config-file /etc/etcd/etcd.conf.yml" in unit


def test_tarball_member_runs_the_release_binary(host):
    # etcd-3 was installed from the release tarball: its unit and its running process use
    # /usr/local/bin/etcd, and Debian's package is not there at all.
    if host.backend.get_hostname() != "etcd-3":
        pytest.skip("the tarball member is etcd-3")
    out = host.check_output(
        "systemctl show -p ExecStart --value etcd; "
        "readlink /proc/$(systemctl show -p MainPID --value etcd)/exe; "
        "/usr/local/bin/etcd --version | head -1; /usr/local/bin/etcdctl version | head -1; "
        "test -e /usr/bin/etcd && echo debian-etcd || echo no-debian-etcd; "
        "stat -c '%a %U' /usr/local/bin/etcd"
    ).splitlines()
    assert "/usr/local/bin/etcd --config-file /etc/etcd/etcd.conf.yml" in out[0]
    assert out[1] == "/usr/local/bin/etcd"
    assert out[2].startswith("etcd Version: 3.")
    assert out[3].startswith("etcdctl version: 3.")
    assert out[4:] == ["no-debian-etcd", "755 root"]
