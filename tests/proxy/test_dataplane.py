"""Real packets through the rules the proxy programs, for both backends.

A client namespace talks to ClusterIPs and NodePorts of a "node" namespace whose rules the
proxy maintains; backends in their own namespaces answer with their names.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from edgesite_agent.events import EventType
from edgesite_agent.proxy.proxy import Proxy
from tests.proxy.netns import BACKEND_PORT, NODE_IP, NODE_LISTENER_PORT, Topology
from tests.proxy.running import BACKENDS, running_proxy
from tests.proxy.shapes import NODE, endpoint, endpoint_slice, service, tcp

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2"),
]

PORTS = [tcp(80, "http")]
SLICE_PORTS = [tcp(BACKEND_PORT, "http"), {"name": "dns", "protocol": "UDP", "port": BACKEND_PORT}]


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    t = Topology(backends=3)
    t.create()
    try:
        yield t
    finally:
        t.destroy()


class Harness:
    def __init__(self, topo: Topology, proxy: Proxy, ipt: str) -> None:
        self.topo = topo
        self.proxy = proxy
        self.ipt = ipt  # iptables command of the variant under test

    def put(self, *objects: dict[str, Any]) -> None:
        for obj in objects:
            self.proxy.on_event(obj["kind"], EventType.MODIFIED, obj)
        assert self.proxy.wait_idle(20), f"rules not applied: {self.proxy.last_error}"

    def delete(self, obj: dict[str, Any]) -> None:
        self.proxy.on_event(obj["kind"], EventType.DELETED, obj)
        assert self.proxy.wait_idle(20), f"rules not applied: {self.proxy.last_error}"

    def eps(self, *indexes: int, nodes: dict[int, str] | None = None) -> list[dict[str, Any]]:
        nodes = nodes or {}
        return [endpoint(self.topo.backend_ip(i), node=nodes.get(i, NODE)) for i in indexes]


@pytest.fixture(scope="module", params=BACKENDS)
def harness(request: pytest.FixtureRequest, topo: Topology) -> Iterator[Harness]:
    with running_proxy(request.param, topo.node, "test.proxy") as (proxy, iptables):
        yield Harness(topo, proxy, iptables)


def test_clusterip_spreads_over_three_endpoints(harness: Harness) -> None:
    svc = service("web", "10.96.0.10", PORTS)
    harness.put(svc, endpoint_slice("web", harness.eps(0, 1, 2), SLICE_PORTS))
    results = harness.topo.requests("10.96.0.10", 80, 300)
    counts = Counter(results)
    assert set(counts) == {"backend-1", "backend-2", "backend-3"}, counts
    assert min(counts.values()) >= 45, f"an endpoint got under 15%: {counts}"


def _kernel_has_sctp() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(
    not _kernel_has_sctp(), reason="this kernel has no SCTP (socket: protocol not supported)"
)
def test_sctp_clusterip_spreads_over_endpoints(harness: Harness) -> None:
    ports = [{"name": "assoc", "protocol": "SCTP", "port": 3868}]
    slice_ports = [{"name": "assoc", "protocol": "SCTP", "port": BACKEND_PORT}]
    harness.put(
        service("diameter", "10.96.0.38", ports),
        endpoint_slice("diameter", harness.eps(0, 1, 2), slice_ports),
    )
    counts = Counter(harness.topo.requests("10.96.0.38", 3868, 90, proto="sctp"))
    assert set(counts) == {"backend-1", "backend-2", "backend-3"}, counts
    # An endpoint removed gets no new associations.
    harness.put(endpoint_slice("diameter", harness.eps(0, 1), slice_ports))
    counts = Counter(harness.topo.requests("10.96.0.38", 3868, 30, proto="sctp"))
    assert set(counts) == {"backend-1", "backend-2"}, counts


def test_removed_endpoint_gets_no_more_traffic(harness: Harness) -> None:
    svc = service("shrink", "10.96.0.11", PORTS)
    harness.put(svc, endpoint_slice("shrink", harness.eps(0, 1, 2), SLICE_PORTS))
    assert "backend-3" in harness.topo.requests("10.96.0.11", 80, 60)
    harness.put(endpoint_slice("shrink", harness.eps(0, 1), SLICE_PORTS))
    counts = Counter(harness.topo.requests("10.96.0.11", 80, 60))
    assert set(counts) == {"backend-1", "backend-2"}, counts


def test_udp_clusterip(harness: Harness) -> None:
    svc = service("dns", "10.96.0.53", [{"name": "dns", "protocol": "UDP", "port": 53}])
    harness.put(svc, endpoint_slice("dns", harness.eps(1), SLICE_PORTS))
    assert harness.topo.requests("10.96.0.53", 53, 5, proto="udp") == ["backend-2"] * 5


def test_udp_flow_moves_when_its_endpoint_is_removed(harness: Harness) -> None:
    svc = service("syslog", "10.96.0.54", [{"name": "dns", "protocol": "UDP", "port": 514}])
    harness.put(svc, endpoint_slice("syslog", harness.eps(0), SLICE_PORTS))
    client = harness.topo.udp_session("10.96.0.54", 514)
    assert client.stdin is not None and client.stdout is not None
    try:

        def ask() -> str:
            client.stdin.write("go\n")  # type: ignore[union-attr]
            client.stdin.flush()  # type: ignore[union-attr]
            return client.stdout.readline().strip()  # type: ignore[union-attr]

        assert ask() == "backend-1"
        # backend-1 leaves the service but keeps running: only conntrack cleanup moves the
        # flow (same socket, same 5-tuple) to the new endpoint.
        harness.put(endpoint_slice("syslog", harness.eps(1), SLICE_PORTS))
        assert ask() == "backend-2"
    finally:
        client.kill()
        client.wait(timeout=10)


def test_nodeport(harness: Harness) -> None:
    svc = service("np", "10.96.0.20", [tcp(80, "http", nodePort=30080)], type="NodePort")
    harness.put(svc, endpoint_slice("np", harness.eps(0, 1, 2), SLICE_PORTS))
    counts = Counter(harness.topo.requests(NODE_IP, 30080, 60))
    assert set(counts) == {"backend-1", "backend-2", "backend-3"}, counts


def test_external_ip_and_load_balancer_ingress_ip(harness: Harness) -> None:
    svc = service(
        "lb",
        "10.96.0.60",
        PORTS,
        type="LoadBalancer",
        externalIPs=["192.0.2.10"],
        status={"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}},
    )
    harness.put(svc, endpoint_slice("lb", harness.eps(0, 1, 2), SLICE_PORTS))
    for ip in ("192.0.2.10", "198.51.100.7"):
        counts = Counter(harness.topo.requests(ip, 80, 45))
        assert set(counts) == {"backend-1", "backend-2", "backend-3"}, (ip, counts)
    harness.put(endpoint_slice("lb", harness.eps(1), SLICE_PORTS))
    for ip in ("192.0.2.10", "198.51.100.7"):
        assert set(harness.topo.requests(ip, 80, 10)) == {"backend-2"}, ip


def test_client_ip_affinity_sticks(harness: Harness) -> None:
    svc = service(
        "sticky",
        "10.96.0.40",
        PORTS,
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 300}},
    )
    harness.put(svc, endpoint_slice("sticky", harness.eps(0, 1, 2), SLICE_PORTS))
    results = harness.topo.requests("10.96.0.40", 80, 40)
    assert len(results) == 40 and len(set(results)) == 1, Counter(results)
    assert results[0].startswith("backend-")


def test_service_without_endpoints_is_refused(harness: Harness) -> None:
    port = NODE_LISTENER_PORT
    # Without the service, the node's own listener on that port answers.
    assert harness.topo.requests(NODE_IP, port, 1) == ["node-itself"]
    svc = service("empty", "10.96.0.70", [tcp(80, "http", nodePort=port)], type="NodePort")
    harness.put(svc)
    # A short timeout: a hang would show up as "timeout", a reject as "refused".
    assert harness.topo.requests("10.96.0.70", 80, 3, timeout=3.0) == ["refused"] * 3
    assert harness.topo.requests(NODE_IP, port, 3, timeout=3.0) == ["refused"] * 3
    # Endpoints appear: the same service now answers.
    harness.put(endpoint_slice("empty", harness.eps(2), SLICE_PORTS))
    assert harness.topo.requests("10.96.0.70", 80, 3) == ["backend-3"] * 3
    assert harness.topo.requests(NODE_IP, port, 3) == ["backend-3"] * 3
    harness.delete(svc)


def test_deleted_service_stops_answering(harness: Harness) -> None:
    svc = service("gone", "10.96.0.80", PORTS)
    eps = endpoint_slice("gone", harness.eps(0), SLICE_PORTS)
    harness.put(svc, eps)
    assert harness.topo.requests("10.96.0.80", 80, 2) == ["backend-1"] * 2
    harness.delete(svc)
    harness.delete(eps)
    results = harness.topo.requests("10.96.0.80", 80, 2, timeout=1.0)
    assert not any(r.startswith("backend-") for r in results), results


def test_external_traffic_policy_local_uses_only_local_endpoints(harness: Harness) -> None:
    svc = service(
        "local",
        "10.96.0.21",
        [tcp(80, "http", nodePort=30081)],
        type="NodePort",
        externalTrafficPolicy="Local",
    )
    # Only backend-1 runs on this node; backends 2 and 3 are on another one.
    harness.put(
        svc,
        endpoint_slice(
            "local", harness.eps(0, 1, 2, nodes={1: "edge-2", 2: "edge-2"}), SLICE_PORTS
        ),
    )
    assert set(harness.topo.requests(NODE_IP, 30081, 60)) == {"backend-1"}
    # The ClusterIP keeps the cluster-wide policy.
    counts = Counter(harness.topo.requests("10.96.0.21", 80, 90))
    assert set(counts) == {"backend-1", "backend-2", "backend-3"}, counts


def _add_foreign_rules(harness: Harness, nft: bool) -> None:
    """Someone else's rules in the same namespace (we must never touch them); idempotent."""
    runner = harness.proxy.runner
    if nft:
        runner.run(["nft", "add table ip other; add chain ip other c; flush chain ip other c; "
                    "add rule ip other c accept"])  # fmt: skip
    else:
        runner.run([harness.ipt, "-w", "-N", "OTHER-CHAIN"], check=False)
        runner.run([harness.ipt, "-w", "-F", "OTHER-CHAIN"])
        runner.run([harness.ipt, "-w", "-A", "OTHER-CHAIN", "-j", "ACCEPT"])


