"""Offline rendering: a list of Kubernetes objects -> the rules text of one backend."""

from __future__ import annotations

from edgesite_agent.proxy import nft
from edgesite_agent.proxy.cache import ObjectCache, parse_service, parse_slice
from edgesite_agent.proxy.config import ProxySettings
from edgesite_agent.proxy.model import ServicePortModel, build_model

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see events.py)
if TYPE_CHECKING:
    from typing import Any


def object_key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or ''}"


def load_cache(objects: list[dict[str, Any]]) -> ObjectCache:
    cache = ObjectCache()
    for obj in objects:
        if obj.get("kind") == "Service":
            cache.set_service(object_key(obj), parse_service(obj))
        elif obj.get("kind") == "EndpointSlice":
            cache.set_slice(object_key(obj), parse_slice(obj))
    return cache


def service_ports(
    objects: list[dict[str, Any]], node_name: str, settings: ProxySettings
) -> list[ServicePortModel]:
    model = build_model(
        load_cache(objects), node_name, settings.keep_local_endpoints_when_disconnected
    )
    return [sp for ports in model.values() for sp in ports]


def render(
    objects: list[dict[str, Any]], backend: str, node_name: str, settings: ProxySettings
) -> str:
    ports = service_ports(objects, node_name, settings)
    if backend in ("nft", "nftables"):
        # The very text a full sync streams into nft for these objects.
        frags = [nft.render_fragment(sp, settings) for sp in ports]
        return nft.ruleset_text(nft.base_state(settings), frags)
    if backend == "iptables":
        from edgesite_agent.proxy import iptables  # its code is not loaded on nftables nodes

        frags = [iptables.render_fragment(sp, settings) for sp in ports]
        return iptables.render_text(iptables.merge(settings, frags))
    raise ValueError(f"unknown backend {backend!r} (nft or iptables)")
