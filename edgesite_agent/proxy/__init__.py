"""kube-proxy-lite: Services and EndpointSlices to nftables or iptables rules.

The agent calls `build_proxy` with the "proxy" object of its configuration and feeds the
returned object with informer events (see edgesite_agent.events).
"""

from __future__ import annotations

from edgesite_agent.proxy.config import ProxySettings, parse_settings

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see events.py)
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from typing import Any


class DisabledProxy:
    """What `build_proxy` returns when `enabled` is false: accepts events, programs nothing."""

    def on_event(self, kind: str, event_type: Any, obj: dict[str, Any]) -> None:
        return None

    def on_synced(self, kind: str) -> None:
        return None

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def ready(self) -> bool:
        return True


def build_proxy(
    settings: dict[str, Any] | None,
    node_name: str,
    log: logging.Logger,
    after_sync: Callable[[], None] | None = None,
) -> Any:
    """Validate `settings` (ValueError naming the key) and build the proxy; call start().

    `after_sync` runs in the proxy's thread after each sync that changed the rules.
    """
    parsed = parse_settings(settings)
    if not node_name:
        raise ValueError("proxy: the node name is empty (needed to find local endpoints)")
    if not parsed.enabled:
        return DisabledProxy()
    from edgesite_agent.proxy.proxy import Proxy
    from edgesite_agent.proxy.runner import Runner

    prefix = ("ip", "netns", "exec", parsed.netns) if parsed.netns else ()
    return Proxy(parsed, node_name, log, Runner(prefix=prefix), after_sync)


__all__ = ["ProxySettings", "build_proxy", "parse_settings"]
