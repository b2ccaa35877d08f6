"""nftables backend: one table owned by us, verdict maps for service lookup.

Layout (table `ip edgesite`):
  maps service-ips / service-nodeports       dst ip . proto . port -> goto the service's chain
  maps no-endpoint-services / -nodeports     same keys -> reject, checked in a filter hook
  chains svc-HASH-ns/name/proto/port         cluster-wide endpoints, picked with numgen random
  chains local-HASH-...                      only this node's endpoints (traffic policy Local)
  chains ext-HASH-...                        entry for NodePort / external / LB traffic
Lookup is one map lookup whatever the number of services.

Most service ports (no session affinity, no traffic policy Local) have no chain of their own:
their map element jumps to a chain shared by every service with the same protocol and number
of endpoints (`pick-cluster-tcp-3`), whose one rule looks the endpoint up in the data map
`endpoints` by `ip daddr . meta l4proto . th dport . numgen random mod 3`. An endpoint change
of such a service is then only element updates: no rule is added, so neither does `nft` list
every chain of the table (it does for each `add rule`) nor does the kernel re-validate the
jump graph of the whole table (it does for every new rule carrying a NAT, meta or verdict
expression), the two costs that grow with the number of services.
Affinity and Local services keep per-service chains whose rules pick endpoints with
`numgen random mod K == 0` (K = remaining endpoints); not with an anonymous map per service,
because the kernel looks sets up by name in a list, which makes thousands of per-service sets
quadratic to load.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections import Counter, deque
from collections.abc import Callable, Iterable
from itertools import chain, repeat

from edgesite_agent.proxy.config import ProxySettings
from edgesite_agent.proxy.model import Endpoint, ServicePortModel, short_hash, unpack_endpoints
from edgesite_agent.proxy.nlprobe import table_exists
from edgesite_agent.proxy.record import Record
from edgesite_agent.proxy.runner import (
    ApplyError,
    Child,
    ChildTimeout,
    Runner,
    restore_cpus,
    split_cpus,
)

TABLE = "edgesite"
FAMILY = "ip"
_T = f"{FAMILY} {TABLE}"

PROTOCOLS = ("tcp", "udp", "sctp")

# name -> declaration; all are created once and their elements rewritten.
STATIC_SETS = {
    "service-ips": "type ipv4_addr . inet_proto . inet_service : verdict ;",
    "service-nodeports": "type inet_proto . inet_service : verdict ;",
    "no-endpoint-services": "type ipv4_addr . inet_proto . inet_service : verdict ;",
    "no-endpoint-nodeports": "type inet_proto . inet_service : verdict ;",
    "hairpin": "type ipv4_addr . ipv4_addr ;",
    # Endpoints of the services using shared pick chains: entry . index -> endpoint. One map
    # per protocol: nft 1.0.6 cannot read back a `typeof` with the generic `th dport`.
    **{
        f"endpoints-{proto}": (
            f"typeof ip daddr . {proto} dport . numgen random mod 1 : ip daddr . {proto} dport ;"
        )
        for proto in PROTOCOLS
    },
    **{
        f"nodeport-endpoints-{proto}": (
            f"typeof {proto} dport . numgen random mod 1 : ip daddr . {proto} dport ;"
        )
        for proto in PROTOCOLS
    },
    # Named, not written inline: every inline `{ ... }` is an anonymous kernel set per rule.
    "cluster-cidrs": "type ipv4_addr ; flags interval ;",
}

BASE_CHAINS = {
    "nat-prerouting": "type nat hook prerouting priority dstnat ; policy accept ;",
    "nat-output": "type nat hook output priority -100 ; policy accept ;",
    "nat-postrouting": "type nat hook postrouting priority srcnat ; policy accept ;",
    # Before the nat hooks, so a service without endpoints is refused, not left to time out.
    "filter-prerouting": "type filter hook prerouting priority dstnat - 10 ; policy accept ;",
    "filter-output": "type filter hook output priority -110 ; policy accept ;",
}


# One service IP's (or node port's) elements of an endpoints map: (map, owner, endpoints)
# stands for `OWNER . i : ENDPOINT_i`, the endpoints packed as 6 bytes each (IPv4 address,
# port) instead of two strings and a dict slot per endpoint (~20k strings at 10k endpoints,
# the bulk of the proxy's memory; docs/agent.md): the element text is written when sent.
Pick = tuple[str, str, bytes]
PickKey = tuple[str, str]  # (map, owner)


_PICKED: dict[str, str] = {}  # shared, never written to: see _shared_fragment


class Members(tuple):  # type: ignore[type-arg]
    """One service port's elements of a plain set (no values), as a tuple instead of a dict.

    Every service port with endpoints on this node has a few `hairpin` elements; a dict per
    service port cost ~0.2 MiB at 1,000 services (docs/agent.md). Read like the value maps
    (`items`, `get`, `dict.update` through `keys` and `[key]`): each member's value is "".
    """

    __slots__ = ()

    def keys(self) -> Members:
        return self

    def items(self) -> Iterable[tuple[str, str]]:
        return zip(self, repeat(""))

    def get(self, key: str, default: str | None = None) -> str | None:
        return "" if key in self else default

    def __getitem__(self, key):  # type: ignore[no-untyped-def, override]
        if isinstance(key, str):  # a member, as a mapping is read (dict.update)
            if key in self:
                return ""
            raise KeyError(key)
        return tuple.__getitem__(self, key)


def _pick_elems(owner: str, endpoints: bytes) -> list[str]:
    # One pass, no intermediate endpoint strings: this writes every endpoint of a full sync.
    ntoa = socket.inet_ntoa
    count = len(endpoints) // 6
    high, low = endpoints[4::6], endpoints[5::6]  # the port bytes of every endpoint
    if high == high[:1] * count and low == low[:1] * count:
        # One target port for all (nearly always): its text once, not once per endpoint.
        port = f" . {endpoints[4] << 8 | endpoints[5]}"
        prefix = f"{owner} . "
        return [
            f"{prefix}{i} : {ntoa(endpoints[j : j + 4])}{port}"
            for i, j in enumerate(range(0, len(endpoints), 6))
        ]
    return [
        f"{owner} . {i} : {ntoa(endpoints[j : j + 4])} . {endpoints[j + 4] << 8 | endpoints[j + 5]}"
        for i, j in enumerate(range(0, len(endpoints), 6))
    ]


class NftState(Record):
    __slots__ = ("chains", "elements", "picks", "sets")

    def __init__(
        self,
        chains: dict[str, tuple[str, ...]] | None = None,
        sets: dict[str, str] | None = None,  # name -> declaration
        elements: dict[str, dict[str, str]] | None = None,  # set -> key -> value
        picks: dict[PickKey, bytes] | None = None,  # the endpoints maps' elements
    ) -> None:
        self.chains = {} if chains is None else chains
        self.sets = {} if sets is None else sets
        self.elements = {} if elements is None else elements
        # Each entry is the very tuple of the fragment that owns it (first claim): identity
        # tells an incremental sync whether a changed service owned it.
        self.picks = {} if picks is None else picks


class Fragment(Record):
    """What one service port adds to the table."""

    __slots__ = ("chains", "elements", "picks", "sets")

    def __init__(
        self,
        chains: dict[str, tuple[str, ...]],
        sets: dict[str, str],
        elements: dict[str, dict[str, str] | Members],
        picks: tuple[Pick, ...] = (),
    ) -> None:
        self.chains = chains
        self.sets = sets
        self.elements = elements
        self.picks = picks


def _chain_name(kind: str, sp: ServicePortModel, digest: str | None = None) -> str:
    return f"{kind}-{digest or short_hash(sp.key, 8)}-{sp.key}"


def _pick_rules(
    sp: ServicePortModel, chain: str, endpoints: tuple[Endpoint, ...], sets: dict[str, str]
) -> list[str]:
    proto = sp.protocol
    rules = []
    affinity = []
    if sp.affinity_timeout:
        for ip, port in endpoints:
            name = f"aff-{short_hash(f'{chain}|{ip}:{port}|{sp.affinity_timeout}', 16)}"
            sets[name] = (
                f"type ipv4_addr ; flags dynamic,timeout ; timeout {sp.affinity_timeout}s ;"
            )
            affinity.append(name)
            # A client seen recently goes back to the same endpoint (and refreshes its entry).
            rules.append(
                f"ip saddr @{name} meta l4proto {proto} update @{name} {{ ip saddr }} "
                f"dnat to {ip}:{port}"
            )
    n = len(endpoints)
    for i, (ip, port) in enumerate(endpoints):
        # Rule i wins with probability 1/(n-i) of what is left: uniform over all n.
        pick = f"numgen random mod {n - i} == 0 " if i < n - 1 else ""
        remember = f"update @{affinity[i]} {{ ip saddr }} " if affinity else ""
        rules.append(f"meta l4proto {proto} {pick}{remember}dnat to {ip}:{port}")
    return rules


def _cluster_masq(settings: ProxySettings) -> list[str]:
    if settings.masquerade_all:
        return ["jump mark-for-masquerade"]
    if settings.cluster_cidrs:
        # Off-cluster sources (the node itself, other hosts) are masqueraded so that the
        # endpoint's reply comes back through this node and gets un-NATed.
        return ["ip saddr != @cluster-cidrs jump mark-for-masquerade"]
    return []


def _pick_chain(
    entry: str, proto: str, count: int, settings: ProxySettings
) -> tuple[str, tuple[str, ...]]:
    """The chain shared by all services of this entry kind, protocol and endpoint count.

    Its rules depend on nothing else, so any number of services can use it and an endpoint
    change of one of them only moves that service's map elements.
    """
    key, emap = f"ip daddr . {proto} dport", f"endpoints-{proto}"
    masq = ["jump mark-for-masquerade"]  # external traffic with policy Cluster: always
    if entry == "cluster":
        masq = _cluster_masq(settings)
    elif entry == "nodeport":
        # The destination is any local address: the port alone names the service.
        key, emap = f"{proto} dport", f"nodeport-endpoints-{proto}"
    # `{proto} dport` also makes nft match the protocol first.
    pick = f"dnat ip to {key} . numgen random mod {count} map @{emap}"
    return f"pick-{entry}-{proto}-{count}", (*masq, pick)


# Equal pieces of many service ports' fragments, made once per backend (its settings are
# fixed): (protocol, endpoint count, cluster IPs?, external IPs?, node port?) -> the pick
# chains and the verdict strings. A thousand services of one shape then share one chain
# table and one verdict string instead of a dict and a string each.
SharedPieces = dict[tuple[object, ...], tuple[dict[str, tuple[str, ...]], dict[str, str]]]
SHARED_PIECES_MAX = 1024  # shapes kept; more (never seen) are built fresh and not kept
_ENDPOINT_MAPS = {p: (f"endpoints-{p}", f"nodeport-endpoints-{p}") for p in PROTOCOLS}


def _shared_pieces(
    sp: ServicePortModel, settings: ProxySettings, memo: SharedPieces | None
) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    proto, count = sp.protocol, sp.endpoint_count
    key = (proto, count, bool(sp.cluster_ips), bool(sp.external_ips), bool(sp.node_port))
    found = memo.get(key) if memo is not None else None
    if found is not None:
        return found
    chains: dict[str, tuple[str, ...]] = {}
    gotos: dict[str, str] = {}
    for entry, wanted in (
        ("cluster", sp.cluster_ips),
        ("external", sp.external_ips),
        ("nodeport", sp.node_port),
    ):
        if wanted:
            name, rules = _pick_chain(entry, proto, count, settings)
            chains[name] = rules
            gotos[entry] = f"goto {name}"
    if memo is not None and len(memo) < SHARED_PIECES_MAX:
        memo[key] = (chains, gotos)
    return chains, gotos


def _hairpin(sp: ServicePortModel) -> Members:
    """`ip . ip` of each endpoint of `sp` that may reach itself through the service."""
    return Members(dict.fromkeys(f"{ip} . {ip}" for ip in sp.hairpin_ips))


def _shared_fragment(
    sp: ServicePortModel,
    settings: ProxySettings,
    elements: dict[str, dict[str, str] | Members],
    picks: list[Pick],
    memo: SharedPieces | None,
) -> dict[str, tuple[str, ...]]:
    """Map elements only (plus the shared pick chains): policy Cluster, no affinity.

    Returns the chains (shared: never to be changed by the caller).
    """
    proto, port = sp.protocol, sp.port
    # One object per service port, fresh even when equal: identity tells the owner of a
    # pick (see NftState).
    endpoints = sp.packed_endpoints
    chains, gotos = _shared_pieces(sp, settings, memo)
    emap, nodeport_emap = _ENDPOINT_MAPS[proto]
    entries: dict[str, str] = {}
    for entry, ips in (("cluster", sp.cluster_ips), ("external", sp.external_ips)):
        for ip in ips:
            entries[f"{ip} . {proto} . {port}"] = gotos[entry]
            picks.append((emap, f"{ip} . {port}", endpoints))
    if entries:
        elements["service-ips"] = entries
        # No elements (the picks hold them): names the map here so that a ruleset declares
        # the maps in the same order as before picks existed.
        elements[emap] = _PICKED
    if sp.node_port:
        elements["service-nodeports"] = {f"{proto} . {sp.node_port}": gotos["nodeport"]}
        picks.append((nodeport_emap, str(sp.node_port), endpoints))
        elements[nodeport_emap] = _PICKED
    if sp.hairpin_ips:
        elements["hairpin"] = _hairpin(sp)
    return chains


def render_fragment(
    sp: ServicePortModel, settings: ProxySettings, memo: SharedPieces | None = None
) -> Fragment:
    """What `sp` adds to the table; `memo` (one per settings) shares equal pieces."""
    chains: dict[str, tuple[str, ...]] = {}
    sets: dict[str, str] = {}
    elements: dict[str, dict[str, str] | Members] = {}  # only the sets this service port uses
    proto, port = sp.protocol, sp.port
    if not sp.has_endpoints:
        for ip in (*sp.cluster_ips, *sp.external_ips):
            elements.setdefault("no-endpoint-services", {})[f"{ip} . {proto} . {port}"] = (
                "goto reject-chain"
            )
        if sp.node_port:
            elements.setdefault("no-endpoint-nodeports", {})[f"{proto} . {sp.node_port}"] = (
                "goto reject-chain"
            )
        return Fragment(chains, sets, elements)

    if not sp.affinity_timeout and not sp.needs_local_chain:
        picks: list[Pick] = []
        chains = _shared_fragment(sp, settings, elements, picks, memo)
        return Fragment(chains, sets, elements, tuple(picks))
    digest = short_hash(sp.key, 8)
    svc = _chain_name("svc", sp, digest)
    masq = _cluster_masq(settings)
    if not sp.internal_local or sp.is_external:
        chains[svc] = (*masq, *_pick_rules(sp, svc, sp.cluster_endpoints, sets))
    local = _chain_name("local", sp, digest)
    if sp.needs_local_chain:
        chains[local] = (
            tuple(_pick_rules(sp, local, sp.local_endpoints, sets))
            if sp.local_endpoints
            else ("drop",)  # endpoints exist, only not here: drop as kube-proxy does
        )
    internal = local if sp.internal_local else svc
    for ip in sp.cluster_ips:
        elements.setdefault("service-ips", {})[f"{ip} . {proto} . {port}"] = f"goto {internal}"
    if sp.is_external:
        ext = _chain_name("ext", sp, digest)
        if sp.external_local:
            rules = [
                # Node-originated traffic has no client address to keep: use any endpoint.
                "fib saddr type local jump mark-for-masquerade",
                f"fib saddr type local goto {svc}",
            ]
            if settings.cluster_cidrs:
                # Pods going to an external address of the service: short-circuit as well.
                rules.append(f"ip saddr @cluster-cidrs goto {svc}")
            rules.append(f"goto {local}")
        else:
            rules = ["jump mark-for-masquerade", f"goto {svc}"]
        chains[ext] = tuple(rules)
        for ip in sp.external_ips:
            elements.setdefault("service-ips", {})[f"{ip} . {proto} . {port}"] = f"goto {ext}"
        if sp.node_port:
            elements.setdefault("service-nodeports", {})[f"{proto} . {sp.node_port}"] = (
                f"goto {ext}"
            )
    if sp.hairpin_ips:
        elements["hairpin"] = _hairpin(sp)
    return Fragment(chains, sets, elements)


def base_state(settings: ProxySettings) -> NftState:
    mark = f"0x{settings.masquerade_mark:x}"
    if settings.nodeport_addresses:
        local_dst = f"ip daddr {{ {', '.join(settings.nodeport_addresses)} }} fib daddr type local"
    else:
        local_dst = "fib daddr type local ip daddr != 127.0.0.0/8"
    chains = {
        "nat-prerouting": ("jump services",),
        "nat-output": ("jump services",),
        "nat-postrouting": ("jump masquerading",),
        "filter-prerouting": ("ct state new jump endpoints-check",),
        "filter-output": ("ct state new jump endpoints-check",),
        "endpoints-check": (
            "ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
            f"{local_dst} meta l4proto . th dport vmap @no-endpoint-nodeports",
        ),
        "services": (
            "ip daddr . meta l4proto . th dport vmap @service-ips",
            f"{local_dst} meta l4proto . th dport vmap @service-nodeports",
        ),
        "mark-for-masquerade": (f"meta mark set meta mark or {mark}",),
        "masquerading": (
            # A pod reaching itself through its service: without SNAT it would answer itself.
            "ct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade",
            f"meta mark & {mark} == 0x0 return",
            f"meta mark set meta mark xor {mark}",
            "masquerade fully-random",
        ),
        "reject-chain": ("reject",),
    }
    elements: dict[str, dict[str, str]] = {n: {} for n in STATIC_SETS}
    elements["cluster-cidrs"] = {cidr: "" for cidr in settings.cluster_cidrs}
    return NftState(chains=chains, sets=dict(STATIC_SETS), elements=elements)


def merge(base: NftState, fragments: list[Fragment]) -> NftState:
    state = NftState(dict(base.chains), dict(base.sets), {})
    for frag in fragments:
        state.chains.update(frag.chains)
        state.sets.update(frag.sets)
    # The first service to claim a map key keeps it, as in the streamed ruleset (the kernel
    # refuses a second value for a key): later fragments are merged under earlier ones.
    elements = state.elements
    for frag in reversed(fragments):
        for name, elems in frag.elements.items():
            target = elements.get(name)
            if target is None:
                elements[name] = target = {}
            target.update(elems)
    for name, elems in base.elements.items():
        elements.setdefault(name, {}).update(elems)
    picks = state.picks
    for frag in reversed(fragments):  # same order and first claim as the elements above
        for name, owner, endpoints in frag.picks:
            picks[(name, owner)] = endpoints
    return state


def _elem(key: str, value: str) -> str:
    return f"{key} : {value}" if value else key


_ELEMENT_SEP = ",\n\t\t\t"


def _set_lines(
    lines: list[str],
    name: str,
    decl: str,
    elems: dict[str, str] | None,
    extra: list[str] | None = None,  # elements already written out (picks)
) -> None:
    kind = _kind_of(decl)
    lines.append(f"\t{kind} {name} {{")
    lines.extend(f"\t\t{part.strip()}" for part in decl.split(";") if part.strip())
    if elems or extra:
        lines.append("\t\telements = {")
        # One join in C over all elements (the bulk of a ruleset), one element per line.
        items = map(" : ".join, elems.items()) if kind == "map" and elems else iter(elems or ())
        if extra:
            items = chain(items, extra)
        lines.append("\t\t\t" + _ELEMENT_SEP.join(items) + ",")
        lines.append("\t\t}")
    lines.append("\t}")


def _picks_text(picks: Iterable[tuple[PickKey, bytes]]) -> dict[str, list[str]]:
    """map -> element text of the given picks, in their order."""
    out: dict[str, list[str]] = {}
    for (name, owner), endpoints in picks:
        out.setdefault(name, []).extend(_pick_elems(owner, endpoints))
    return out


def _chain_lines(lines: list[str], name: str, rules: tuple[str, ...]) -> None:
    lines.append(f"\tchain {name} {{")
    if name in BASE_CHAINS:
        lines.append(f"\t\t{BASE_CHAINS[name].replace(' ;', ';')}")
    lines.extend(f"\t\t{rule}" for rule in rules)
    lines.append("\t}")


# Service ports per part of a streamed ruleset: small enough that nft starts parsing early,
# large enough that the repeated map headers cost nothing.
STREAM_BATCH = 64
# Bytes handed to nft at a time. Each time nft has read all we wrote it sleeps until the next
# write; on a loaded machine every wake-up waits for a CPU, so a few large writes (4 or 5 at
# 1k services) keep the overlap without paying that wait once per part.
WRITE_BATCH = 128 * 1024
TAIL = "}\n"


def head_text(state: NftState) -> str:
    """`table ip edgesite {` with the sets (and elements) and chains of `state`, left open.

    The block is closed only by TAIL, after the parts: a ruleset cut short anywhere is a
    syntax error, so nft applies nothing of it.
    """
    lines = [f"table {_T} {{"]
    # Insertion order (services sorted by key) is stable already; sorting 100k elements
    # again would cost more than the rest of the element rendering.
    picks = _picks_text(state.picks.items())
    for name, decl in state.sets.items():
        _set_lines(lines, name, decl, state.elements.get(name), picks.get(name))
    for name, rules in state.chains.items():
        _chain_lines(lines, name, rules)
    return "\n".join(lines) + "\n"


class Parts:
    """Renders fragments, in order, as parts of the open table block.

    Each part declares the new sets and chains of its fragments and re-declares the maps it
    adds elements to (nft merges repeated declarations into one set), so a part can be
    written as soon as its services are rendered. Shared chains go out once; a map key
    already sent keeps its first value (a second value would make the kernel refuse all).
    `state` collects what was sent: the same as `merge` of the fragments, for free.
    """

    def __init__(self, head: NftState) -> None:
        self.state = NftState(
            dict(head.chains),
            dict(head.sets),
            {n: dict(e) for n, e in head.elements.items()},
            dict(head.picks),
        )

    def text(self, fragments: list[Fragment]) -> str:
        state = self.state
        lines: list[str] = []
        chains: list[tuple[str, tuple[str, ...]]] = []
        merged: dict[str, dict[str, str]] = {}
        sizes: dict[str, int] = {}
        picks: list[tuple[PickKey, bytes]] = []
        for f in fragments:
            for name, owner, endpoints in f.picks:
                if (name, owner) not in state.picks:  # first claim, as for map keys
                    state.picks[(name, owner)] = endpoints
                    picks.append(((name, owner), endpoints))
            for name, decl in f.sets.items():
                if name not in state.sets:
                    state.sets[name] = decl
                    _set_lines(lines, name, decl, None)
            for name, rules in f.chains.items():
                if name not in state.chains:
                    state.chains[name] = rules
                    chains.append((name, rules))
            for name, elems in f.elements.items():
                target = merged.get(name)
                if target is None:
                    merged[name] = target = {}
                target.update(elems)
                sizes[name] = sizes.get(name, 0) + len(elems)
        for name, rules in chains:  # after the sets their rules use
            _chain_lines(lines, name, rules)
        pick_text = _picks_text(picks)
        for name in sorted(pick_text.keys() - merged.keys()):
            merged[name] = {}
        for name, elems in merged.items():  # after the chains their verdicts name
            decl = state.sets[name]
            sent = state.elements.get(name)
            if sent is None:
                state.elements[name] = sent = {}
            if _kind_of(decl) == "map" and (
                len(elems) != sizes.get(name, 0) or not sent.keys().isdisjoint(elems)
            ):
                elems = _first_claims(fragments, name, sent)
            sent.update(elems)
            _set_lines(lines, name, decl, elems, pick_text.get(name))
        return "\n".join(lines) + "\n" if lines else ""


def _first_claims(fragments: list[Fragment], name: str, sent: dict[str, str]) -> dict[str, str]:
    """Keys of one map, first claim wins (rare: two services with the same IP and port)."""
    out: dict[str, str] = {}
    for f in fragments:
        for key, value in f.elements.get(name, {}).items():
            if key not in sent and key not in out:
                out[key] = value
    return out


def ruleset_text(base: NftState, fragments: list[Fragment]) -> str:
    """The table for these fragments as one `nft -f` file, exactly as a full sync streams it
    (operators, golden files and the benchmark's raw apply)."""
    parts = Parts(base)
    chunks = [head_text(base)]
    for i in range(0, len(fragments), STREAM_BATCH):
        chunks.append(parts.text(fragments[i : i + STREAM_BATCH]))
    chunks.append(TAIL)
    return "".join(chunks)


def render_text(state: NftState) -> str:
    """A merged state as one `nft -f` file (the probe and tools that hold a whole state)."""
    return head_text(state) + TAIL


def _add_chain(name: str) -> str:
    if name in BASE_CHAINS:
        return f"add chain {_T} {name} {{ {BASE_CHAINS[name]} }}"
    return f"add chain {_T} {name}"


def _kind_of(decl: str) -> str:
    return "map" if " : " in decl else "set"


def _add_set(name: str, decl: str) -> str:
    return f"add {_kind_of(decl)} {_T} {name} {{ {decl} }}"


def _kind(state: NftState, name: str) -> str:
    return _kind_of(state.sets.get(name, ""))


def reset_script() -> str:
    """Empties our table without knowing what is in it, keeping dynamic set contents.

    The static sets are declared first (a no-op when they exist) so they can be flushed by
    name; `flush table` empties every chain but leaves set elements. Unlike deleting and
    recreating the table, this keeps the affinity sets (clients stay on their endpoint) and
    never leaves a moment without rules. Chains and sets left over from services that are
    gone are empty and unreferenced afterwards; `FullApply` deletes them after the apply.
    """
    lines = [f"add table {_T}", f"table {_T} {{"]
    for name, decl in STATIC_SETS.items():
        _set_lines(lines, name, decl, None)
    lines += ["}", f"flush table {_T}"]
    lines += [f"flush {_kind_of(decl)} {_T} {name}" for name, decl in STATIC_SETS.items()]
    return "\n".join(lines) + "\n"


def partial_script(old: NftState, new: NftState, touched_sets: set[str] | None = None) -> str:
    """Only the differences between two states; empty when nothing changed.

    Chains are compared by identity first: unchanged services keep the very same tuples,
    so comparing ten thousand chains costs little. `touched_sets` limits the element
    comparison to the sets a change can have touched.
    """
    out = []
    for name, decl in new.sets.items():
        if name not in old.sets:
            out.append(_add_set(name, decl))
    for name in new.chains:
        if name not in old.chains:
            out.append(_add_chain(name))
    adds = []
    for name, elems in new.elements.items():
        if touched_sets is not None and name not in touched_sets:
            continue
        prev = old.elements.get(name, {})
        if prev is elems:
            continue
        gone = [k for k, v in prev.items() if elems.get(k) != v]
        if gone:
            out.append(f"delete element {_T} {name} {{ {', '.join(gone)} }}")
        fresh = [_elem(k, v) for k, v in elems.items() if prev.get(k) != v]
        if fresh:
            adds.append(f"add element {_T} {name} {{ {', '.join(fresh)} }}")
    pick_gone, pick_fresh = _pick_diff(old.picks, new.picks, old.picks.keys() | new.picks.keys())
    out += pick_gone
    adds += pick_fresh
    changed = [
        n
        for n, rules in new.chains.items()
        if n in old.chains and old.chains[n] is not rules and old.chains[n] != rules
    ]
    removed = [n for n in old.chains if n not in new.chains]
    for name in (*changed, *removed):
        out.append(f"flush chain {_T} {name}")
    for name in removed:
        out.append(f"delete chain {_T} {name}")
    for name in old.sets:
        if name not in new.sets:
            out.append(f"delete set {_T} {name}")
    for name, rules in new.chains.items():
        if name not in old.chains or name in changed:
            out.extend(f"add rule {_T} {name} {rule}" for rule in rules)
    out.extend(adds)
    return "\n".join(out) + "\n" if out else ""


_LISTING = f"list chains {FAMILY}\nlist sets {FAMILY}\nlist maps {FAMILY}\n"


def _pick_diff(
    old: dict[PickKey, bytes],
    wanted: dict[PickKey, bytes | None] | dict[PickKey, bytes],
    keys: Iterable[PickKey],
) -> tuple[list[str], list[str]]:
    """`delete element` and `add element` commands that turn the picks `old` into `wanted`.

    Only the indexes whose endpoint changed move, as with map elements.
    """
    gone: dict[str, list[str]] = {}
    fresh: dict[str, list[str]] = {}
    for key in sorted(keys):
        packed_before, packed_after = old.get(key, b""), wanted.get(key) or b""
        if packed_before is packed_after or packed_before == packed_after:
            continue
        before, after = unpack_endpoints(packed_before), unpack_endpoints(packed_after)
        name, owner = key
        for i, ep in enumerate(before):
            if i >= len(after) or after[i] != ep:
                gone.setdefault(name, []).append(f"{owner} . {i}")
        for i, (ip, port) in enumerate(after):
            if i >= len(before) or before[i] != (ip, port):
                fresh.setdefault(name, []).append(f"{owner} . {i} : {ip} . {port}")
    return (
        [f"delete element {_T} {n} {{ {', '.join(k)} }}" for n, k in gone.items()],
        [f"add element {_T} {n} {{ {', '.join(e)} }}" for n, e in fresh.items()],
    )


def parse_listing(listing: str) -> tuple[set[str], set[str]]:
    """Names of our chains and sets/maps in `nft -t` output of `_LISTING`."""
    chains: set[str] = set()
    sets: set[str] = set()
    ours = False
    for line in listing.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "table":
            ours = words[1] == FAMILY and words[2] == TABLE
        elif ours and len(words) >= 2 and words[0] == "chain":
            chains.add(words[1])
        elif ours and len(words) >= 2 and words[0] in ("set", "map"):
            sets.add(words[1])
    return chains, sets


def list_existing(runner: Runner) -> tuple[set[str], set[str]]:
    """Names of the chains and sets/maps our table has in the kernel right now."""
    # One nft process for both listings; terse (-t) leaves out set elements.
    return parse_listing(runner.run(["nft", "-t", "-f", "-"], _LISTING))


class FullApply:
    """One full sync, streamed into `nft` while it is rendered.

    nft 1.0.x reads `-f -` whole before parsing, but reads a file named by path in 4 KiB
    pieces as it parses: given our pipe as /proc/self/fd/0 it parses on the other core while
    we still build services. Still one transaction: nft sends nothing to the kernel before
    the whole input is parsed, and the table block is closed only by the last line, so a
    stream cut short (we fail or die half-way) is a syntax error and nothing is applied.
    Writes never block while services are added (the caller holds the event lock): what the
    pipe cannot take waits in `pending` until `finish`.

    Nothing is read from the kernel before the apply: `reset_script` works on any content
    (and is left out when a netlink request says our table does not exist).
    The same nft lists the names of our chains and sets (list commands at the start of the
    input); those the new state does not have are deleted after the apply, in a second
    small transaction, only when there are any (after a restart, or hand-made additions).
    """

    def __init__(self, backend: NftBackend, state: NftState | None = None) -> None:
        self.backend = backend
        self.runner = backend.runner
        self.state = state  # a complete state (tools), or None: built from added fragments
        head = state or backend.base
        self.parts = Parts(head)
        self.fragments: list[Fragment] = []
        self.batch: list[Fragment] = []
        self.chunks = [head_text(head)]  # the table block, kept for a recreate retry
        self.pending: deque[memoryview] = deque()
        self.error: str | None = None
        self.proc: Child | None = None
        self.cpus: set[int] | None = None  # this thread's CPUs while nft has the others
        self.fd = -1
        self.queued = 0  # bytes queued since the last write
        try:
            # -t: the listing at the start of the input leaves out set elements.
            self.proc = self.runner.spawn(["nft", "-t", "-f", "/proc/self/fd/0"])
        except ApplyError as exc:
            self.error = str(exc)
            return
        self.fd = self.proc.stdin_fd
        self.cpus = split_cpus(self.proc.pid)
        with contextlib.suppress(OSError):
            # A 1 MiB pipe holds a 1k-service ruleset: we rarely wait for nft at all.
            fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        os.set_blocking(self.fd, False)
        if self.runner.prefix or table_exists(socket.AF_INET, TABLE) is not False:
            # The listing runs on nft's cache, filled before the transaction is sent, so
            # it costs no process of its own; it is printed only after all input was read.
            self._send(_LISTING + reset_script(), keep=False)
        # else: our table is not there (a boot, a fresh node): nothing to reset or list, and
        # nft evaluates elements faster when the block itself creates the table (5-10 % of
        # the apply at 1k services). Checked only in our own namespace (no runner prefix).
        self._send(self.chunks[0], keep=False)

    def add(self, fragments: list[Fragment]) -> None:
        """The fragments of the next service (services come in a stable order)."""
        self.fragments.extend(fragments)
        self.batch.extend(fragments)
        if len(self.batch) >= STREAM_BATCH:
            self._send(self.parts.text(self.batch))
            self.batch = []

    def _send(self, text: str, keep: bool = True) -> None:
        if keep:
            self.chunks.append(text)
        if self.fd >= 0:
            self.pending.append(memoryview(text.encode()))
            self.queued += len(self.pending[-1])
            if self.queued >= WRITE_BATCH:
                self.queued = 0
                self._pump()

    def _pump(self) -> None:
        while self.pending and self.fd >= 0:
            data = self.pending[0]
            try:
                sent = os.write(self.fd, data)
            except BlockingIOError:
                return
            except OSError:  # nft is gone: its exit status and message tell why
                self.pending.clear()
                self._close()
                return
            if sent < len(data):
                self.pending[0] = data[sent:]
            else:
                self.pending.popleft()

    def _close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.close_stdin()
        self.fd = -1

    def abort(self) -> None:
        """Nothing is applied: nft is killed before it has the end of the block."""
        self._close()
        restore_cpus(self.cpus)
        self.cpus = None
        if self.proc is not None:
            self.proc.close()

    def finish(self) -> str:
        try:
            return self._finish()
        finally:
            self.abort()  # no-op when nft is done

    def _finish(self) -> str:
        if self.batch:
            self._send(self.parts.text(self.batch))
            self.batch = []
        self._send(TAIL)
        if self.fd >= 0:
            os.set_blocking(self.fd, True)
            self._pump()
            self._close()
        if self.error is not None or self.proc is None:
            raise ApplyError(self.error or "nft did not start")
        backend = self.backend
        # Counted while nft parses and commits.
        if self.state is None:
            state = self.parts.state
            refs: Refs | None = _count_refs(backend.base, self.fragments)
        else:
            state, refs = self.state, None
        try:
            out, err = self.proc.communicate(timeout=self.runner.timeout)
        except (OSError, ChildTimeout) as exc:
            raise ApplyError(f"nft: {exc}") from exc
        recreated = False
        code = self.proc.returncode
        assert code is not None  # communicate reaped nft
        if code != 0:
            # Something we do not expect is in our table (a base chain edited by hand,
            # a set redefined): replace the table wholesale, still in one transaction.
            backend.applied = None
            first = _error_text(code, err)
            try:
                self.runner.run(["nft", "-f", "-"], recreate_script_of(self.chunks))
            except ApplyError as exc:
                raise ApplyError(f"{first}; recreating the table: {exc}") from exc
            recreated = True
        if not recreated:
            self._delete_leftovers(state, out)
        backend.applied = state
        backend.refs = refs
        return "full"

    def _delete_leftovers(self, state: NftState, listing: bytes) -> None:
        # The listing shows the kernel's names, possibly with ours added: either way the
        # names the new state lacks are the leftovers.
        chains, sets = parse_listing(listing.decode(errors="replace"))
        # Sets first: a hand-made verdict map could still name a leftover chain.
        script = [f"delete set {_T} {n}" for n in sorted(sets - state.sets.keys())]
        script += [f"delete chain {_T} {n}" for n in sorted(chains - state.chains.keys())]
        if script:
            self.runner.apply(["nft", "-f", "-"], "\n".join(script) + "\n")


def _error_text(code: int, err: bytes) -> str:
    lines = err.decode(errors="replace").strip().splitlines()
    # The first lines name the offending input line; thousands of lines help nobody.
    return f"nft -f exited {code}: {' | '.join(lines[:6])}"


# service -> (old, new) fragments
Changes = dict[str, tuple[tuple[Fragment, ...], tuple[Fragment, ...]]]
_CHAIN = ":chain"  # refs entry for the chains; no set name has a colon
# set name (or _CHAIN) -> element key (or chain name) -> how many service ports want it, kept
# only for counts of 2 or more: almost every element is wanted by one service port, and a
# chain or element present in the applied state and absent here counts 1 (absent from both: 0).
Refs = dict[str, dict[str, int]]


class NftBackend:
    name = "nftables"

    def __init__(self, settings: ProxySettings, runner: Runner) -> None:
        self.settings = settings
        self.runner = runner
        self.base = base_state(settings)
        self.applied: NftState | None = None
        # How many service ports want each shared (set, element): an endpoint in several
        # services shares one hairpin element, which must stay until the last of them lets it
        # go. Only counts above 1 are kept (see Refs): ~25k counts of 1 cost ~0.3 MiB.
        # None: unknown (state applied without its fragments); the next sync recounts.
        self.refs: Refs | None = None
        # Fragments are never changed once built: equal chain tables (most services use the
        # same shared pick chain) and the empty set table are kept once, not once per
        # service (~0.4 MiB at 1,000 services).
        self._shared_pieces: SharedPieces = {}
        self._no_sets: dict[str, str] = {}

    def render(self, fragments: list[Fragment]) -> NftState:
        return merge(self.base, fragments)

    def fragment(self, sp: ServicePortModel) -> Fragment:
        frag = render_fragment(sp, self.settings, self._shared_pieces)
        if not frag.sets:
            frag.sets = self._no_sets
        return frag

    def sync(
        self, all_fragments: Callable[[], list[Fragment]], changes: Changes | None, full: bool
    ) -> str:
        """Program the rules; "full", "partial" or "noop". Every apply is one transaction.

        A partial sync costs in proportion to the changed services (`changes`), not to
        all of them: `all_fragments` is only called when the whole state is needed.
        """
        late, self.runner.late_error = self.runner.late_error, None
        if late is not None:
            self.applied = None  # the proxy retries with a full sync
            raise ApplyError(f"an earlier apply failed after the kernel took it: {late}")
        if full or self.applied is None:
            session = FullApply(self)
            for frag in all_fragments():
                session.add([frag])
            return session.finish()
        if changes is None or self.refs is None or self._picks_contested(changes):
            fragments = all_fragments()
            state = self.render(fragments)
            refs = _count_refs(self.base, fragments)
            return self._run_partial(partial_script(self.applied, state), state, refs)
        return self._incremental(changes)

    def apply(self, state: NftState, full: bool) -> str:
        """Program a complete state (tools and tests); see `sync` for the proxy's path."""
        if full or self.applied is None:
            return self._full(state)
        return self._run_partial(partial_script(self.applied, state), state, None)

    def _full(self, state: NftState) -> str:
        return FullApply(self, state).finish()

    def begin_full(self) -> FullApply:
        """A full sync whose fragments are added while they are built (see FullApply)."""
        return FullApply(self)

    def _run_partial(self, script: str, state: NftState, refs: Refs | None) -> str:
        if script:
            try:
                self.runner.apply(["nft", "-f", "-"], script)
            except ApplyError:
                self.applied = None  # kernel state unknown now: next attempt is a full sync
                raise
        self.applied = state
        self.refs = refs  # None when only the state is known: the next sync recounts
        return "partial" if script else "noop"

    def _picks_contested(self, changes: Changes) -> bool:
        """True when a changed service shares a service IP and port with another one.

        Only in an invalid cluster (two Services with the same IP, protocol and port): which
        one owns the endpoints then depends on all services (first claim in key order), so
        such a change is diffed against the whole state instead of applied as a delta.
        """
        assert self.applied is not None and self.refs is not None
        applied, refs = self.applied.picks, self.refs
        for old, new in changes.values():
            mine = {(n, o) for f in old for n, o, e in f.picks if applied.get((n, o)) is e}
            for f in (*old, *new):
                for name, owner, _ in f.picks:
                    if (name, owner) in applied and (name, owner) not in mine:
                        return True
                    proto = name.rsplit("-", 1)[1]
                    if name.startswith("nodeport-"):
                        shared = refs.get("service-nodeports", {}).get(f"{proto} . {owner}", 0)
                    else:
                        ip, _, port = owner.partition(" . ")
                        shared = refs.get("service-ips", {}).get(f"{ip} . {proto} . {port}", 0)
                    if shared > 1:
                        return True
        return False

    def _incremental(self, changes: Changes) -> str:
        """The script for the changed services only, built from their old and new fragments.

        Chains and elements are reference-counted: a shared pick chain or a hairpin element
        stays while any service still wants it. Costs in proportion to the changed services.
        """
        assert self.applied is not None and self.refs is not None
        old_state = self.applied
        refs = self.refs
        bodies: dict[str, tuple[str, ...]] = {}
        sets: dict[str, str | None] = {}
        values: dict[tuple[str, str], str] = {}
        # (set or _CHAIN, key) -> change of its count by the changed services
        delta: dict[tuple[str, str], int] = {}
        applied_picks = old_state.picks
        # picks that change: key -> new endpoints (None: gone). A pick is the changed
        # service's only while the applied tuple is its own (first claim, see NftState).
        pick_updates: dict[PickKey, bytes | None] = {}
        for old, _new in changes.values():
            for f in old:
                for name, owner, endpoints in f.picks:
                    if applied_picks.get((name, owner)) is endpoints:
                        pick_updates[(name, owner)] = None
        for _old, new in changes.values():
            for f in new:
                for name, owner, endpoints in f.picks:
                    key = (name, owner)
                    # Free: let go by a changed service, or never claimed; first claim wins.
                    if key in pick_updates:
                        free = pick_updates[key] is None
                    else:
                        free = key not in applied_picks
                    if free:
                        pick_updates[key] = endpoints
        for old, new in changes.values():
            for f in old:
                for name in f.chains:
                    delta[(_CHAIN, name)] = delta.get((_CHAIN, name), 0) - 1
                for name in f.sets:
                    sets.setdefault(name, None)
                for set_name, elems in f.elements.items():
                    for key in elems:
                        delta[(set_name, key)] = delta.get((set_name, key), 0) - 1
            for f in new:
                for name, body in f.chains.items():
                    delta[(_CHAIN, name)] = delta.get((_CHAIN, name), 0) + 1
                    bodies[name] = body
                sets.update(f.sets)
                for set_name, elems in f.elements.items():
                    for key, value in elems.items():
                        delta[(set_name, key)] = delta.get((set_name, key), 0) + 1
                        values[(set_name, key)] = value

        head: list[str] = []
        new_sets = {n: d for n, d in sets.items() if d is not None and n not in old_state.sets}
        head += [_add_set(name, decl) for name, decl in new_sets.items()]
        gone_sets = [n for n, d in sets.items() if d is None and n in old_state.sets]
        flush, delete, rules = [], [], []
        chain_updates: dict[str, tuple[str, ...] | None] = {}
        gone: dict[str, list[str]] = {}
        fresh: dict[str, list[str]] = {}
        elem_updates: list[tuple[str, str, str | None]] = []
        for (set_name, key), by in sorted(delta.items()):
            # The applied state is only updated after the loop: it still tells the old counts.
            present = old_state.chains if set_name == _CHAIN else old_state.elements.get(set_name)
            shared = refs.get(set_name)
            if shared is not None and key in shared:
                count = shared[key] + by
            else:
                count = (1 if present is not None and key in present else 0) + by
            if count > 1:
                refs.setdefault(set_name, {})[key] = count
            elif shared is not None:
                shared.pop(key, None)
            if set_name == _CHAIN:
                before = old_state.chains.get(key)
                if count <= 0:
                    if before is not None:
                        flush.append(key)
                        delete.append(key)
                        chain_updates[key] = None
                    continue
                # Still wanted by an unchanged service only: keep it as it is.
                body = bodies.get(key, before)
                if body is None or body == before:
                    continue
                if before is None:
                    head.append(_add_chain(key))
                else:
                    flush.append(key)
                chain_updates[key] = body
                rules.extend(f"add rule {_T} {key} {rule}" for rule in body)
                continue
            current = old_state.elements.get(set_name, {})
            have = current.get(key)
            want = values.get((set_name, key), have) if count > 0 else None
            if key in current and (want is None or want != have):
                gone.setdefault(set_name, []).append(key)
            if want is not None and (key not in current or want != have):
                fresh.setdefault(set_name, []).append(_elem(key, want))
            if (want is None and key in current) or (want is not None and want != have):
                elem_updates.append((set_name, key, want))
        pick_gone, pick_fresh = _pick_diff(applied_picks, pick_updates, pick_updates.keys())
        out = head
        out += [f"delete element {_T} {n} {{ {', '.join(keys)} }}" for n, keys in gone.items()]
        out += pick_gone
        out += [f"flush chain {_T} {name}" for name in flush]
        out += [f"delete chain {_T} {name}" for name in delete]
        out += [f"delete set {_T} {name}" for name in gone_sets]
        out += rules
        out += [f"add element {_T} {n} {{ {', '.join(e)} }}" for n, e in fresh.items()]
        out += pick_fresh
        script = "\n".join(out) + "\n" if out else ""
        if script:
            try:
                self.runner.apply(["nft", "-f", "-"], script)
            except ApplyError:
                # Kernel state unknown now (and `refs` already moved): the next is a full sync.
                self.applied = None
                self.refs = None
                raise
        # Applied: update the state in place, copying nothing that did not change.
        state = old_state
        state.sets.update(new_sets)
        for name in gone_sets:
            del state.sets[name]
        for name, body in chain_updates.items():
            if body is None:
                del state.chains[name]
            else:
                state.chains[name] = body
        for key, endpoints in pick_updates.items():
            if endpoints is None:
                applied_picks.pop(key, None)
            else:
                applied_picks[key] = endpoints
        for set_name, key, want in elem_updates:
            elems = state.elements.setdefault(set_name, {})
            if want is None:
                elems.pop(key, None)
            else:
                elems[key] = want
        return "partial" if script else "noop"

    def cleanup(self) -> None:
        cleanup(self.runner)


def _count_refs(base: NftState, fragments: list[Fragment]) -> Refs:
    keys: dict[str, list[Iterable[str]]] = {_CHAIN: [base.chains]}
    for name, elems in base.elements.items():
        keys.setdefault(name, []).append(elems)
    for f in fragments:
        keys[_CHAIN].append(f.chains)
        for name, elems in f.elements.items():
            keys.setdefault(name, []).append(elems)
    # Counter counts an iterable in C: this runs on every full sync of every service. Only the
    # shared ones are kept (see Refs).
    refs: Refs = {}
    for name, parts in keys.items():
        shared = {key: n for key, n in Counter(chain.from_iterable(parts)).items() if n > 1}
        if shared:
            refs[name] = shared
    return refs


def recreate_script_of(chunks: list[str]) -> str:
    return "".join([f"add table {_T}\ndelete table {_T}\n", *chunks])


def cleanup(runner: Runner) -> bool:
    """Delete our table; True when there was one."""
    out = runner.run(["nft", "list", "tables", FAMILY], check=False)
    if f"table {_T}" not in out:
        return False
    runner.run(["nft", "delete", "table", FAMILY, TABLE])
    return True


def available(runner: Runner) -> bool:
    """nft >= 1.0 and a kernel that accepts our kind of table (checked, not applied)."""
    try:
        version = runner.run(["nft", "--version"]).split()
    except ApplyError:
        return False
    num = next((w.lstrip("v") for w in version if w[:1] == "v" and w[1:2].isdigit()), "0")
    try:
        if int(num.split(".")[0]) < 1:
            return False
    except ValueError:
        return False
    probe = render_text(base_state(ProxySettings())).replace(
        f"table {_T}", f"table {FAMILY} edgesite-probe", 1
    )
    try:
        runner.run(["nft", "-c", "-f", "-"], probe)
    except ApplyError:
        return False
    return True
