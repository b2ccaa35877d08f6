"""An nft change counts as applied at the kernel's commit report, never before, never lost.

Runs in a namespace of its own (`unshare --net`): the runner then has no prefix, as on a
node, and listens for commits; the host's namespace and rules are never touched.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from edgesite_agent.proxy.config import ProxySettings
from edgesite_agent.proxy.nft import NftBackend
from edgesite_agent.proxy.runner import ApplyError, Runner
from tests.proxy.netns import in_own_namespace

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft"),
]

SETUP = """\
add table ip cw
add map ip cw endpoints { type ipv4_addr . inet_service : ipv4_addr . inet_service ; }
add element ip cw endpoints { 10.96.0.1 . 80 : 10.244.0.1 . 8080 }
add element ip cw endpoints { 10.96.0.2 . 80 : 10.244.0.2 . 8080 }
add chain ip cw pick
add rule ip cw pick counter
"""


def _table(runner: Runner) -> str:
    return runner.run(["nft", "list", "table", "ip", "cw"])


def _zombies() -> list[int]:
    """Children of this process that have exited but were not reaped."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            found.append(int(entry))
    return found


def own_namespace_checks() -> None:
    import select

    from edgesite_agent.proxy.nlcommit import CommitWatch

    runner = Runner()
    # The watch reports the commit of the process it was asked about, and only that one.
    watch = CommitWatch()
    watch.start()
    child = runner.spawn(["nft", "-f", "-"])
    child.communicate(SETUP.encode(), 30)
    seen_other = False
    while select.select([watch], [], [], 0.2)[0]:  # every message that nft's run caused
        seen_other = watch.committed_by(os.getpid()) or seen_other
    watch.stop()
    assert child.returncode == 0 and not seen_other
    watch.start()
    child = runner.spawn(["nft", "add", "chain", "ip", "cw", "second"])
    mine = False
    deadline = time.monotonic() + 10
    while not mine and time.monotonic() < deadline:
        if select.select([watch], [], [], 1)[0]:
            mine = watch.committed_by(child.pid)
    watch.stop()
    child.communicate(b"", 30)
    assert mine, "the commit of our own nft was not reported"

    # Deletions are what make nft linger after its commit: each change must be in the
    # kernel the moment apply returns.
    runner.apply(["nft", "-f", "-"], "delete element ip cw endpoints { 10.96.0.1 . 80 }\n")
    assert "10.96.0.1" not in _table(runner)
    runner.apply(
        ["nft", "-f", "-"],
        "flush chain ip cw pick\nadd rule ip cw pick drop\n"
        "delete element ip cw endpoints { 10.96.0.2 . 80 }\n"
        "add element ip cw endpoints { 10.96.0.3 . 80 : 10.244.0.3 . 8080 }\n",
    )
    table = _table(runner)
    assert "drop" in table and "counter" not in table
    assert "10.96.0.2" not in table and "10.96.0.3 . 80 : 10.244.0.3 . 8080" in table

    # A refused change is an error naming the cause, and changes nothing.
    before = _table(runner)
    try:
        runner.apply(
            ["nft", "-f", "-"],
            "add element ip cw endpoints { 10.96.0.9 . 80 : 10.244.0.9 . 8080 }\n"
            "delete element ip cw endpoints { 10.96.0.7 . 80 }\n",
        )
        raise AssertionError("a delete of a missing element was accepted")
    except ApplyError as exc:
        assert "No such file or directory" in str(exc), exc
    assert _table(runner) == before

    # Nothing to commit: no report comes, the tool's exit decides.
    runner.apply(["nft", "-f", "-"], "add table ip cw\n")
    assert _table(runner) == before

    # Every tool that outlived its commit report gets reaped.
    deadline = time.monotonic() + 10
    while _zombies() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _zombies(), "exited nft processes were left unreaped"
    assert runner.late_error is None

    # A tool that fails after its commit report: the proxy's next sync must not trust
    # the kernel state (full sync) and reports why.
    late = runner.spawn(["sh", "-c", "echo 'cleanup failed' >&2; exit 3"])
    runner._reap(late, ["nft", "-f", "-"])
    backend = NftBackend(ProxySettings(), runner)
    backend.applied = backend.base
    try:
        backend.sync(list, {}, False)
        raise AssertionError("a late failure went unnoticed")
    except ApplyError as exc:
        assert "exited 3: cleanup failed" in str(exc), exc
    assert backend.applied is None and runner.late_error is None


def test_changes_are_in_force_when_apply_returns() -> None:
    in_own_namespace("tests.proxy.test_commit_watch", "own_namespace_checks", timeout=120)
