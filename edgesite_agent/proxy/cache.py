"""Compact in-memory copy of the Services and EndpointSlices the proxy needs.

Only the fields that change packet rules are kept (as tuples), so thousands of
services cost little memory next to the agent's SQLite store, and an object
update that does not touch those fields does not trigger a sync.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

SERVICE_PROXY_NAME = "service.kubernetes.io/service-proxy-name"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds, the Kubernetes API default


@dataclass(frozen=True)
class SvcPort:
    name: str
    protocol: str  # "tcp" | "udp" | "sctp"
    port: int
    node_port: int | None


@dataclass(frozen=True)
class ServiceInfo:
    namespace: str
    name: str
    cluster_ips: tuple[str, ...]
    ports: tuple[SvcPort, ...]
    external_ips: tuple[str, ...]  # spec.externalIPs + status.loadBalancer.ingress[].ip
    affinity_timeout: int | None
    internal_local: bool
    external_local: bool


@dataclass(frozen=True)
class EndpointInfo:
    ip: str
    ready: bool
    serving: bool
    terminating: bool
    node: str | None


@dataclass(frozen=True)
class SliceInfo:
    namespace: str
    service: str
    ports: tuple[tuple[str, str, int], ...]  # (name, protocol, port)
    endpoints: tuple[EndpointInfo, ...]


def _ipv4(value: Any) -> str | None:
    # IPv4 only for now: an IPv6 family would need an ip6 table / ip6tables.
    if not isinstance(value, str) or not value:
        return None
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    return str(addr) if addr.version == 4 else None


def parse_service(obj: dict[str, Any]) -> ServiceInfo | None:
    """The proxy's view of a Service, or None when the proxy must ignore it."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    if SERVICE_PROXY_NAME in (meta.get("labels") or {}):
        return None  # another proxy implementation owns it
    if spec.get("type") == "ExternalName":
        return None
    raw_ips = spec.get("clusterIPs") or [spec.get("clusterIP")]
    if spec.get("clusterIP") == "None" or "None" in raw_ips:
        return None  # headless: DNS only, no virtual IP
    cluster_ips = tuple(ip for ip in (_ipv4(v) for v in raw_ips) if ip)
    ports = []
    for p in spec.get("ports") or []:
        proto = str(p.get("protocol") or "TCP").lower()
        port = p.get("port")
        if proto not in ("tcp", "udp", "sctp") or not isinstance(port, int):
            continue
        node_port = p.get("nodePort")
        ports.append(
            SvcPort(
                name=str(p.get("name") or ""),
                protocol=proto,
                port=port,
                node_port=node_port if isinstance(node_port, int) and node_port > 0 else None,
            )
        )
    externals = [_ipv4(v) for v in spec.get("externalIPs") or []]
    for ingress in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if (ingress.get("ipMode") or "VIP") == "VIP":  # "Proxy" mode: the LB does the DNAT
            externals.append(_ipv4(ingress.get("ip")))
    affinity = None
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
            "timeoutSeconds"
        )
        affinity = cfg if isinstance(cfg, int) and cfg > 0 else DEFAULT_AFFINITY_TIMEOUT
    return ServiceInfo(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        cluster_ips=cluster_ips,
        ports=tuple(ports),
        external_ips=tuple(dict.fromkeys(ip for ip in externals if ip)),
        affinity_timeout=affinity,
        internal_local=spec.get("internalTrafficPolicy") == "Local",
        external_local=spec.get("externalTrafficPolicy") == "Local",
    )


def parse_slice(obj: dict[str, Any]) -> SliceInfo | None:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    service = labels.get(SERVICE_NAME_LABEL)
    if not service or SERVICE_PROXY_NAME in labels or obj.get("addressType") != "IPv4":
        return None
    ports = []
    for p in obj.get("ports") or []:
        port = p.get("port")
        if isinstance(port, int):
            ports.append((str(p.get("name") or ""), str(p.get("protocol") or "TCP").lower(), port))
    endpoints = []
    for ep in obj.get("endpoints") or []:
        addresses = ep.get("addresses") or []
        ip = _ipv4(addresses[0]) if addresses else None
        if ip is None:
            continue
        cond = ep.get("conditions") or {}
        # As kube-proxy: an unknown (absent) ready/serving condition counts as true.
        ready = cond.get("ready") is not False
        serving = cond.get("serving", ready) is not False
        endpoints.append(
            EndpointInfo(
                ip=ip,
                ready=ready,
                serving=serving,
                terminating=cond.get("terminating") is True,
                node=ep.get("nodeName"),
            )
        )
    # Sorted and unique here, once per slice event, so that building a service from a
    # single slice needs neither; the first of duplicated addresses wins, ready ones first.
    unique: dict[str, EndpointInfo] = {}
    for ep in sorted(endpoints, key=lambda e: (e.ip, not e.ready)):
        unique.setdefault(ep.ip, ep)
    return SliceInfo(
        namespace=str(meta.get("namespace") or "default"),
        service=str(service),
        ports=tuple(ports),
        endpoints=tuple(unique.values()),
    )


class ObjectCache:
    """Services and slices by key. Not thread-safe: the caller holds its own lock."""

    def __init__(self) -> None:
        self.services: dict[str, ServiceInfo] = {}
        self.slices: dict[str, SliceInfo] = {}
        # service key -> slice keys, so building one service does not scan every slice
        self.slices_by_service: dict[str, set[str]] = {}

    def set_service(self, key: str, info: ServiceInfo | None) -> str | None:
        """Store or drop a service; return the service key when something changed."""
        old = self.services.get(key)
        if info is None:
            if old is None:
                return None
            del self.services[key]
            return key
        if old == info:
            return None
        self.services[key] = info
        return key

    def set_slice(self, key: str, info: SliceInfo | None) -> set[str]:
        """Store or drop a slice; return the keys of the services it affects."""
        old = self.slices.get(key)
        if old == info:
            return set()
        changed: set[str] = set()
        if old is not None:
            svc = f"{old.namespace}/{old.service}"
            changed.add(svc)
            members = self.slices_by_service.get(svc)
            if members is not None:
                members.discard(key)
                if not members:
                    del self.slices_by_service[svc]
            del self.slices[key]
        if info is not None:
            svc = f"{info.namespace}/{info.service}"
            changed.add(svc)
            self.slices[key] = info
            self.slices_by_service.setdefault(svc, set()).add(key)
        return changed

    def slices_of(self, service_key: str) -> list[SliceInfo]:
        return [self.slices[k] for k in sorted(self.slices_by_service.get(service_key, ()))]
