"""Choosing and constructing the packet backend."""

from __future__ import annotations

from edgesite_agent.proxy import nft
from edgesite_agent.proxy.config import IPTABLES_VARIANTS, ProxySettings
from edgesite_agent.proxy.runner import Runner

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see events.py)
if TYPE_CHECKING:
    from edgesite_agent.proxy import iptables

    Backend = nft.NftBackend | iptables.IptablesBackend


def make_backend(settings: ProxySettings, runner: Runner, choice: str | None = None) -> Backend:
    """The configured backend; "auto" prefers nftables when nft >= 1.0 and the kernel has it."""
    choice = choice or settings.backend
    if choice == "auto":
        choice = "nftables" if nft.available(runner) else "iptables"
    if choice == "nftables":
        return nft.NftBackend(settings, runner)
    # Imported only when used: a node on nftables never loads the iptables renderer.
    from edgesite_agent.proxy import iptables

    binary = IPTABLES_VARIANTS[settings.iptables_variant]
    return iptables.IptablesBackend(settings, runner, binary)


def cleanup_all(runner: Runner) -> list[str]:
    """Remove what either backend installed; names the backends that had something."""
    removed = []
    if nft.cleanup(runner):
        removed.append("nftables")
    from edgesite_agent.proxy import iptables

    # Each variant has its own rules (legacy in x_tables, nft in nf_tables): clean both.
    seen = set()
    for binary in ("iptables", "iptables-nft", "iptables-legacy"):
        if iptables.available(runner, binary) and iptables.cleanup(runner, binary):
            seen.add("iptables")
    return removed + sorted(seen)
