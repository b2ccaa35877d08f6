"""reset.yml removes what k3s's killall/uninstall scripts remove, and the external etcd (issue 17,
defect 5).

One master and one worker on podman test hosts, edgesite_datastore external (real etcd from
Debian on the master). The hosts' `k3s` is the TEST STAND-IN, which starts no containers: the
leftovers a real k3s leaves (k3s install.sh, create_killall / create_uninstall) are made by hand
before the reset, each as k3s or its CNI would make it: a containerd shim under the data dir with
a child, a tmpfs under /run/k3s and under /var/lib/kubelet/pods, a cni- network namespace, cni0
with a pod veth, flannel.1, KUBE-/CNI-/flannel iptables and ip6tables rules, /var/lib/cni,
/etc/rancher/node, the kubectl link and the unit env file. Then each item is listed and none may
be left; a rule of another owner must be kept; a second reset changes nothing.
Tests in this module run in order against one set of hosts.
"""

from __future__ import annotations

import pytest

from k3s.site_hosts import changed_tasks, recap, sh, stand_up, tear_down

NAME = "rstleft"
SITE = "reset-leftovers"
MASTER = f"edgesite-{NAME}-m1"
WORKER = f"edgesite-{NAME}-w1"
HOSTS = [MASTER, WORKER]
V1 = "v1.36.4+k3s1"
SKIP_EDGE_AGENT = ("--skip-tags", "edge_agent")
RESET = ("-e", f"edgesite_reset_confirm={SITE}")

pytestmark = [pytest.mark.podman, pytest.mark.root]

# What a real k3s node holds after running pods, made by hand (the stand-in runs no pods).
LEFTOVERS = r"""
set -e
D=/var/lib/rancher/k3s
mkdir -p $D/data/0123abcd/bin
cp /bin/dash $D/data/0123abcd/bin/containerd-shim-runc-v2
setsid -f $D/data/0123abcd/bin/containerd-shim-runc-v2 -c 'sleep 3601 & wait' \
    </dev/null >/dev/null 2>&1
mkdir -p /run/k3s/containerd/io.containerd.grpc.v1.cri/sandboxes/0123/shm
mount -t tmpfs shm /run/k3s/containerd/io.containerd.grpc.v1.cri/sandboxes/0123/shm
mkdir -p /var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~empty-dir/cache
mount -t tmpfs tmpfs /var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~empty-dir/cache
mkdir -p /var/lib/kubelet/plugins/csi && touch /var/lib/kubelet/plugins/csi/socket
ip netns add cni-0123abcd-0000-1111-2222-333344445555
ip link add cni0 type bridge
ip link add veth0123 type veth peer name eth0 netns cni-0123abcd-0000-1111-2222-333344445555
ip link set veth0123 master cni0
ip link add flannel.1 type vxlan id 1 dstport 8472 2>/dev/null \
    || ip link add flannel.1 type dummy
for x in iptables ip6tables; do
    $x -N KUBE-FIREWALL && $x -A INPUT -j KUBE-FIREWALL
    $x -N CNI-FORWARD && $x -A FORWARD -j CNI-FORWARD
    $x -t nat -N FLANNEL-POSTRTG && $x -t nat -A POSTROUTING -j FLANNEL-POSTRTG
    $x -A FORWARD -m comment --comment "flanneld forward" -j ACCEPT
    $x -N OPERATOR-KEEP && $x -A INPUT -j OPERATOR-KEEP
done
mkdir -p /var/lib/cni/networks/cbr0
echo 10.42.0.2 > /var/lib/cni/networks/cbr0/last_reserved_ip.0
mkdir -p /etc/rancher/node && echo secret > /etc/rancher/node/password
ln -sf k3s /usr/local/bin/kubectl
touch /etc/systemd/system/k3s.service.env /etc/systemd/system/k3s-agent.service.env
"""

PATHS = [
    "/usr/local/bin/k3s",
    "/usr/local/bin/kubectl",
    "/etc/rancher",
    "/var/lib/rancher",
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/run/k3s",
    "/run/flannel",
    "/run/netns/cni-0123abcd-0000-1111-2222-333344445555",
    "/etc/systemd/system/k3s.service",
    "/etc/systemd/system/k3s.service.env",
    "/etc/systemd/system/k3s-agent.service",
    "/etc/systemd/system/k3s-agent.service.env",
]
ETCD_PATHS = ["/etc/systemd/system/etcd.service", "/var/lib/etcd/edgesite", "/etc/etcd"]


