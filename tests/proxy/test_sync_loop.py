"""The sync loop against the real tools: batching into one apply, retry after failures."""

from __future__ import annotations

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
