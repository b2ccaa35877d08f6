"""Runs the packet-filter tools (nft, iptables-restore ...), optionally inside a netns.

Child processes are started with `os.posix_spawnp` and driven through their pipes here
rather than through `subprocess`: that module imports `locale` (whose alias tables alone
are ~0.25 MiB) and costs the long-running agent ~0.4 MiB for the three things the proxy
needs: feed a tool its input, collect its output and exit status, give up after a timeout.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import threading
import time

from edgesite_agent.proxy.nlcommit import CommitWatch


class ApplyError(RuntimeError):
    """A rules tool refused our input; the previous rules stay in place."""


class ChildTimeout(Exception):
    """A child did not finish within its timeout (it has been killed)."""


_READ = 65536


class Child:
    """One running tool with pipes on its stdin, stdout and stderr.

    `stdin_fd` is ours to write to (and close) directly, so input can be streamed while
    the tool already works on it; `communicate` sends what is left, collects the output
    and reaps the process.
    """

    __slots__ = ("_err", "_out", "pid", "returncode", "stdin_fd")

    def __init__(self, argv: list[str]) -> None:
        in_r, self.stdin_fd = os.pipe()  # non-inheritable: only the dup2'd ends reach it
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self._out, self._err = out_r, err_r
        self.returncode: int | None = None
        try:
            self.pid = os.posix_spawnp(
                argv[0],
                argv,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, in_r, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
                # Python ignores SIGPIPE; an ignored signal would stay ignored in the tool.
                setsigdef=(signal.SIGPIPE,),
            )
        except BaseException:
            for fd in (self.stdin_fd, out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)

    def close_stdin(self) -> None:
        if self.stdin_fd >= 0:
            fd, self.stdin_fd = self.stdin_fd, -1
            os.close(fd)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            # It may exit between the poll and the kill.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        """Kills the tool if it still runs, reaps it and closes every pipe."""
        self.close_stdin()
        self._close_outputs()
        self.kill()
        self.wait(5)  # a tool stuck in the kernel stays a zombie rather than blocking us

    def communicate(
        self, data: bytes = b"", timeout: float = 120.0, commit: CommitWatch | None = None
    ) -> tuple[bytes, bytes]:
        """Writes `data` and closes stdin, reads stdout and stderr to their end, reaps.

        Writing and reading go through one selector, so a tool that answers while it still
        reads its input can never block us (or itself). Raises ChildTimeout after killing
        the tool when it takes longer than `timeout` seconds. With `commit`, returns as
        soon as the kernel reports the tool's nftables commit, the tool still running
        (`returncode` None): the output so far is returned, the rest is the caller's.
        """
        deadline = time.monotonic() + timeout
        out: list[bytes] = []
        err: list[bytes] = []
        view = memoryview(data)
        with selectors.DefaultSelector() as sel:
            if self.stdin_fd >= 0:
                if view:
                    os.set_blocking(self.stdin_fd, False)
                    sel.register(self.stdin_fd, selectors.EVENT_WRITE)
                else:
                    self.close_stdin()
            sel.register(self._out, selectors.EVENT_READ, out)
            sel.register(self._err, selectors.EVENT_READ, err)
            if commit is not None:
                sel.register(commit.fileno(), selectors.EVENT_READ, commit)
            while len(sel.get_map()) > (commit is not None):
                left = deadline - time.monotonic()
                if left <= 0:
                    self.close()
                    raise ChildTimeout(f"{timeout:g} s passed")
                for key, _ in sel.select(left):
                    if commit is not None and key.data is commit:
                        if commit.committed_by(self.pid):
                            return b"".join(out), b"".join(err)
                        continue
                    if key.fd == self.stdin_fd:
                        view = self._write_some(view)
                        if not view:
                            sel.unregister(key.fd)
                            self.close_stdin()
                        continue
                    chunk = os.read(key.fd, _READ)
                    if chunk:
                        key.data.append(chunk)
                    else:
                        sel.unregister(key.fd)
        self._close_outputs()
        if self.wait(max(0.0, deadline - time.monotonic())) is None:
            self.close()
            raise ChildTimeout(f"{timeout:g} s passed")
        return b"".join(out), b"".join(err)

    def _close_outputs(self) -> None:
        for attr in ("_out", "_err"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)

    def _write_some(self, view: memoryview) -> memoryview:
        try:
            sent = os.write(self.stdin_fd, view)
        except BlockingIOError:
            return view
        except BrokenPipeError:  # the tool stopped reading: its status and stderr say why
            return view[:0]
        return view[sent:]


class Runner:
    """How to run the tools. A plain class: dataclasses would cost the agent ~0.6 MiB."""

    __slots__ = ("_watch", "late_error", "prefix", "timeout")

    def __init__(self, prefix: tuple[str, ...] = (), timeout: float = 120.0) -> None:
        # e.g. ("ip", "netns", "exec", "node") so tests and benchmarks program a namespace
        # they own instead of the host.
        self.prefix = prefix
        self.timeout = timeout
        self._watch: CommitWatch | bool | None = None  # False: cannot watch here
        # A tool that exited non-zero after its commit was reported (never seen; nft's
        # status is decided before it cleans up): the caller must not trust its state.
        self.late_error: str | None = None

    def __repr__(self) -> str:
        return f"Runner(prefix={self.prefix!r}, timeout={self.timeout!r})"

    def run(self, argv: list[str], stdin: str | None = None, check: bool = True) -> str:
        return self.call(argv, stdin, check)[1]

    def call(
        self,
        argv: list[str],
        stdin: str | None = None,
        check: bool = False,
        commit: CommitWatch | None = None,
    ) -> tuple[int, str, str]:
        """(exit code, stdout, stderr); raises ApplyError only if `check` and it failed.

        With `commit` (started by the caller), returns 0 and the output so far as soon as
        the kernel reports the tool's commit; a short-lived thread reaps the tool.
        """
        child = self.spawn(argv)
        try:
            out, err = child.communicate((stdin or "").encode(), self.timeout, commit)
        except (OSError, ChildTimeout) as exc:
            child.close()
            raise ApplyError(f"{argv[0]}: {exc}") from exc
        code = child.returncode
        if code is None:  # committed; the tool is still cleaning up
            threading.Thread(
                target=self._reap, args=(child, argv), name="tool-reaper", daemon=True
            ).start()
            code = 0
        else:
            child.close()
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if check:
            self._check(argv, code, stderr)
        return code, stdout, stderr

    @staticmethod
    def _check(argv: list[str], code: int, stderr: str) -> None:
        if code != 0:
            lines = stderr.strip().splitlines()
            # The first lines name the offending input line; thousands of lines help nobody.
            raise ApplyError(f"{' '.join(argv)} exited {code}: {' | '.join(lines[:6])}")

    def apply(self, argv: list[str], stdin: str) -> None:
        """Run a rules tool that must succeed; done once the kernel has committed its change.

        The tool's exit can come a grace period later (see nlcommit; `call` reaps it in
        the background). Without a commit report (a failure, no change at all, iptables
        legacy, a tool in another namespace) this is `run`: its exit status decides.
        One apply at a time per runner (the proxy's sync thread).
        """
        watch = self._commit_watch()
        if watch is None:
            self.run(argv, stdin)
            return
        watch.start()  # before the tool exists: its commit cannot come too early
        try:
            self.call(argv, stdin, check=True, commit=watch)
        finally:
            watch.stop()

    def _reap(self, child: Child, argv: list[str]) -> None:
        try:
            _, err = child.communicate(b"", self.timeout)
        except (OSError, ChildTimeout) as exc:
            err = str(exc).encode()
        finally:
            child.close()
        try:
            self._check(argv, child.returncode or 0, err.decode(errors="replace"))
        except ApplyError as exc:
            self.late_error = str(exc)

    def _commit_watch(self) -> CommitWatch | None:
        if self._watch is None:
            # A prefixed tool runs in another network namespace, whose commits we cannot see.
            try:
                self._watch = CommitWatch() if not self.prefix else False
            except OSError:
                self._watch = False
        return self._watch or None

    def spawn(self, argv: list[str]) -> Child:
        """Start a tool without waiting for it (streamed input, work overlapped with ours)."""
        try:
            return Child([*self.prefix, *argv])
        except OSError as exc:
            raise ApplyError(f"{argv[0]}: {exc}") from exc


def split_cpus(pid: int) -> set[int] | None:
    """Run process `pid` on all of this thread's CPUs but one, and this thread on that one.

    For a tool that reads what this thread is still writing (a streamed full sync): the
    kernel wakes a pipe's reader on its writer's CPU, so nft and the renderer would share
    one core while the others idle (measured at 1k services: nft done ~10 ms later).
    Returns the thread's CPU set to give back with `restore_cpus`; None when there is
    nothing to split (one CPU) or the kernel refuses.
    """
    try:
        allowed = os.sched_getaffinity(0)
        if len(allowed) < 2:
            return None
        mine = min(allowed)
        os.sched_setaffinity(pid, allowed - {mine})
        os.sched_setaffinity(0, {mine})  # 0: this thread only, not the whole agent
    except OSError:  # the tool already exited, or a restricted environment
        return None
    return allowed


def restore_cpus(allowed: set[int] | None) -> None:
    if allowed is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, allowed)


def which(name: str) -> str | None:
    """shutil.which for a bare command name, without importing shutil (~0.35 MiB: it pulls
    in fnmatch, bz2 and lzma)."""
    for folder in (os.environ.get("PATH") or os.defpath).split(os.pathsep):
        path = os.path.join(folder or ".", name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None
