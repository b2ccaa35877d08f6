"""A real Proxy programming a test network namespace, for the dataplane tests."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from edgesite_agent.proxy.backends import cleanup_all
from edgesite_agent.proxy.config import IPTABLES_VARIANTS, parse_settings
from edgesite_agent.proxy.proxy import Proxy
from edgesite_agent.proxy.runner import Runner
from tests.proxy.shapes import NODE

# Fixture parameters: each backend, and iptables once more with the legacy binaries.
BACKENDS = ["nftables", "iptables", "iptables-legacy"]


@contextmanager
def running_proxy(param: str, netns: str, log_name: str) -> Iterator[tuple[Proxy, str]]:
    """A started, ready proxy with backend `param` (one of BACKENDS) programming `netns`;
    yields it with the iptables binary name of its variant. Stopped and everything it
    installed removed afterwards; skips when the backend's tool is not installed."""
    backend, variant = param, "system"
    if param == "iptables-legacy":
        backend, variant = "iptables", "legacy"
    tool = {"nftables": "nft", "iptables": f"{IPTABLES_VARIANTS[variant]}-restore"}[backend]
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")
    settings = parse_settings(
        {
            "backend": backend,
            "iptables_variant": variant,
            "min_sync_interval": 0.0,
            "cluster_cidrs": ["10.244.0.0/16"],
        }
    )
    runner = Runner(prefix=("ip", "netns", "exec", netns))
    proxy = Proxy(settings, NODE, logging.getLogger(log_name), runner)
    proxy.on_synced("Service")
    proxy.on_synced("EndpointSlice")
    proxy.start()
    try:
        assert proxy.wait_ready(20), proxy.last_error
        assert proxy._backend is not None and proxy._backend.name == backend
        yield proxy, IPTABLES_VARIANTS[variant]
    finally:
        proxy.stop()
        cleanup_all(runner)
