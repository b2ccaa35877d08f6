"""What a k3s node relies on after the prereq role ran."""

import pytest

PACKAGES = ["iptables", "nftables", "conntrack", "ca-certificates"]
SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.ipv6.conf.all.forwarding": 1,
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
}


@pytest.mark.parametrize("name", PACKAGES)
def test_package_installed(host, name):
    assert host.package(name).is_installed


@pytest.mark.parametrize(("key", "value"), SYSCTLS.items())
def test_sysctl_active(host, key, value):
    assert host.sysctl(key) == value


@pytest.mark.parametrize("key", SYSCTLS)
def test_sysctl_persisted(host, key):
    conf = host.file("/etc/sysctl.d/90-edgesite.conf")
    assert conf.exists
    assert f"{key}=1" in conf.content_string.replace(" ", "")


def test_bridge_netfilter_present(host):
    # br_netfilter's function, built in or loaded, is what pod traffic needs.
    assert host.file("/proc/sys/net/bridge/bridge-nf-call-iptables").exists


def test_overlay_present(host):
    assert "overlay" in host.file("/proc/filesystems").content_string


def test_no_active_swap(host):
    swaps = host.file("/proc/swaps").content_string.strip().splitlines()
    assert len(swaps) == 1  # header only


def test_nft_usable(host):
    assert host.run("nft list tables").rc == 0
