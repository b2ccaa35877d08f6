"""Compact in-memory copy of the Services and EndpointSlices the proxy needs.

Only the fields that change packet rules are kept, so thousands of services cost little
memory next to the agent's SQLite store, and an object update that does not touch those
fields does not trigger a sync. The endpoints of a slice, the bulk of it (10,000 endpoints
on a node of a 1,000-service cluster), are one `bytes` value of 7 bytes per endpoint
instead of one object with five fields and a string per endpoint (~0.1 vs ~1.2 MiB there);
the model decodes the few it needs when a service changes. Repeated names (namespaces,
node names, port names) are interned: a thousand slices share one copy of each.
"""

from __future__ import annotations

import socket
import sys

from edgesite_agent.proxy.record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see events.py)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

SERVICE_PROXY_NAME = "service.kubernetes.io/service-proxy-name"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds, the Kubernetes API default

# Endpoint condition bits in the packed endpoint records.
READY, SERVING, TERMINATING = 1, 2, 4
_RECORD = 7  # bytes per endpoint: IPv4 address (4), conditions (1), node index (2)
SHARED_MAX = 4096  # distinct port/node lists kept for sharing (see ObjectCache)
_intern = sys.intern

# (name, protocol, port, node port or None); protocol is "tcp" | "udp" | "sctp"
SvcPort = tuple[str, str, int, "int | None"]
# (ip, ready, serving, terminating, node name or None), decoded from a slice on demand
EndpointInfo = tuple[str, bool, bool, bool, "str | None"]


