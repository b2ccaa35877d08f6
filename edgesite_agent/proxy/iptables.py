"""iptables backend (fallback): `iptables-restore --noflush` writing only chains named ESITE-*.

Never flushes a table: every chain we write is declared (which empties just that chain) and
refilled in one restore, so other software's rules are never touched. Structure follows
kube-proxy's iptables mode: a dispatch chain per table, a chain per service port (SVC),
per local-endpoints set (SVL), per external entry (EXT) and per endpoint (SEP); endpoints are
picked with `statistic --mode random` and remembered for affinity with the `recent` module.
"""

from __future__ import annotations

from collections.abc import Callable

from edgesite_agent.proxy.config import ProxySettings
from edgesite_agent.proxy.model import Endpoint, ServicePortModel, short_hash
from edgesite_agent.proxy.record import Record
from edgesite_agent.proxy.runner import ApplyError, Runner

PREFIX = "ESITE-"
SERVICES = "ESITE-SERVICES"
EXTERNAL = "ESITE-EXTERNAL-SERVICES"
NODEPORTS = "ESITE-NODEPORTS"
MARK_MASQ = "ESITE-MARK-MASQ"
MASQ_CHECK = "ESITE-MASQ-CHECK"
POSTROUTING = "ESITE-POSTROUTING"
TABLES = ("nat", "filter")

# (table, builtin chain, match, target): the only rules we put in chains we do not own.
HOOKS = (
    ("nat", "PREROUTING", [], SERVICES),
    ("nat", "OUTPUT", [], SERVICES),
    ("nat", "POSTROUTING", [], POSTROUTING),
    ("filter", "INPUT", ["-m", "conntrack", "--ctstate", "NEW"], EXTERNAL),
    ("filter", "INPUT", ["-m", "conntrack", "--ctstate", "NEW"], SERVICES),
    ("filter", "FORWARD", ["-m", "conntrack", "--ctstate", "NEW"], EXTERNAL),
    ("filter", "FORWARD", ["-m", "conntrack", "--ctstate", "NEW"], SERVICES),
    ("filter", "OUTPUT", ["-m", "conntrack", "--ctstate", "NEW"], SERVICES),
)
COMMENT = ["-m", "comment", "--comment", "edgesite-proxy"]


class IptState(Record):
    __slots__ = ("tables",)

    def __init__(self, tables: dict[str, dict[str, tuple[str, ...]]] | None = None) -> None:
        # table -> chain -> rules (without "-A CHAIN"); insertion order is rule order
        self.tables = {t: {} for t in TABLES} if tables is None else tables


class Fragment(Record):
    __slots__ = ("chains", "dispatch")

    def __init__(
        self,
        chains: dict[str, dict[str, tuple[str, ...]]],  # table -> chain -> rules (own chains)
        dispatch: dict[str, list[str]],  # "nat:ESITE-SERVICES" etc. -> rules in shared chains
    ) -> None:
        self.chains = chains
        self.dispatch = dispatch


def _name(kind: str, text: str) -> str:
    return f"{PREFIX}{kind}-{short_hash(text, 16)}"


def _match(proto: str, port: int, dst: str | None = None) -> str:
    where = f"-d {dst}/32 " if dst else ""
    return f"{where}-p {proto} -m {proto} --dport {port}"


def _pick(sp: ServicePortModel, endpoints: tuple[Endpoint, ...], seps: dict[str, str]) -> list[str]:
    rules = []
    if sp.affinity_timeout:
        for ip, port in endpoints:
            sep = seps[f"{ip}:{port}"]
            rules.append(
                f"-m recent --name {sep} --rcheck --seconds {sp.affinity_timeout} --reap -j {sep}"
            )
    n = len(endpoints)
    for i, (ip, port) in enumerate(endpoints):
        sep = seps[f"{ip}:{port}"]
        if i < n - 1:
            rules.append(f"-m statistic --mode random --probability {1 / (n - i):.10f} -j {sep}")
        else:
            rules.append(f"-j {sep}")
    return rules


