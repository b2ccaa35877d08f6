"""The sync loop against the real tools: batching into one apply, retry after failures."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time

import pytest

from edgesite_agent.events import EventType
from edgesite_agent.proxy.config import parse_settings
from edgesite_agent.proxy.proxy import Proxy
from edgesite_agent.proxy.runner import Runner
from tests.proxy.shapes import SHAPES

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft"),
]


def _feed(proxy: Proxy) -> None:
    for objs in SHAPES.values():
        for obj in objs:
            proxy.on_event(obj["kind"], EventType.ADDED, obj)


def test_failed_apply_is_retried_until_it_works() -> None:
    ns = f"es{os.getpid() % 100000}-late"
    # The namespace the rules go to does not exist yet: every apply fails for real.
    runner = Runner(prefix=("ip", "netns", "exec", ns))
    settings = parse_settings({"backend": "nftables", "min_sync_interval": 0.0})
    proxy = Proxy(settings, "edge-1", logging.getLogger("test"), runner)
    _feed(proxy)
    proxy.on_synced("Service")
    proxy.on_synced("EndpointSlice")
    proxy.start()
    try:
        deadline = time.monotonic() + 10
        while proxy.stats["failures"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proxy.stats["failures"] >= 1 and not proxy.ready()
        assert proxy.last_error and ns in proxy.last_error
        subprocess.run(["ip", "netns", "add", ns], check=True)
        # Backoff: 1 s, 2 s, 4 s ... (+-10 %): a success must come within a few retries.
        assert proxy.wait_ready(15), proxy.last_error
        listing = runner.run(["nft", "list", "table", "ip", "edgesite"])
        assert "10.96.0.10 . tcp . 80" in listing
    finally:
        proxy.stop()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_burst_of_events_is_batched_into_few_applies() -> None:
    ns = f"es{os.getpid() % 100000}-batch"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    runner = Runner(prefix=("ip", "netns", "exec", ns))
    settings = parse_settings({"backend": "nftables", "min_sync_interval": 0.5})
    proxy = Proxy(settings, "edge-1", logging.getLogger("test"), runner)
    try:
        proxy.on_synced("Service")
        proxy.on_synced("EndpointSlice")
        proxy.start()
        assert proxy.wait_ready(10), proxy.last_error
        before = proxy.stats["syncs"]
        _feed(proxy)  # ~20 events at once
        assert proxy.wait_idle(10), proxy.last_error
        # One apply for the whole burst (two if the burst straddled a sync), not one per event.
        assert 1 <= proxy.stats["syncs"] - before <= 2
        assert "10.96.0.53 . udp . 53" in runner.run(["nft", "list", "table", "ip", "edgesite"])
    finally:
        proxy.stop()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _normalized(runner: Runner) -> dict:
    """Our table as the kernel has it, without handles, set elements as sorted lists."""
    data = json.loads(runner.run(["nft", "-j", "list", "table", "ip", "edgesite"]))
    chains: dict[str, list] = {}
    sets: dict[str, list] = {}
    for item in data["nftables"]:
        if "rule" in item:
            chains.setdefault(item["rule"]["chain"], []).append(item["rule"]["expr"])
        elif "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "set" in item or "map" in item:
            body = item.get("set") or item.get("map")
            elems = body.get("elem", [])
            sets[body["name"]] = sorted(json.dumps(e, sort_keys=True) for e in elems)
    return {"chains": chains, "sets": sets}


def test_incremental_updates_equal_a_fresh_full_sync() -> None:
    """Many small changes applied as deltas end in exactly the table a full sync builds."""
    from edgesite_agent.proxy.nft import NftBackend
    from edgesite_agent.proxy.render import service_ports
    from tests.proxy.shapes import endpoint, endpoint_slice, service, tcp

    tag = f"es{os.getpid() % 100000}"
    ns_inc, ns_full = f"{tag}-inc", f"{tag}-full"
    settings = parse_settings(
        {"backend": "nftables", "min_sync_interval": 0.0, "cluster_cidrs": ["10.244.0.0/16"]}
    )
    for ns in (ns_inc, ns_full):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    inc = Runner(prefix=("ip", "netns", "exec", ns_inc))
    proxy = Proxy(settings, "edge-1", logging.getLogger("test"), inc)
    objects = {(o["kind"], o["metadata"]["name"]): o for objs in SHAPES.values() for o in objs}

    def put(obj: dict) -> None:
        objects[(obj["kind"], obj["metadata"]["name"])] = obj
        proxy.on_event(obj["kind"], EventType.MODIFIED, obj)
        assert proxy.wait_idle(10), proxy.last_error

    def drop(kind: str, name: str) -> None:
        obj = objects.pop((kind, name))
        proxy.on_event(kind, EventType.DELETED, obj)
        assert proxy.wait_idle(10), proxy.last_error

    try:
        for obj in objects.values():
            proxy.on_event(obj["kind"], EventType.ADDED, obj)
        proxy.on_synced("Service")
        proxy.on_synced("EndpointSlice")
        proxy.start()
        assert proxy.wait_ready(10), proxy.last_error
        full_syncs = proxy.stats["full_syncs"]
        # Two services share the local endpoint 10.244.1.5 (one hairpin element).
        put(service("twin", "10.96.5.1", [tcp(80, "http")]))
        put(endpoint_slice("twin", [endpoint("10.244.1.5")], [tcp(8080, "http")]))
        drop("Service", "web")  # ... the element must stay for "twin"
        drop("EndpointSlice", "web-abcde")
        put(endpoint_slice("sticky", [endpoint("10.244.1.12"), endpoint("10.244.1.13")],
                           [tcp(8080, "http")]))  # fmt: skip
        put(endpoint_slice("empty", [endpoint("10.244.1.20")], [tcp(8080, "http")]))
        put(endpoint_slice("np", [], [tcp(8080, "http")]))  # now without endpoints: reject
        npl = dict(objects[("Service", "npl")])
        npl["spec"] = dict(npl["spec"], externalTrafficPolicy="Cluster")
        put(npl)
        drop("Service", "dns")
        assert proxy.stats["full_syncs"] == full_syncs, "the changes should go as deltas"

        fresh = NftBackend(settings, Runner(prefix=("ip", "netns", "exec", ns_full)))
        ports = service_ports(list(objects.values()), "edge-1", settings)
        fresh.apply(fresh.render([fresh.fragment(sp) for sp in ports]), full=True)
        assert _normalized(inc) == _normalized(fresh.runner)
    finally:
        proxy.stop()
        for ns in (ns_inc, ns_full):
            subprocess.run(["ip", "netns", "del", ns], check=False)
