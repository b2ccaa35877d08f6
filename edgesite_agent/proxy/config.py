"""The "proxy" section of the agent configuration: keys, defaults and validation."""

from __future__ import annotations

import re
import socket

from edgesite_agent.proxy.record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see events.py)
if TYPE_CHECKING:
    from typing import Any

BACKENDS = ("auto", "nftables", "iptables")
# iptables flavour -> command prefix; "system" is whatever `iptables` points to.
IPTABLES_VARIANTS = {"system": "iptables", "nft": "iptables-nft", "legacy": "iptables-legacy"}


class ProxySettings(Record):
    """Validated settings (see parse_settings); read-only once built."""

    __slots__ = (
        "backend",
        "cluster_cidrs",
        "enabled",
        "full_resync_interval",
        "iptables_variant",
        "keep_local_endpoints_when_disconnected",
        "masquerade_all",
        "masquerade_mark",
        "min_sync_interval",
        "netns",
        "nodeport_addresses",
        "retry_backoff_max",
    )

    def __init__(
        self,
        enabled: bool = True,
        backend: str = "auto",
        # iptables-nft gets slow with tens of thousands of rules; legacy may be chosen instead.
        iptables_variant: str = "system",
        # kube-proxy's minSyncPeriod: bursts of events within this window become one apply.
        min_sync_interval: float = 1.0,
        # A full (non-incremental) apply at least this often repairs rules edited behind
        # our back.
        full_resync_interval: float = 3600.0,
        # Upper bound of the retry backoff after a failed apply.
        retry_backoff_max: float = 30.0,
        # Traffic to a ClusterIP from outside these ranges is masqueraded so replies come
        # back here.
        cluster_cidrs: tuple[str, ...] = (),
        masquerade_all: bool = False,
        masquerade_mark: int = 0x4000,
        # Empty: NodePorts answer on every local address (except loopback).
        nodeport_addresses: tuple[str, ...] = (),
        # Keep this node's own endpoints in service while the masters mark the node
        # unreachable.
        keep_local_endpoints_when_disconnected: bool = False,
        # Program a named network namespace (`ip netns exec NAME`) instead of the agent's
        # own: for nodes whose service traffic lives in a dedicated namespace, and for test
        # rigs.
        netns: str = "",
    ) -> None:
        self.enabled = enabled
        self.backend = backend
        self.iptables_variant = iptables_variant
        self.min_sync_interval = min_sync_interval
        self.full_resync_interval = full_resync_interval
        self.retry_backoff_max = retry_backoff_max
        self.cluster_cidrs = cluster_cidrs
        self.masquerade_all = masquerade_all
        self.masquerade_mark = masquerade_mark
        self.nodeport_addresses = nodeport_addresses
        self.keep_local_endpoints_when_disconnected = keep_local_endpoints_when_disconnected
        self.netns = netns

    def __setattr__(self, name: str, value: Any) -> None:
        # Frozen once built: the proxy and its backends share one instance.
        if hasattr(self, name):
            raise AttributeError(f"ProxySettings.{name} is read-only")
        object.__setattr__(self, name, value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"proxy.{key}: must be true or false, got {value!r}")
    return value


def _seconds(key: str, value: Any, minimum: float, allow_equal: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"proxy.{key}: must be a number of seconds, got {value!r}")
    if value < minimum or (value == minimum and not allow_equal):
        relation = ">=" if allow_equal else ">"
        raise ValueError(f"proxy.{key}: must be {relation} {minimum}, got {value!r}")
    return float(value)