class ServiceInfo(Record):
    """The fields of a Service that change rules. Immutable by convention; compared whole."""

    __slots__ = (
        "affinity_timeout",
        "cluster_ips",
        "external_ips",
        "external_local",
        "internal_local",
        "name",
        "namespace",
        "ports",
    )

    def __init__(
        self,
        namespace: str,
        name: str,
        cluster_ips: tuple[str, ...],
        ports: tuple[SvcPort, ...],
        external_ips: tuple[str, ...],  # spec.externalIPs + status.loadBalancer.ingress[].ip
        affinity_timeout: int | None,
        internal_local: bool,
        external_local: bool,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.cluster_ips = cluster_ips
        self.ports = ports
        self.external_ips = external_ips
        self.affinity_timeout = affinity_timeout
        self.internal_local = internal_local
        self.external_local = external_local


class SliceInfo(Record):
    """The fields of an EndpointSlice that change rules, endpoints packed (see module doc)."""

    __slots__ = ("endpoints", "nodes", "ports", "service")

    def __init__(
        self,
        service: str,  # "namespace/name" of the owning Service
        ports: tuple[tuple[str, str, int], ...],  # (name, protocol, port)
        endpoints: bytes,  # _RECORD bytes per endpoint, unique addresses, sorted by text
        nodes: tuple[str, ...],  # node index i (1-based) in a record -> nodes[i - 1]
    ) -> None:
        self.service = service
        self.ports = ports
        self.endpoints = endpoints
        self.nodes = nodes

    def __len__(self) -> int:
        return len(self.endpoints) // _RECORD

    def iter_endpoints(self) -> Iterator[EndpointInfo]:
        data, nodes, ntoa = self.endpoints, self.nodes, socket.inet_ntoa
        for i in range(0, len(data), _RECORD):
            bits = data[i + 4]
            node = (data[i + 5] << 8) | data[i + 6]
            yield (
                ntoa(data[i : i + 4]),
                bool(bits & READY),
                bool(bits & SERVING),
                bool(bits & TERMINATING),
                nodes[node - 1] if node else None,
            )

    def __repr__(self) -> str:
        return f"SliceInfo({self.service!r}, {self.ports!r}, {list(self.iter_endpoints())!r})"


def _packed_ipv4(value: Any) -> bytes | None:
    # IPv4 only for now: an IPv6 family would need an ip6 table / ip6tables. inet_pton is
    # strict (four decimal parts, no leading zeros), as the API server's validation is.
    if not isinstance(value, str) or not value:
        return None
    try:
        return socket.inet_pton(socket.AF_INET, value)
    except OSError:
        return None


def _ipv4(value: Any) -> str | None:
    packed = _packed_ipv4(value)
    return socket.inet_ntoa(packed) if packed is not None else None


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
    ports: list[SvcPort] = []
    for p in spec.get("ports") or []:
        proto = str(p.get("protocol") or "TCP").lower()
        port = p.get("port")
        if proto not in ("tcp", "udp", "sctp") or not isinstance(port, int):
            continue
        node_port = p.get("nodePort")
        ports.append(
            (
                _intern(str(p.get("name") or "")),
                _intern(proto),
                port,
                node_port if isinstance(node_port, int) and node_port > 0 else None,
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
        namespace=_intern(str(meta.get("namespace") or "default")),
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
            name = _intern(str(p.get("name") or ""))
            ports.append((name, _intern(str(p.get("protocol") or "TCP").lower()), port))
    found: list[tuple[str, bool, bytes, int, str | None]] = []
    for ep in obj.get("endpoints") or []:
        addresses = ep.get("addresses") or []
        packed = _packed_ipv4(addresses[0]) if addresses else None
        if packed is None:
            continue
        cond = ep.get("conditions") or {}
        # As kube-proxy: an unknown (absent) ready/serving condition counts as true.
        ready = cond.get("ready") is not False
        serving = cond.get("serving", ready) is not False
        bits = (READY if ready else 0) | (SERVING if serving else 0)
        bits |= TERMINATING if cond.get("terminating") is True else 0
        node = ep.get("nodeName")
        found.append((socket.inet_ntoa(packed), not ready, packed, bits, node or None))
    # Sorted (by address text, as the rules list them) and unique here, once per slice
    # event, so that building a service from a single slice needs neither; the first of
    # duplicated addresses wins, ready ones first.
    found.sort(key=lambda e: (e[0], e[1]))
    nodes: dict[str, int] = {}
    records = bytearray()
    last = None
    for text, _, packed, bits, node in found:
        if text == last:
            continue
        last = text
        index = nodes.setdefault(_intern(str(node)), len(nodes) + 1) if node else 0
        records += packed
        records.append(bits)
        records += index.to_bytes(2, "big")
    return SliceInfo(
        service=_intern(f"{meta.get('namespace') or 'default'}/{service}"),
        ports=tuple(ports),
        endpoints=bytes(records),
        nodes=tuple(nodes),
    )


class ObjectCache:
    """Services and slices by key. Not thread-safe: the caller holds its own lock."""

    def __init__(self) -> None:
        self.services: dict[str, ServiceInfo] = {}
        self.slices: dict[str, SliceInfo] = {}
        # service key -> slice keys (a tuple: nearly always one), so building one service
        # does not scan every slice
        self.slices_by_service: dict[str, tuple[str, ...]] = {}
        # One copy of equal port lists and node lists: most slices of a cluster carry the
        # same few (~0.3 MiB at 1,000 services). Emptied when it grows past SHARED_MAX, so
        # values no longer used cannot pile up.
        self._shared: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def _share(self, value: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(self._shared) >= SHARED_MAX:
            self._shared.clear()
        return self._shared.setdefault(value, value)

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
        info.ports = self._share(info.ports)
        # Interned: the slices of this service carry the same key object.
        self.services[_intern(key)] = info
        return key

    def set_slice(self, key: str, info: SliceInfo | None) -> set[str]:
        """Store or drop a slice; return the keys of the services it affects."""
        old = self.slices.get(key)
        if old == info:
            return set()
        changed: set[str] = set()
        if old is not None:
            svc = old.service
            changed.add(svc)
            members = tuple(k for k in self.slices_by_service.get(svc, ()) if k != key)
            if members:
                self.slices_by_service[svc] = members
            else:
                self.slices_by_service.pop(svc, None)
            del self.slices[key]
        if info is not None:
            info.ports = self._share(info.ports)
            info.nodes = self._share(info.nodes)
            svc = info.service
            changed.add(svc)
            self.slices[key] = info
            self.slices_by_service[svc] = (*self.slices_by_service.get(svc, ()), key)
        return changed

    def slices_of(self, service_key: str) -> list[SliceInfo]:
        return [self.slices[k] for k in sorted(self.slices_by_service.get(service_key, ()))]