def render_fragment(sp: ServicePortModel, settings: ProxySettings) -> Fragment:
    nat: dict[str, tuple[str, ...]] = {}
    dispatch: dict[str, list[str]] = {
        "nat:services": [],
        "nat:nodeports": [],
        "filter:services": [],
        "filter:external": [],
    }
    proto, port = sp.protocol, sp.port
    if not sp.has_endpoints:
        reject = "-j REJECT --reject-with icmp-port-unreachable"
        for ip in sp.cluster_ips:
            dispatch["filter:services"].append(f"{_match(proto, port, ip)} {reject}")
        for ip in sp.external_ips:
            dispatch["filter:external"].append(f"{_match(proto, port, ip)} {reject}")
        if sp.node_port:
            dispatch["filter:external"].append(
                f"-m addrtype --dst-type LOCAL {_match(proto, sp.node_port)} {reject}"
            )
        return Fragment({"nat": nat, "filter": {}}, dispatch)

    seps: dict[str, str] = {}
    hairpin = set(sp.hairpin_ips)
    for ip, ep_port in dict.fromkeys((*sp.cluster_endpoints, *sp.local_endpoints)):
        sep = _name("SEP", f"{sp.key}|{ip}:{ep_port}")
        seps[f"{ip}:{ep_port}"] = sep
        rules = [f"-s {ip}/32 -j {MARK_MASQ}"] if ip in hairpin else []
        remember = f"-m recent --name {sep} --set " if sp.affinity_timeout else ""
        rules.append(f"-p {proto} {remember}-j DNAT --to-destination {ip}:{ep_port}")
        nat[sep] = tuple(rules)

    svc = _name("SVC", sp.key)
    masq = []
    if settings.masquerade_all:
        masq = [f"-j {MARK_MASQ}"]
    elif settings.cluster_cidrs:
        masq = [f"-j {MASQ_CHECK}"]
    if not sp.internal_local or sp.is_external:
        nat[svc] = (*masq, *_pick(sp, sp.cluster_endpoints, seps))
    svl = _name("SVL", sp.key)
    if sp.needs_local_chain and sp.local_endpoints:
        nat[svl] = tuple(_pick(sp, sp.local_endpoints, seps))
    no_local = sp.needs_local_chain and not sp.local_endpoints
    for ip in sp.cluster_ips:
        if sp.internal_local and no_local:
            # Endpoints exist, only not on this node: drop (nat chains cannot drop).
            dispatch["filter:services"].append(f"{_match(proto, port, ip)} -j DROP")
        else:
            target = svl if sp.internal_local else svc
            dispatch["nat:services"].append(f"{_match(proto, port, ip)} -j {target}")
    if sp.is_external:
        ext = _name("EXT", sp.key)
        if sp.external_local:
            rules = [
                f"-m addrtype --src-type LOCAL -j {MARK_MASQ}",
                f"-m addrtype --src-type LOCAL -j {svc}",
            ]
            rules += [f"-s {cidr} -j {svc}" for cidr in settings.cluster_cidrs]
            if sp.local_endpoints:
                rules.append(f"-j {svl}")
        else:
            rules = [f"-j {MARK_MASQ}", f"-j {svc}"]
        nat[ext] = tuple(rules)
        for ip in sp.external_ips:
            dispatch["nat:services"].append(f"{_match(proto, port, ip)} -j {ext}")
            if sp.external_local and no_local:
                dispatch["filter:external"].append(f"{_match(proto, port, ip)} -j DROP")
        if sp.node_port:
            dispatch["nat:nodeports"].append(f"{_match(proto, sp.node_port)} -j {ext}")
            if sp.external_local and no_local:
                dispatch["filter:external"].append(
                    f"-m addrtype --dst-type LOCAL {_match(proto, sp.node_port)} -j DROP"
                )
    return Fragment({"nat": nat, "filter": {}}, dispatch)


def merge(settings: ProxySettings, fragments: list[Fragment]) -> IptState:
    mark = f"0x{settings.masquerade_mark:x}"
    state = IptState()
    nat, flt = state.tables["nat"], state.tables["filter"]
    dispatch: dict[str, list[str]] = {
        "nat:services": [],
        "nat:nodeports": [],
        "filter:services": [],
        "filter:external": [],
    }
    for frag in fragments:
        for table, chains in frag.chains.items():
            state.tables[table].update(chains)
        for key, rules in frag.dispatch.items():
            dispatch[key].extend(rules)
    if settings.nodeport_addresses:
        to_nodeports = [
            f"-d {cidr} -m addrtype --dst-type LOCAL -j {NODEPORTS}"
            for cidr in settings.nodeport_addresses
        ]
    else:
        to_nodeports = [f"! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j {NODEPORTS}"]
    # Fixed chains first so a restore declares them before any rule jumps to them.
    fixed_nat = {
        MARK_MASQ: (f"-j MARK --or-mark {mark}",),
        MASQ_CHECK: (
            *(f"-s {cidr} -j RETURN" for cidr in settings.cluster_cidrs),
            f"-j {MARK_MASQ}",
        ),
        POSTROUTING: (
            f"-m mark ! --mark {mark}/{mark} -j RETURN",
            f"-j MARK --xor-mark {mark}",
            "-j MASQUERADE --random-fully",
        ),
        NODEPORTS: tuple(dispatch["nat:nodeports"]),
        SERVICES: (*dispatch["nat:services"], *to_nodeports),
    }
    state.tables["nat"] = {**fixed_nat, **nat}
    flt[SERVICES] = tuple(dispatch["filter:services"])
    flt[EXTERNAL] = tuple(dispatch["filter:external"])
    return state