def test_full_resync_repairs_drift_and_keeps_foreign_rules(harness: Harness) -> None:
    runner = harness.proxy.runner
    nft = harness.proxy._backend is not None and harness.proxy._backend.name == "nftables"
    _add_foreign_rules(harness, nft)
    svc = service("drift", "10.96.0.90", PORTS)
    harness.put(svc, endpoint_slice("drift", harness.eps(0), SLICE_PORTS))
    assert harness.topo.requests("10.96.0.90", 80, 2) == ["backend-1"] * 2
    # Drift: an operator flushes our dispatch rules; the service stops working.
    if nft:
        runner.run(["nft", "flush", "map", "ip", "edgesite", "service-ips"])
    else:
        runner.run([harness.ipt, "-w", "-t", "nat", "-F", "ESITE-SERVICES"])
    assert "backend-1" not in harness.topo.requests("10.96.0.90", 80, 1, timeout=1.0)
    harness.proxy.resync()
    assert harness.proxy.wait_idle(20), harness.proxy.last_error
    assert harness.topo.requests("10.96.0.90", 80, 2) == ["backend-1"] * 2
    listing = runner.run(["nft", "list", "ruleset"] if nft else [f"{harness.ipt}-save"])
    assert "table ip other" in listing if nft else "-A OTHER-CHAIN -j ACCEPT" in listing
    if not nft:
        # Repeated full syncs never duplicate our jumps from the built-in chains.
        harness.proxy.resync()
        assert harness.proxy.wait_idle(20), harness.proxy.last_error
        from edgesite_agent.proxy.iptables import HOOKS

        saved = runner.run([f"{harness.ipt}-save"])
        assert saved.count("--comment edgesite-proxy") == len(HOOKS), saved


