"""Forgetting UDP flows bound to endpoints that left a service.

A UDP "connection" keeps its NAT binding in conntrack for as long as packets keep flowing, so
a client that sends steadily (DNS forwarders, syslog, QUIC) would go on talking to a removed
endpoint forever. kube-proxy deletes those entries after the rules change; so do we. TCP needs
nothing: a removed endpoint's connections end or reset by themselves.
"""

from __future__ import annotations

from edgesite_agent.proxy.runner import ApplyError, Runner, which

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see events.py)
if TYPE_CHECKING:
    import logging

    from edgesite_agent.proxy.model import Endpoint, ServicePortModel


def udp_endpoints(ports: list[ServicePortModel]) -> set[Endpoint]:
    return {
        ep
        for sp in ports
        if sp.protocol == "udp"
        for ep in (*sp.cluster_endpoints, *sp.local_endpoints)
    }


def forget(runner: Runner, endpoints: set[Endpoint], log: logging.Logger) -> int:
    """Delete the UDP flows whose replies come from `endpoints`; returns the flows deleted."""
    if not endpoints or which("conntrack") is None:
        return 0
    deleted = 0
    for ip, port in sorted(endpoints):
        argv = ["conntrack", "-D", "-p", "udp", "--reply-src", ip, "--reply-port-src", str(port)]
        try:
            rc, _, err = runner.call(argv)
        except ApplyError as exc:
            log.warning("proxy: could not clear UDP flows of %s:%d: %s", ip, port, exc)
            continue
        # "N flow entries have been deleted" on stderr; exit 1 when N is 0, which is fine.
        words = err.split()
        if "flow" in words and words[words.index("flow") - 1].isdigit():
            deleted += int(words[words.index("flow") - 1])
        elif rc != 0:
            log.warning("proxy: could not clear UDP flows of %s:%d: %s", ip, port, err.strip())
    return deleted