def restore_text(
    state: IptState,
    old: IptState | None = None,
    stale: dict[str, set[str]] | None = None,
    hooks: dict[str, list[str]] | None = None,
) -> str:
    """Restore input writing the chains that differ from `old` (all when `old` is None)."""
    out = []
    for table in TABLES:
        chains = state.tables[table]
        prev = old.tables[table] if old else {}
        write = [c for c, rules in chains.items() if old is None or prev.get(c) != rules]
        remove = sorted(
            ({c for c in prev if c not in chains} | (stale or {}).get(table, set())) - set(chains)
        )
        inserts = (hooks or {}).get(table, [])
        if not write and not remove and not inserts:
            continue
        out.append(f"*{table}")
        out.extend(f":{c} - [0:0]" for c in (*write, *remove))
        for c in write:
            out.extend(f"-A {c} {rule}" for rule in chains[c])
        out.extend(inserts)
        out.extend(f"-X {c}" for c in remove)
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def render_text(state: IptState) -> str:
    return restore_text(state)


class IptablesBackend:
    name = "iptables"

    def __init__(self, settings: ProxySettings, runner: Runner, binary: str = "iptables") -> None:
        self.settings = settings
        self.runner = runner
        self.binary = binary
        self.applied: IptState | None = None

    def fragment(self, sp: ServicePortModel) -> Fragment:
        return render_fragment(sp, self.settings)

    def render(self, fragments: list[Fragment]) -> IptState:
        return merge(self.settings, fragments)

    def _restore(self, text: str) -> None:
        self.runner.run([f"{self.binary}-restore", "-w", "5", "--noflush"], text)

    def sync(self, all_fragments: Callable[[], list[Fragment]], changes: object, full: bool) -> str:
        """Program the rules. The dispatch chains are linear here anyway, so the whole
        state is rendered and only the chains that differ are written."""
        return self.apply(self.render(all_fragments()), full)

    def begin_full(self) -> FullRestore:
        return FullRestore(self)

    def apply(self, state: IptState, full: bool) -> str:
        if full or self.applied is None:
            saved = {t: save(self.runner, self.binary, t) for t in TABLES}
            stale = {t: chains_in(saved[t]) for t in TABLES}
            # Missing jumps from the built-in chains go into the same restore: one process,
            # one transaction, and no window where our chains exist but are not reached.
            text = restore_text(state, None, stale, hooks=missing_hooks(saved))
            self._restore(text)
            self.applied = state
            return "full"
        text = restore_text(state, self.applied)
        if not text:
            return "noop"
        try:
            self._restore(text)
        except ApplyError:
            self.applied = None
            raise
        self.applied = state
        return "partial"

    def cleanup(self) -> None:
        cleanup(self.runner, self.binary)


class FullRestore:
    """A full sync fed service by service, like nft's; applied as one restore at the end.

    iptables-restore has to see the state of our chains (`*-save`) first to write the
    restore, so there is nothing to stream while services are built.
    """

    def __init__(self, backend: IptablesBackend) -> None:
        self.backend = backend
        self.fragments: list[Fragment] = []

    def add(self, fragments: list[Fragment]) -> None:
        self.fragments.extend(fragments)

    def abort(self) -> None:
        self.fragments = []

    def finish(self) -> str:
        return self.backend.apply(self.backend.render(self.fragments), True)


def save(runner: Runner, binary: str, table: str) -> str:
    return runner.run([f"{binary}-save", "-t", table], check=False)


def chains_in(saved: str) -> set[str]:
    return {line[1:].split()[0] for line in saved.splitlines() if line.startswith(f":{PREFIX}")}


def existing_chains(runner: Runner, binary: str, table: str) -> set[str]:
    return chains_in(save(runner, binary, table))


def missing_hooks(saved: dict[str, str]) -> dict[str, list[str]]:
    """table -> `-I` lines for the hook rules that iptables-save does not show."""
    out: dict[str, list[str]] = {}
    for table, chain, match, target in HOOKS:
        present = any(
            line.startswith(f"-A {chain} ")
            and COMMENT[-1] in line
            and line.rstrip().endswith(f"-j {target}")
            for line in saved.get(table, "").splitlines()
        )
        if not present:
            spec = " ".join([*match, *COMMENT])
            out.setdefault(table, []).append(f"-I {chain} {spec} -j {target}")
    return out


def _hook_argv(binary: str, op: str, table: str, chain: str, match: list[str], target: str):
    return [binary, "-w", "5", "-t", table, op, chain, *match, *COMMENT, "-j", target]


def cleanup(runner: Runner, binary: str = "iptables") -> bool:
    """Remove our hooks and every ESITE-* chain; True when something was there."""
    # Reading first: *-save never creates tables, whereas -D would load legacy tables on a
    # host that does not use them. Our hooks cannot exist without our chains.
    stale = {t: existing_chains(runner, binary, t) for t in TABLES}
    if not any(stale.values()):
        return False
    for table, chain, match, target in HOOKS:
        for _ in range(100):  # bounded: duplicates from crashes are removed too
            try:
                runner.run(_hook_argv(binary, "-D", table, chain, match, target))
            except ApplyError:
                break
    runner.run(
        [f"{binary}-restore", "-w", "5", "--noflush"],
        restore_text(IptState(), IptState(), stale),
    )
    return True


def available(runner: Runner, binary: str = "iptables") -> bool:
    try:
        runner.run([binary, "--version"])
        runner.run([f"{binary}-restore", "--version"])
    except ApplyError:
        return False
    return True
