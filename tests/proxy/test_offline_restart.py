"""Edge autonomy end to end: the agent restarted with the API down rebuilds the rules.

The agent runs as its own process (`python -m edgesite_agent run`) against the TLS test API
server (tests/kubeapi), with its proxy programming the node namespace of a real-packet
topology. After a first sync the agent stops, the API goes down, the rules are removed (as a
reboot would), and the agent starts again: traffic must work from the store alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgesite_agent.proxy.backends import cleanup_all
from edgesite_agent.proxy.runner import Runner
from tests.proxy.netns import BACKEND_PORT, Topology
from tests.proxy.shapes import NODE, endpoint, endpoint_slice, service, tcp

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="the test API needs openssl"),
]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def topo() -> Iterator[Topology]:
    t = Topology(backends=3)
    t.create()
    try:
        yield t
    finally:
        t.destroy()


def _agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edgesite_agent", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            cwd=str(REPO),
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _serves(topo: Topology, attempts: int) -> list[str]:
    """Poll until the ClusterIP answers (bounded); returns the answers of a 60-request run."""
    for _ in range(attempts):
        if topo.requests("10.96.0.10", 80, 1, timeout=0.5)[0].startswith("backend-"):
            return topo.requests("10.96.0.10", 80, 60)
        time.sleep(0.05)
    return []


def test_agent_restarted_offline_programs_rules_from_its_store(
    topo: Topology, tmp_path: Path
) -> None:
    from tests.kubeapi import KubeAPIServer, Options, certs

    tls = tmp_path / "pki"
    tls.mkdir()
    certs.ensure_ca(tls)
    certs.server_cert(tls)
    api = KubeAPIServer(tls, options=Options(bookmark_interval=0.2))
    api.start()
    runner = Runner(prefix=("ip", "netns", "exec", topo.node))
    log = tmp_path / "agent.log"
    agent = None
    try:
        ca = tls / "ca.crt"
        kubelet = certs.write_kubeconfig(
            tmp_path / "kubelet.kubeconfig", api.url, ca, certs.node_cert(tls, NODE)
        )
        kproxy = certs.write_kubeconfig(
            tmp_path / "kube-proxy.kubeconfig", api.url, ca, certs.proxy_cert(tls)
        )
        api.upsert("nodes", {"metadata": {"name": NODE}, "spec": {}})
        api.upsert("services", service("web", "10.96.0.10", [tcp(80, "http")]))
        eps = [endpoint(topo.backend_ip(i)) for i in range(3)]
        api.upsert("endpointslices", endpoint_slice("web", eps, [tcp(BACKEND_PORT, "http")]))
        config = tmp_path / "agent.json"
        config.write_text(
            json.dumps(
                {
                    "node_name": NODE,
                    "store_path": str(tmp_path / "state" / "store.db"),
                    "listen_address": "127.0.0.1",
                    "listen_port": 0,
                    "kubeconfig": str(kubelet),
                    "proxy_kubeconfig": str(kproxy),
                    "connect_timeout_s": 1,
                    "proxy": {
                        "enabled": True,
                        "backend": "nftables",
                        "netns": topo.node,
                        "cluster_cidrs": ["10.244.0.0/16"],
                    },
                }
            )
        )
        # 1. Online: the agent syncs from the API, stores the objects, programs the rules.
        agent = _agent(config, log)
        first = _serves(topo, attempts=400)
        assert set(first) == {"backend-1", "backend-2", "backend-3"}, log.read_text()[-3000:]
        # Rules can be programmed before every kind is stored; stop only once the agent says
        # it holds a complete state (its /readyz), as an operator's reboot would not wait for.
        _wait_ready(log)
        _stop(agent)

        # 2. The masters become unreachable and the node reboots: no API, no rules.
        api.stop()
        assert cleanup_all(runner) == ["nftables"]
        assert topo.requests("10.96.0.10", 80, 1, timeout=0.5)[0] != "backend-1"

        # 3. The agent starts again, offline: the store alone brings the service back.
        started = time.monotonic()
        agent = _agent(config, log)
        again = _serves(topo, attempts=400)
        took = time.monotonic() - started
        counts = Counter(again)
        assert set(counts) == {"backend-1", "backend-2", "backend-3"}, log.read_text()[-3000:]
        # A figure for the report, not an assertion (timing targets live in benchmarks/).
        print(f"offline restart: traffic served {took:.2f} s after the agent process started")
        assert agent.poll() is None, "the agent must keep running while the API is down"
    finally:
        if agent is not None:
            _stop(agent)
        api.stop()
        cleanup_all(runner)


def _wait_ready(log: Path, timeout_s: float = 120) -> None:
    """Until the agent's local API answers /readyz 200 (every kind synced and stored)."""
    import re
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"local API listening on (\S+)", log.read_text())
        if found:
            try:
                with urllib.request.urlopen(found.group(1) + "/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.2)
    raise AssertionError("the agent never became ready: " + log.read_text()[-3000:])
