"""Desired state: what each service port should do, independent of the packet backend."""

from __future__ import annotations

import socket

from edgesite_agent.proxy.cache import (
    _RECORD,
    READY,
    SERVING,
    TERMINATING,
    EndpointInfo,
    ObjectCache,
    ServiceInfo,
    SliceInfo,
)
from edgesite_agent.proxy.record import Record

Endpoint = tuple[str, int]  # (ip, port)


class ServicePortModel(Record):
    """One service port with its endpoints chosen. Short-lived: built when a service
    changes, rendered into rules, dropped."""

    __slots__ = (
        "_cluster_endpoints",
        "_packed_endpoints",
        "affinity_timeout",
        "cluster_ips",
        "external_ips",
        "external_local",
        "hairpin_ips",
        "internal_local",
        "key",
        "local_endpoints",
        "node_port",
        "port",
        "protocol",
    )

    def __init__(
        self,
        key: str,  # "namespace/name/protocol/portname", unique per service port
        protocol: str,
        port: int,
        cluster_ips: tuple[str, ...],
        node_port: int | None,
        external_ips: tuple[str, ...],
        affinity_timeout: int | None,
        internal_local: bool,
        external_local: bool,
        # usable endpoints anywhere in the cluster; None: given packed_endpoints instead
        cluster_endpoints: tuple[Endpoint, ...] | None,
        local_endpoints: tuple[Endpoint, ...],  # usable endpoints on this node
        hairpin_ips: tuple[str, ...],  # endpoints that may reach themselves via the service
        # cluster_endpoints packed (pack_endpoints), when the builder has them that way
        packed_endpoints: bytes | None = None,
    ) -> None:
        self.key = key
        self.protocol = protocol
        self.port = port
        self.cluster_ips = cluster_ips
        self.node_port = node_port
        self.external_ips = external_ips
        self.affinity_timeout = affinity_timeout
        self.internal_local = internal_local
        self.external_local = external_local
        self._cluster_endpoints = cluster_endpoints
        self.local_endpoints = local_endpoints
        self.hairpin_ips = hairpin_ips
        self._packed_endpoints = packed_endpoints

    @property
    def hash(self) -> str:
        return short_hash(self.key, 16)

    # Compared and shown by their values, whichever form they were built in.
    _fields = tuple(name.lstrip("_") for name in __slots__)

    @property
    def cluster_endpoints(self) -> tuple[Endpoint, ...]:
        """Decoded on first use: the shared pick chains only need the packed form."""
        if self._cluster_endpoints is None:
            self._cluster_endpoints = unpack_endpoints(self._packed_endpoints or b"")
        return self._cluster_endpoints

    @property
    def packed_endpoints(self) -> bytes:
        """The cluster endpoints packed, made once: nft's picks tell their owner by the
        identity of this object."""
        if self._packed_endpoints is None:
            self._packed_endpoints = pack_endpoints(self._cluster_endpoints or ())
        return self._packed_endpoints

    @property
    def endpoint_count(self) -> int:
        if self._cluster_endpoints is None:
            return len(self._packed_endpoints or b"") // PACKED_ENDPOINT
        return len(self._cluster_endpoints)

    @property
    def has_endpoints(self) -> bool:
        return self.endpoint_count > 0

    @property
    def needs_local_chain(self) -> bool:
        return self.internal_local or (self.external_local and self.is_external)

    @property
    def is_external(self) -> bool:
        return self.node_port is not None or bool(self.external_ips)


PACKED_ENDPOINT = 6  # bytes per endpoint in the packed form: IPv4 address (4), port (2)


def pack_endpoints(endpoints: tuple[Endpoint, ...]) -> bytes:
    """Endpoints as one `bytes` (a new object each call, even for equal endpoints)."""
    return b"".join([socket.inet_aton(ip) + port.to_bytes(2, "big") for ip, port in endpoints])


def unpack_endpoints(packed: bytes) -> tuple[Endpoint, ...]:
    ntoa = socket.inet_ntoa
    return tuple(
        (ntoa(packed[i : i + 4]), packed[i + 4] << 8 | packed[i + 5])
        for i in range(0, len(packed), PACKED_ENDPOINT)
    )


