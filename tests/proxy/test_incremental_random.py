"""Random service changes applied as nft deltas end in the table a fresh full sync builds.

Covers what the shape-based test cannot reach: many services sharing a few ClusterIPs (an
invalid cluster that still happens; first service in key order wins, as in a full sync),
node ports and external IPs coming and going, services deleted and re-created. Each step is
checked in the kernel: the incrementally updated namespace against a namespace built from
scratch with the same services.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid

import pytest

from edgesite_agent.proxy.config import ProxySettings
from edgesite_agent.proxy.model import ServicePortModel
from edgesite_agent.proxy.nft import NftBackend, merge
from edgesite_agent.proxy.runner import Runner
from tests.proxy.netns import in_own_namespace
from tests.proxy.test_sync_loop import _normalized

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft"),
]

STEPS = 25
SERVICES = 12


@pytest.fixture
def namespaces():
    names = [f"esrnd{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    yield names
    for name in names:
        subprocess.run(["ip", "netns", "del", name], check=False)


def service_port(rnd: random.Random, index: int, shared_ips: bool) -> ServicePortModel:
    ip = f"10.96.0.{rnd.randint(1, 5) if shared_ips else index + 1}"
    endpoints = tuple(
        dict.fromkeys(
            (f"10.244.{rnd.randint(0, 3)}.{rnd.randint(1, 40)}", 8080)
            for _ in range(rnd.randint(1, 4))
        )
    )
    node_port = rnd.choice([None, 30000 + (rnd.randint(0, 3) if shared_ips else index)])
    external = rnd.choice([(), (f"192.0.2.{rnd.randint(1, 3) if shared_ips else index + 1}",)])
    # Some endpoints on this node: hairpin elements, shared when services share endpoints.
    hairpin = tuple(ep_ip for ep_ip, _ in endpoints if ep_ip.startswith("10.244.0."))
    return ServicePortModel(
        f"ns/s{index}/tcp/p", "tcp", 80, (ip,), node_port, external, None,
        False, False, endpoints, (), hairpin,
    )  # fmt: skip


def check_random_deltas(seed: int, shared_ips: bool, node: str | None, fresh_ns: str) -> None:
    """The steps of the test; `node` None: the incremental side runs in the caller's own
    namespace, where the runner hears the kernel's commit reports (see nlcommit)."""
    rnd = random.Random(seed)
    settings = ProxySettings()
    node_prefix = ("ip", "netns", "exec", node) if node else ()
    incremental = NftBackend(settings, Runner(node_prefix))
    fragments = {
        f"s{i}": [incremental.fragment(service_port(rnd, i, shared_ips))] for i in range(8)
    }

    def all_fragments():
        return [f for key in sorted(fragments) for f in fragments[key]]

    incremental.sync(all_fragments, None, True)
    for step in range(STEPS):
        changes = {}
        for _ in range(rnd.randint(1, 3)):
            key = f"s{rnd.randint(0, SERVICES - 1)}"
            old = changes[key][0] if key in changes else fragments.get(key, [])
            if rnd.random() < 0.2:
                fragments.pop(key, None)
                new = []
            else:
                new = [incremental.fragment(service_port(rnd, int(key[1:]), shared_ips))]
                fragments[key] = new
            changes[key] = (old, new)
        incremental.sync(all_fragments, changes, False)

        wanted = merge(incremental.base, all_fragments())
        assert incremental.applied.picks == wanted.picks, step
        assert incremental.applied.elements == wanted.elements, step
        assert incremental.applied.chains == wanted.chains, step
        fresh_runner = Runner(("ip", "netns", "exec", fresh_ns))
        NftBackend(settings, fresh_runner).sync(all_fragments, None, True)
        # Read right after the apply returned: the change must already be in force.
        incremental_table = _normalized(Runner(node_prefix))
        assert incremental_table == _normalized(fresh_runner), f"step {step}: {changes}"


@pytest.mark.parametrize(("seed", "shared_ips"), [(1, True), (2, True), (3, False)])
def test_random_deltas_equal_a_fresh_full_sync(namespaces, seed, shared_ips):
    check_random_deltas(seed, shared_ips, namespaces[0], namespaces[1])


def test_random_deltas_in_the_runners_own_namespace(namespaces):
    """As deployed: no runner prefix, so each delta counts as applied at the kernel's commit
    report, before nft has exited; every step is still compared with the kernel."""
    in_own_namespace(
        "tests.proxy.test_incremental_random", "check_random_deltas", 4, True, None, namespaces[1]
    )
