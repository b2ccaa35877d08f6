"""The proxy's tool runner: real child processes (coreutils and sh), no packet filter."""

from __future__ import annotations

import os
import signal

import pytest

from edgesite_agent.proxy.runner import ApplyError, ChildTimeout, Runner


def test_input_output_and_exit_status() -> None:
    code, out, err = Runner().call(["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"], "abc\n")
    assert (code, out, err) == (3, "ABC\n", "oops\n")


def test_large_input_while_the_tool_answers_does_not_block() -> None:
    # 8 MiB through `cat`: more than both pipe buffers, so input and output must interleave.
    data = "x" * 1023 + "\n"
    out = Runner().run(["cat"], data * 8192)
    assert len(out) == 8 * 2**20 and out == data * 8192


def test_failure_is_an_apply_error_with_the_first_stderr_lines() -> None:
    with pytest.raises(ApplyError, match=r"exited 1: line 1 \| line 2"):
        Runner().run(["sh", "-c", "printf 'line 1\\nline 2\\n' >&2; exit 1"])


def test_missing_tool_is_an_apply_error() -> None:
    with pytest.raises(ApplyError, match="no-such-tool-edgesite"):
        Runner().run(["no-such-tool-edgesite"])


def test_timeout_kills_the_tool() -> None:
    with pytest.raises(ApplyError, match="passed"):
        Runner(timeout=0.5).run(["sleep", "30"])
    # Not waited for: the child is killed (SIGKILL) and reaped when its time is up.
    child = Runner().spawn(["sleep", "30"])
    try:
        with pytest.raises(ChildTimeout):
            child.communicate(timeout=0.5)
        assert child.returncode == -signal.SIGKILL
    finally:
        child.close()


def test_no_stdin_means_end_of_file_not_our_stdin() -> None:
    assert Runner().run(["cat"]) == ""


def test_streamed_input_through_the_child_pipe() -> None:
    child = Runner().spawn(["wc", "-c"])
    try:
        for _ in range(4):
            os.write(child.stdin_fd, b"12345")
        out, err = child.communicate(b"678", timeout=10)
    finally:
        child.close()
    assert (child.returncode, out.strip(), err) == (0, b"23", b"")


def test_the_tool_does_not_inherit_our_ignored_sigpipe() -> None:
    # `yes` dies of SIGPIPE once `head` is done; with SIGPIPE ignored (inherited from
    # Python, and a shell cannot un-ignore it) it gets EPIPE and complains on stderr.
    code, out, err = Runner(timeout=20).call(["sh", "-c", "yes | head -n 2; echo done"])
    assert (code, out, err) == (0, "y\ny\ndone\n", "")


def test_split_cpus_gives_the_tool_all_cpus_but_ours_and_restores() -> None:
    from edgesite_agent.proxy.runner import restore_cpus, split_cpus

    allowed = os.sched_getaffinity(0)
    child = Runner().spawn(["sleep", "30"])
    try:
        before = split_cpus(child.pid)
        if len(allowed) < 2:
            assert before is None
            return
        assert before == allowed
        assert os.sched_getaffinity(0) == {min(allowed)}
        assert os.sched_getaffinity(child.pid) == allowed - {min(allowed)}
        restore_cpus(before)
        assert os.sched_getaffinity(0) == allowed
    finally:
        restore_cpus(allowed)
        child.close()


def test_split_cpus_leaves_a_one_cpu_thread_alone() -> None:
    from edgesite_agent.proxy.runner import restore_cpus, split_cpus

    allowed = os.sched_getaffinity(0)
    child = Runner().spawn(["sleep", "30"])
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert split_cpus(child.pid) is None
        assert os.sched_getaffinity(child.pid) == allowed  # spawned before the pinning
    finally:
        restore_cpus(allowed)
        child.close()