def short_hash(text: str, length: int) -> str:
    """A stable name fragment: base32 of sha256, as kube-proxy names its chains."""
    # Imported on first use: services sharing pick chains (most) never need a hash, and
    # hashlib costs ~0.6 MiB resident (OpenSSL's digests, blake2); _sha256 is built in.
    import base64

    try:
        from _sha256 import sha256
    except ImportError:  # an interpreter without the built-in module (3.12 names it _sha2)
        from hashlib import sha256
    digest = sha256(text.encode()).digest()
    # base32 encodes 5-byte groups on their own: 10 bytes give the first 16 characters.
    return base64.b32encode(digest[: (length + 7) // 8 * 5]).decode()[:length]


Pair = tuple[Endpoint, EndpointInfo]


def _usable(endpoints: list[Pair]) -> list[Pair]:
    """kube-proxy's rule: ready endpoints; when none, fall back to serving+terminating ones."""
    ready = [p for p in endpoints if p[1][1]]
    if ready:
        return ready
    return [p for p in endpoints if p[1][2] and p[1][3]]


def build_service(
    svc: ServiceInfo,
    slices: list[SliceInfo],
    node_name: str,
    keep_local_unready: bool = False,
) -> list[ServicePortModel]:
    """The service ports of one Service, with the endpoints chosen for each."""
    out = []
    for sp_name, sp_proto, sp_port, sp_node_port in svc.ports:
        # Slice ports carry the service port's name, with the target port already resolved
        # (named target ports included) by the EndpointSlice controller.
        found: list[tuple[int, SliceInfo]] = []
        for sl in slices:
            for name, proto, num in sl.ports:
                if name == sp_name and proto == sp_proto:
                    found.append((num, sl))
                    break
        packed: bytes | None = None
        if len(found) == 1:
            # The common case: one slice, endpoints unique and sorted by the cache already.
            port, sl = found[0]
            cluster_eps, local_eps, hairpin, packed = _from_one_slice(
                sl, port, node_name, keep_local_unready
            )
        else:
            cluster_eps, local_eps, hairpin = _from_slices(found, node_name, keep_local_unready)
        out.append(
            ServicePortModel(
                key=f"{svc.namespace}/{svc.name}/{sp_proto}/{sp_name or sp_port}",
                protocol=sp_proto,
                port=sp_port,
                cluster_ips=svc.cluster_ips,
                node_port=sp_node_port,
                external_ips=svc.external_ips,
                affinity_timeout=svc.affinity_timeout,
                internal_local=svc.internal_local,
                external_local=svc.external_local,
                cluster_endpoints=cluster_eps,
                local_endpoints=local_eps,
                hairpin_ips=hairpin,
                packed_endpoints=packed,
            )
        )
    return out


def _from_slices(
    found: list[tuple[int, SliceInfo]], node_name: str, keep_local_unready: bool
) -> tuple[tuple[Endpoint, ...], tuple[Endpoint, ...], tuple[str, ...]]:
    """(cluster endpoints, local endpoints, hairpin IPs) of a port served by several slices."""
    by_ip: dict[Endpoint, EndpointInfo] = {}
    for port, sl in found:
        for ep in sl.iter_endpoints():
            prev = by_ip.get((ep[0], port))
            # An address can be in two slices while they are being rebalanced.
            if prev is None or (ep[1] and not prev[1]):
                by_ip[(ep[0], port)] = ep
    pairs = sorted(by_ip.items(), key=lambda p: p[0])
    if keep_local_unready:
        # The masters marked our pods unready only because they cannot hear from this
        # node; the pods themselves still run and serve.
        pairs = [
            (k, (e[0], True, True, False, e[4])) if e[4] == node_name and not e[3] else (k, e)
            for k, e in pairs
        ]
    cluster = _usable(pairs)
    local = _usable([p for p in pairs if p[1][4] == node_name])
    return (
        tuple(ep for ep, _ in cluster),
        tuple(ep for ep, _ in local),
        tuple(dict.fromkeys(ep[0] for ep, i in cluster if i[4] in (None, node_name))),
    )


def _from_one_slice(
    sl: SliceInfo, port: int, node_name: str, keep_local_unready: bool
) -> tuple[None, tuple[Endpoint, ...], tuple[str, ...], bytes]:
    """(None, local endpoints, hairpin IPs, cluster endpoints packed) of a port served by
    one slice: the model decodes the cluster endpoints from the packed form if asked.

    The same choice as the general path (`_usable` over the slice's endpoints, for the
    cluster and for this node), read straight from the packed records: this runs for every
    service of a full sync, and building a tuple per endpoint first cost ~45 % of it.
    """
    data, ntoa = sl.endpoints, socket.inet_ntoa
    nodes = sl.nodes
    here = nodes.index(node_name) + 1 if node_name in nodes else -1
    # The 4 address bytes of each usable endpoint (for the packed form); text only for the
    # few on this node or without one (local endpoints, hairpin).
    raw_ready: list[bytes] = []
    raw_fallback: list[bytes] = []  # serving and terminating: used only when none is ready
    ready_here: list[Endpoint] = []
    fallback_here: list[Endpoint] = []
    ready_hairpin: list[str] = []
    fallback_hairpin: list[str] = []
    for i in range(0, len(data), _RECORD):
        bits = data[i + 4]
        node = (data[i + 5] << 8) | data[i + 6]
        local = node == here
        if keep_local_unready and local and not bits & TERMINATING:
            # The masters marked our pods unready only because they cannot hear from
            # this node; the pods themselves still run and serve.
            bits = READY | SERVING
        if bits & READY:
            raws, here_eps, hairpin = raw_ready, ready_here, ready_hairpin
        elif bits & SERVING and bits & TERMINATING:
            raws, here_eps, hairpin = raw_fallback, fallback_here, fallback_hairpin
        else:
            continue
        raws.append(data[i : i + 4])
        if local or not node:
            ip = ntoa(data[i : i + 4])
            hairpin.append(ip)
            if local:
                here_eps.append((ip, port))
    if raw_ready:
        hairpin, raws = ready_hairpin, raw_ready
    else:
        hairpin, raws = fallback_hairpin, raw_fallback
    # Address, port, address, port ...: one join. A new bytes object per service port (the
    # trailing concatenation makes it so even for one endpoint): its identity tells the
    # owner of a pick (nft.py).
    port_bytes = port.to_bytes(2, "big")
    packed = port_bytes.join(raws) + port_bytes if raws else b""
    return None, tuple(ready_here or fallback_here), tuple(hairpin), packed


def build_model(
    cache: ObjectCache, node_name: str, keep_local_unready: bool = False
) -> dict[str, list[ServicePortModel]]:
    """Service key -> its service ports, for every service the proxy handles."""
    return {
        key: build_service(svc, cache.slices_of(key), node_name, keep_local_unready)
        for key, svc in sorted(cache.services.items())
    }