def test_failed_update_keeps_previous_rules_then_recovers(harness: Harness) -> None:
    runner = harness.proxy.runner
    nft = harness.proxy._backend is not None and harness.proxy._backend.name == "nftables"
    harness.put(
        service("steady", "10.96.0.91", PORTS),
        endpoint_slice("steady", harness.eps(1), SLICE_PORTS),
    )
    # Drift that makes the next incremental update fail in the kernel.
    new = [service("later", "10.96.0.92", PORTS)]
    if nft:
        # The chain a service without endpoints jumps to disappears.
        runner.run(["nft", "flush", "map", "ip", "edgesite", "no-endpoint-services"])
        runner.run(["nft", "flush", "map", "ip", "edgesite", "no-endpoint-nodeports"])
        runner.run(["nft", "delete", "chain", "ip", "edgesite", "reject-chain"])
        expected = ["refused"] * 2
    else:
        # The masquerade check chain a new service chain jumps to disappears.
        for line in runner.run([f"{harness.ipt}-save", "-t", "nat"]).splitlines():
            if line.startswith("-A ") and line.endswith("-j ESITE-MASQ-CHECK"):
                runner.run([harness.ipt, "-w", "-t", "nat", "-D", *line[3:].split()])
        runner.run([harness.ipt, "-w", "-t", "nat", "-F", "ESITE-MASQ-CHECK"])
        runner.run([harness.ipt, "-w", "-t", "nat", "-X", "ESITE-MASQ-CHECK"])
        new.append(endpoint_slice("later", harness.eps(2), SLICE_PORTS))
        expected = ["backend-3"] * 2
    failures = harness.proxy.stats["failures"]
    for obj in new:
        harness.proxy.on_event(obj["kind"], EventType.ADDED, obj)
    deadline = time.monotonic() + 10
    while harness.proxy.stats["failures"] == failures and time.monotonic() < deadline:
        time.sleep(0.01)
    assert harness.proxy.stats["failures"] > failures, "the update should have failed"
    # The failed transaction changed nothing: the existing service still answers.
    assert harness.topo.requests("10.96.0.91", 80, 2) == ["backend-2"] * 2
    # The retry (after backoff) is a full sync: it repairs the drift and applies the update.
    assert harness.proxy.wait_idle(20), harness.proxy.last_error
    assert harness.topo.requests("10.96.0.92", 80, 2, timeout=2.0) == expected


