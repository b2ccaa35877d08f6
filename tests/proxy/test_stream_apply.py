"""The streamed full sync (nft parses while we render) is still one atomic transaction.

Real nft in a network namespace created here: a ruleset that is refused at its very end, or
a stream that stops half-way (what the kernel does to our pipe when the agent dies), must
leave the rules already in the kernel exactly as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from edgesite_agent.proxy.config import parse_settings
from edgesite_agent.proxy.nft import FullApply, NftBackend, list_existing
from edgesite_agent.proxy.render import service_ports
from edgesite_agent.proxy.runner import ApplyError, Runner
from tests.proxy.netns import in_own_namespace
from tests.proxy.shapes import NODE, SHAPES, endpoint, endpoint_slice, service, tcp

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft"),
]

SETTINGS = parse_settings({"backend": "nftables", "cluster_cidrs": ["10.244.0.0/16"]})


@pytest.fixture
def runner() -> Iterator[Runner]:
    ns = f"es{os.getpid() % 100000}-stream"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        yield Runner(prefix=("ip", "netns", "exec", ns))
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _fragments(backend: NftBackend, objects: list[dict]) -> list:
    return [backend.fragment(sp) for sp in service_ports(objects, NODE, SETTINGS)]


def _many(count: int) -> list[dict]:
    """`count` services with 10 endpoints each: a ruleset far larger than one pipe read."""
    out = []
    for s in range(count):
        name = f"bulk-{s}"
        eps = [endpoint(f"10.244.{s // 25}.{s % 25 * 10 + e + 1}") for e in range(10)]
        out.append(service(name, f"10.96.{100 + s // 250}.{s % 250}", [tcp(80, "http")]))
        out.append(endpoint_slice(name, eps, [tcp(8080, "http")]))
    return out


def _table(runner: Runner) -> list:
    data = json.loads(runner.run(["nft", "-j", "list", "table", "ip", "edgesite"]))
    return sorted(json.dumps(item, sort_keys=True) for item in data["nftables"])


def _programmed(runner: Runner) -> tuple[NftBackend, list]:
    backend = NftBackend(SETTINGS, runner)
    cpus = os.sched_getaffinity(0)
    session = backend.begin_full()
    for frag in _fragments(backend, SHAPES["clusterip"] + SHAPES["affinity"]):
        session.add([frag])
    assert session.finish() == "full"
    # The sync thread had one CPU while nft had the others (split_cpus): all back now.
    assert os.sched_getaffinity(0) == cpus
    before = _table(runner)
    assert any("10.96.0.10" in item for item in before)
    return backend, before


def test_syntax_error_at_the_end_changes_nothing(runner: Runner) -> None:
    backend, before = _programmed(runner)
    cpus = os.sched_getaffinity(0)
    session = backend.begin_full()
    for frag in _fragments(backend, _many(300)):
        session.add([frag])
    # Everything valid so far (and mostly parsed by now); the error is the last line.
    session._send("\tthis is not nft\n")
    with pytest.raises(ApplyError, match="syntax error"):
        session.finish()
    assert os.sched_getaffinity(0) == cpus  # given back on failure too
    # Neither the streamed transaction nor the recreate retry (same text) applied anything.
    assert _table(runner) == before
    assert backend.applied is None  # the next sync is a full one again


def test_stream_cut_short_applies_nothing(runner: Runner) -> None:
    backend, before = _programmed(runner)
    session = backend.begin_full()
    for frag in _fragments(backend, _many(300)):
        session.add([frag])
    os.set_blocking(session.fd, True)
    session._pump()  # all of it written except the closing brace ...
    time.sleep(0.3)  # ... and parsed up to there by nft
    proc = session.proc
    assert proc is not None and proc.poll() is None, "nft must still wait for the end"
    session._close()  # end of input, as when the agent dies: the kernel closes our pipe
    _, err = proc.communicate(timeout=60)
    session.abort()
    assert proc.returncode != 0 and b"end of file" in err, err
    assert _table(runner) == before


def test_leftovers_of_a_previous_run_are_deleted(runner: Runner) -> None:
    """A restarted agent has no memory of what it programmed: a full sync still ends with
    exactly its own chains and sets, also when a chain was added to our table by hand."""
    _programmed(runner)  # with an affinity service: own chains and sets
    runner.run(["nft", "add chain ip edgesite by-hand; add rule ip edgesite by-hand accept"])
    old_chains, old_sets = list_existing(runner)
    assert "by-hand" in old_chains and any(n.startswith("aff-") for n in old_sets)
    restarted = NftBackend(SETTINGS, runner)
    session = FullApply(restarted)
    for frag in _fragments(restarted, SHAPES["clusterip"]):
        session.add([frag])
    session.finish()
    assert restarted.applied is not None
    chains, sets = list_existing(runner)
    assert chains == set(restarted.applied.chains)
    assert sets == set(restarted.applied.sets)
    assert "by-hand" not in chains and not any(n.startswith("aff-") for n in sets)
    # And it is the table a sync into an empty namespace builds.
    fresh = NftBackend(SETTINGS, runner)
    runner.run(["nft", "delete", "table", "ip", "edgesite"])
    fresh.apply(fresh.render(_fragments(fresh, SHAPES["clusterip"])), full=True)
    assert set(fresh.applied.chains) == chains  # type: ignore[union-attr]


def own_namespace_checks() -> None:
    """Run by the test below inside `unshare --net`: the runner has no prefix there, so the
    netlink check for our table is used (absent: no reset, no listing)."""
    import socket

    from edgesite_agent.proxy.nlprobe import table_exists

    runner = Runner()
    assert table_exists(socket.AF_INET, "edgesite") is False
    # Fresh namespace and a stream cut short: no table appears at all.
    backend = NftBackend(SETTINGS, runner)
    session = backend.begin_full()
    for frag in _fragments(backend, _many(50)):
        session.add([frag])
    session._send("\tthis is not nft\n")
    try:
        session.finish()
        raise AssertionError("a broken ruleset was accepted")
    except ApplyError:
        pass
    assert table_exists(socket.AF_INET, "edgesite") is False
    # Fresh namespace, good ruleset: the block alone creates the table.
    _programmed(runner)
    assert table_exists(socket.AF_INET, "edgesite") is True
    # The table exists now: the next full sync resets it and deletes what is not wanted.
    runner.run(["nft", "add chain ip edgesite by-hand"])
    restarted = NftBackend(SETTINGS, runner)
    restarted.apply(restarted.render(_fragments(restarted, SHAPES["clusterip"])), full=True)
    chains, sets = list_existing(runner)
    assert restarted.applied is not None
    assert chains == set(restarted.applied.chains) and sets == set(restarted.applied.sets)


def test_fresh_namespace_without_runner_prefix() -> None:
    in_own_namespace("tests.proxy.test_stream_apply", "own_namespace_checks", timeout=120)
