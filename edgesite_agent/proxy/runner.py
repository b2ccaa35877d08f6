"""Runs the packet-filter tools (nft, iptables-restore ...), optionally inside a netns."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass


class ApplyError(RuntimeError):
    """A rules tool refused our input; the previous rules stay in place."""


@dataclass(frozen=True)
class Runner:
    # e.g. ("ip", "netns", "exec", "node") so tests and benchmarks program a namespace
    # they own instead of the host.
    prefix: tuple[str, ...] = ()
    timeout: float = 120.0

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
