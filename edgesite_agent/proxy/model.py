"""Desired state: what each service port should do, independent of the packet backend."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from edgesite_agent.proxy.cache import EndpointInfo, ObjectCache, ServiceInfo, SliceInfo

Endpoint = tuple[str, int]  # (ip, port)


@dataclass(frozen=True, slots=True)
class ServicePortModel:
    key: str  # "namespace/name/protocol/portname", unique per service port
    protocol: str
    port: int
    cluster_ips: tuple[str, ...]
    node_port: int | None
    external_ips: tuple[str, ...]
    affinity_timeout: int | None
    internal_local: bool
    external_local: bool
    cluster_endpoints: tuple[Endpoint, ...]  # usable endpoints anywhere in the cluster
    local_endpoints: tuple[Endpoint, ...]  # usable endpoints on this node
    hairpin_ips: tuple[str, ...]  # endpoints that may connect to themselves through the service

    @property
    def hash(self) -> str:
        return short_hash(self.key, 16)

    @property
    def has_endpoints(self) -> bool:
        return bool(self.cluster_endpoints)

    @property
    def needs_local_chain(self) -> bool:
        return self.internal_local or (self.external_local and self.is_external)

    @property
    def is_external(self) -> bool:
        return self.node_port is not None or bool(self.external_ips)


def short_hash(text: str, length: int) -> str:
    """A stable name fragment: base32 of sha256, as kube-proxy names its chains."""
    digest = hashlib.sha256(text.encode()).digest()
    # base32 encodes 5-byte groups on their own: 10 bytes give the first 16 characters.
    return base64.b32encode(digest[: (length + 7) // 8 * 5]).decode()[:length]


def _usable(
    endpoints: list[tuple[Endpoint, EndpointInfo]],
) -> list[tuple[Endpoint, EndpointInfo]]:
    """kube-proxy's rule: ready endpoints; when none, fall back to serving+terminating ones."""
    ready = [p for p in endpoints if p[1].ready]
    if ready:
        return ready
    return [p for p in endpoints if p[1].serving and p[1].terminating]


def build_service(
    svc: ServiceInfo,
    slices: list[SliceInfo],
    node_name: str,
    keep_local_unready: bool = False,
) -> list[ServicePortModel]:
    """The service ports of one Service, with the endpoints chosen for each."""
    out = []
    for sp in svc.ports:
        # Slice ports carry the service port's name, with the target port already resolved
        # (named target ports included) by the EndpointSlice controller.
        found: list[tuple[int, tuple[EndpointInfo, ...]]] = []
        for sl in slices:
            for name, proto, num in sl.ports:
                if name == sp.name and proto == sp.protocol:
                    found.append((num, sl.endpoints))
                    break
        if len(found) == 1:
            # The common case: one slice, endpoints unique and sorted by the cache already.
            port, eps = found[0]
            pairs = [((ep.ip, port), ep) for ep in eps]
        else:
            by_ip: dict[tuple[str, int], EndpointInfo] = {}
            for port, eps in found:
                for ep in eps:
                    prev = by_ip.get((ep.ip, port))
                    # An address can be in two slices while they are being rebalanced.
                    if prev is None or (ep.ready and not prev.ready):
                        by_ip[(ep.ip, port)] = ep
            pairs = sorted(by_ip.items(), key=lambda p: p[0])
        if keep_local_unready:
            # The masters marked our pods unready only because they cannot hear from this
            # node; the pods themselves still run and serve.
            pairs = [
                (k, EndpointInfo(e.ip, True, True, False, e.node))
                if e.node == node_name and not e.terminating
                else (k, e)
                for k, e in pairs
            ]
        cluster = _usable(pairs)
        local = _usable([p for p in pairs if p[1].node == node_name])
        out.append(
            ServicePortModel(
                key=f"{svc.namespace}/{svc.name}/{sp.protocol}/{sp.name or sp.port}",
                protocol=sp.protocol,
                port=sp.port,
                cluster_ips=svc.cluster_ips,
                node_port=sp.node_port,
                external_ips=svc.external_ips,
                affinity_timeout=svc.affinity_timeout,
                internal_local=svc.internal_local,
                external_local=svc.external_local,
                cluster_endpoints=tuple(ep for ep, _ in cluster),
                local_endpoints=tuple(ep for ep, _ in local),
                hairpin_ips=tuple(
                    dict.fromkeys(ep[0] for ep, i in cluster if i.node in (None, node_name))
                ),
            )
        )
    return out


def build_model(
    cache: ObjectCache, node_name: str, keep_local_unready: bool = False
) -> dict[str, list[ServicePortModel]]:
    """Service key -> its service ports, for every service the proxy handles."""
    return {
        key: build_service(svc, cache.slices_of(key), node_name, keep_local_unready)
        for key, svc in sorted(cache.services.items())
    }