def ipv4_network(text: str) -> str | None:
    """`text` as a normalised IPv4 CIDR ("10.42.0.0/16"), or None when it is not one.

    Accepts what ipaddress.ip_network(strict=False) accepts for IPv4 (an address alone,
    a prefix length, a netmask or a host mask) without importing ipaddress (~0.15 MiB).
    """
    addr, slash, suffix = text.partition("/")
    try:
        packed = socket.inet_pton(socket.AF_INET, addr)
    except OSError:
        return None
    if not slash:
        prefix = 32
    elif suffix.isdigit() and suffix.isascii():
        prefix = int(suffix)
        if prefix > 32:
            return None
    else:
        try:
            mask = int.from_bytes(socket.inet_pton(socket.AF_INET, suffix), "big")
        except OSError:
            return None
        ones = bin(mask).count("1")
        if mask == (0xFFFFFFFF << (32 - ones)) & 0xFFFFFFFF:
            prefix = ones  # a netmask: 255.255.0.0
        elif mask == (1 << ones) - 1:
            prefix = 32 - ones  # a host mask: 0.0.255.255 (ipaddress takes both)
        else:
            return None
    value = int.from_bytes(packed, "big") & ((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF)
    return f"{socket.inet_ntoa(value.to_bytes(4, 'big'))}/{prefix}"


def _cidrs(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"proxy.{key}: must be a list of IPv4 CIDRs, got {value!r}")
    out = []
    for item in value:
        net = ipv4_network(item) if isinstance(item, str) else None
        if net is None:
            raise ValueError(f"proxy.{key}: {item!r} is not an IPv4 CIDR (like 10.42.0.0/16)")
        out.append(net)
    return tuple(out)


def parse_settings(raw: Any) -> ProxySettings:
    """Validate the "proxy" object; a ValueError names the offending key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"proxy: must be an object, got {type(raw).__name__}")
    known = {
        "enabled",
        "backend",
        "iptables_variant",
        "min_sync_interval",
        "full_resync_interval",
        "retry_backoff_max",
        "cluster_cidrs",
        "masquerade_all",
        "masquerade_mark",
        "nodeport_addresses",
        "keep_local_endpoints_when_disconnected",
        "netns",
    }
    for key in raw:
        if key not in known:
            raise ValueError(f"proxy.{key}: unknown key (known: {', '.join(sorted(known))})")
    defaults = ProxySettings()
    backend = raw.get("backend", defaults.backend)
    if backend not in BACKENDS:
        raise ValueError(f"proxy.backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    variant = raw.get("iptables_variant", defaults.iptables_variant)
    if variant not in IPTABLES_VARIANTS:
        raise ValueError(
            f"proxy.iptables_variant: must be one of {', '.join(IPTABLES_VARIANTS)}, "
            f"got {variant!r}"
        )
    mark = raw.get("masquerade_mark", defaults.masquerade_mark)
    if (
        isinstance(mark, bool)
        or not isinstance(mark, int)
        or mark <= 0
        or mark >= 1 << 32
        or mark & (mark - 1)
    ):
        raise ValueError(f"proxy.masquerade_mark: must be a single bit like 16384, got {mark!r}")
    netns = raw.get("netns", "")
    if not isinstance(netns, str) or (
        netns and (not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", netns) or netns in (".", ".."))
    ):
        raise ValueError(f"proxy.netns: must be a network namespace name, got {netns!r}")
    return ProxySettings(
        enabled=_bool("enabled", raw.get("enabled", defaults.enabled)),
        backend=backend,
        iptables_variant=variant,
        min_sync_interval=_seconds(
            "min_sync_interval", raw.get("min_sync_interval", defaults.min_sync_interval), 0.0
        ),
        full_resync_interval=_seconds(
            "full_resync_interval",
            raw.get("full_resync_interval", defaults.full_resync_interval),
            1.0,
        ),
        retry_backoff_max=_seconds(
            "retry_backoff_max", raw.get("retry_backoff_max", defaults.retry_backoff_max), 0.1
        ),
        cluster_cidrs=_cidrs("cluster_cidrs", raw.get("cluster_cidrs", [])),
        masquerade_all=_bool("masquerade_all", raw.get("masquerade_all", defaults.masquerade_all)),
        masquerade_mark=mark,
        nodeport_addresses=_cidrs("nodeport_addresses", raw.get("nodeport_addresses", [])),
        keep_local_endpoints_when_disconnected=_bool(
            "keep_local_endpoints_when_disconnected",
            raw.get("keep_local_endpoints_when_disconnected", False),
        ),
        netns=netns,
    )
