"""Choosing and constructing the packet backend."""

from __future__ import annotations

from edgesite_agent.proxy import iptables, nft
from edgesite_agent.proxy.config import ProxySettings
from edgesite_agent.proxy.runner import Runner

Backend = nft.NftBackend | iptables.IptablesBackend


def make_backend(settings: ProxySettings, runner: Runner, choice: str | None = None) -> Backend:
    """The configured backend; "auto" prefers nftables when nft >= 1.0 and the kernel has it."""
    choice = choice or settings.backend
    if choice == "auto":
        choice = "nftables" if nft.available(runner) else "iptables"
    if choice == "nftables":
        return nft.NftBackend(settings, runner)
    return iptables.IptablesBackend(settings, runner)


def cleanup_all(runner: Runner) -> list[str]:
    """Remove what either backend installed; names the backends that had something."""
    removed = []
    if nft.cleanup(runner):
        removed.append("nftables")
    if iptables.available(runner) and iptables.cleanup(runner):
        removed.append("iptables")
    return removed
