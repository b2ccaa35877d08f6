"""Runs the packet-filter tools (nft, iptables-restore ...), optionally inside a netns."""

from __future__ import annotations

import os
import subprocess

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


class ApplyError(RuntimeError):
    """A rules tool refused our input; the previous rules stay in place."""


class Runner:
    """How to run the tools. A plain class: dataclasses would cost the agent ~0.6 MiB."""

    __slots__ = ("prefix", "timeout")

    def __init__(self, prefix: tuple[str, ...] = (), timeout: float = 120.0) -> None:
        # e.g. ("ip", "netns", "exec", "node") so tests and benchmarks program a namespace
        # they own instead of the host.
        self.prefix = prefix
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Runner(prefix={self.prefix!r}, timeout={self.timeout!r})"

    def run(self, argv: list[str], stdin: str | None = None, check: bool = True) -> str:
        return self.call(argv, stdin, check)[1]

    def call(
        self, argv: list[str], stdin: str | None = None, check: bool = False
    ) -> tuple[int, str, str]:
        """(exit code, stdout, stderr); raises ApplyError only if `check` and it failed."""
        try:
            proc = subprocess.run(
                [*self.prefix, *argv],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ApplyError(f"{argv[0]}: {exc}") from exc
        if check and proc.returncode != 0:
            err = proc.stderr.strip().splitlines()
            # The first lines name the offending input line; thousands of lines help nobody.
            raise ApplyError(f"{' '.join(argv)} exited {proc.returncode}: {' | '.join(err[:6])}")
        return proc.returncode, proc.stdout, proc.stderr

    def spawn(self, argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start a tool without waiting for it (streamed input, work overlapped with ours)."""
        try:
            return subprocess.Popen([*self.prefix, *argv], **popen)
        except OSError as exc:
            raise ApplyError(f"{argv[0]}: {exc}") from exc


def which(name: str) -> str | None:
    """shutil.which for a bare command name, without importing shutil (~0.35 MiB: it pulls
    in fnmatch, bz2 and lzma)."""
    for folder in (os.environ.get("PATH") or os.defpath).split(os.pathsep):
        path = os.path.join(folder or ".", name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None