def leftovers(host: str) -> dict[str, str]:
    """Every item k3s's scripts remove that is still on the host (empty values: none)."""

    def out(script: str) -> str:
        return sh(host, script, check=False).stdout.strip()

    return {
        "paths": out(f"ls -d {' '.join(PATHS)} 2>/dev/null"),
        "shim processes": out("pgrep -af '[c]ontainerd-shim|[s]leep 3601'"),
        "mounts": out(
            "findmnt -rn -o TARGET | grep -E '^(/run/k3s|/var/lib/kubelet|/run/netns/cni-)'"
        ),
        "cni netns": out("ip netns list | grep cni-"),
        "interfaces": out(
            "for i in cni0 veth0123 flannel.1; do ip -o link show $i 2>/dev/null; done"
        ),
        "iptables": out("iptables-save | grep -E 'KUBE-|CNI-' ; iptables-save | grep -i flannel"),
        "ip6tables": out(
            "ip6tables-save | grep -E 'KUBE-|CNI-' ; ip6tables-save | grep -i flannel"
        ),
        "units": out("systemctl list-unit-files 'k3s*' --no-legend"),
    }


def etcd_leftovers(host: str) -> dict[str, str]:
    def out(script: str) -> str:
        return sh(host, script, check=False).stdout.strip()

    return {
        "paths": out(f"ls -d {' '.join(ETCD_PATHS)} 2>/dev/null"),
        "active": out("systemctl is-active etcd"),
        "enabled": out("systemctl is-enabled etcd"),
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rstleft")
    hosts = stand_up(
        NAME, 1, 1, tmp, V1,
        edgesite_site=SITE,
        edgesite_datastore="external",
        k3s_server_kubeconfig_dir=str(tmp / "kube"),
        k3s_server_health_delay=1,
        k3s_server_health_retries=10,
        k3s_agent_health_delay=1,
    )  # fmt: skip
    yield hosts
    tear_down(hosts)


def test_site_up_with_external_etcd(site, run_playbook):
    result = run_playbook("site.yml", site.inventory, *SKIP_EDGE_AGENT)
    assert result.rc == 0, result.output[-5000:]
    assert sh(MASTER, "systemctl is-active etcd").stdout.strip() == "active"
    for host in HOSTS:
        made = sh(host, LEFTOVERS, check=False)
        assert made.returncode == 0, (host, made.stderr)
        found = leftovers(host)
        # Every item is there before the reset, so the test below proves its removal.
        assert all(found[k] for k in found if k != "units"), (host, found)
    assert all(etcd_leftovers(MASTER).values())


def test_reset_in_check_mode_changes_nothing(site, run_playbook):
    before = {h: leftovers(h) for h in HOSTS}
    result = run_playbook("playbooks/reset.yml", site.inventory, *RESET, "--check", "--diff")
    assert result.rc == 0, result.output[-5000:]
    for host in HOSTS:
        now = leftovers(host)
        assert now == before[host], host
    assert sh(MASTER, "systemctl is-active etcd").stdout.strip() == "active"


def test_reset_leaves_none_of_what_k3s_uninstall_removes(site, run_playbook):
    result = run_playbook("playbooks/reset.yml", site.inventory, *RESET)
    assert result.rc == 0, result.output[-5000:]
    for host in HOSTS:
        found = {k: v for k, v in leftovers(host).items() if v}
        assert found == {}, (host, found)
        # Rules of other owners are restored as they were.
        for xtables in ("iptables", "ip6tables"):
            rules = sh(host, f"{xtables}-save").stdout
            assert "-A INPUT -j OPERATOR-KEEP" in rules, (host, xtables, rules)


def test_reset_removes_the_external_etcd(site):
    assert etcd_leftovers(MASTER) == {"paths": "", "active": "inactive", "enabled": "disabled"}


def test_second_reset_changes_nothing(site, run_playbook):
    result = run_playbook("playbooks/reset.yml", site.inventory, *RESET)
    assert result.rc == 0, result.output[-5000:]
    stats = recap(result.output)
    assert all(stats[h]["changed"] == 0 for h in HOSTS), changed_tasks(result.output)