def test_cleanup_removes_ours_only(harness: Harness) -> None:
    from edgesite_agent.proxy.backends import cleanup_all

    runner = harness.proxy.runner
    nft = harness.proxy._backend is not None and harness.proxy._backend.name == "nftables"
    _add_foreign_rules(harness, nft)
    harness.put(service("web", "10.96.0.10", PORTS),
                endpoint_slice("web", harness.eps(0, 1, 2), SLICE_PORTS))  # fmt: skip
    harness.proxy.stop()  # the rules stay when the agent stops ...
    assert all(r.startswith("backend-") for r in harness.topo.requests("10.96.0.10", 80, 3))
    assert cleanup_all(runner) == [harness.proxy._backend.name]  # type: ignore[union-attr]
    # ... and go with `proxy cleanup`.
    results = harness.topo.requests("10.96.0.10", 80, 2, timeout=1.0)
    assert not any(r.startswith("backend-") for r in results), results
    if nft:
        listing = runner.run(["nft", "list", "ruleset"])
        assert "edgesite" not in listing and "table ip other" in listing
        runner.run(["nft", "delete", "table", "ip", "other"])
    else:
        listing = runner.run([f"{harness.ipt}-save"])
        assert "ESITE-" not in listing and "-A OTHER-CHAIN -j ACCEPT" in listing
        assert "ESITE-" not in runner.run([f"{harness.ipt}-save", "-t", "nat"])
    assert cleanup_all(runner) == []
