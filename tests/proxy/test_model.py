"""Settings validation and the desired-state model (pure Python, no root needed)."""

from __future__ import annotations

import logging

import pytest

from edgesite_agent.proxy import build_proxy
from edgesite_agent.proxy.config import parse_settings
from edgesite_agent.proxy.render import service_ports
from tests.proxy.shapes import NODE, SHAPES, endpoint, endpoint_slice, service, tcp

S = parse_settings({})


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"backend": "ipvs"}, "proxy.backend"),
        ({"min_sync_interval": -1}, "proxy.min_sync_interval"),
        ({"min_sync_interval": "1s"}, "proxy.min_sync_interval"),
        ({"full_resync_interval": 0}, "proxy.full_resync_interval"),
        ({"cluster_cidrs": ["10.0.0.0/33"]}, "proxy.cluster_cidrs"),
        ({"cluster_cidrs": "10.0.0.0/8"}, "proxy.cluster_cidrs"),
        ({"nodeport_addresses": ["fd00::/64"]}, "proxy.nodeport_addresses"),
        ({"masquerade_mark": 3}, "proxy.masquerade_mark"),
        ({"enabled": "yes"}, "proxy.enabled"),
        ({"keep_local_endpoints_when_disconnected": 1}, "proxy.keep_local_endpoints"),
        ({"bakend": "nftables"}, "proxy.bakend: unknown key"),
        ({"netns": "../etc"}, "proxy.netns"),
        ({"iptables_variant": "ebtables"}, "proxy.iptables_variant"),
    ],
)
def test_bad_settings_name_the_key(raw: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        parse_settings(raw)


def test_build_proxy_validates_and_honours_enabled() -> None:
    with pytest.raises(ValueError, match=r"proxy\.backend"):
        build_proxy({"backend": "x"}, NODE, logging.getLogger("t"))
    off = build_proxy({"enabled": False}, NODE, logging.getLogger("t"))
    assert off.ready() and off.on_event("Service", "ADDED", {}) is None


def _ports(objects: list[dict]) -> dict:
    return {sp.key: sp for sp in service_ports(objects, NODE, S)}


def test_terminating_fallback_as_kube_proxy() -> None:
    sp = _ports(SHAPES["terminating-fallback"])["default/term/tcp/http"]
    # No ready endpoint: only the one still serving while terminating is used.
    assert sp.cluster_endpoints == (("10.244.1.14", 8080),)


def test_ready_endpoints_win_over_terminating_ones() -> None:
    objs = [
        service("s", "10.96.1.1", [tcp(80, "http")]),
        endpoint_slice(
            "s",
            [
                endpoint("10.244.1.1"),
                endpoint("10.244.1.2", ready=False, serving=True, terminating=True),
            ],
            [tcp(8080, "http")],
        ),
    ]
    assert _ports(objs)["default/s/tcp/http"].cluster_endpoints == (("10.244.1.1", 8080),)


def test_named_target_port_resolved_through_slice_port_name() -> None:
    ports = _ports(SHAPES["named-target-port-multi-port"])
    assert ports["default/api/tcp/https"].cluster_endpoints == (("10.244.1.8", 8443),)
    assert ports["default/api/tcp/metrics"].cluster_endpoints == (("10.244.1.8", 9090),)


def test_endpoints_merged_across_slices_and_deduplicated() -> None:
    objs = [
        service("m", "10.96.1.2", [tcp(80, "http")]),
        endpoint_slice("m", [endpoint("10.244.1.1")], [tcp(8080, "http")], suffix="a"),
        endpoint_slice(
            "m", [endpoint("10.244.1.1"), endpoint("10.244.1.3")], [tcp(8080, "http")], suffix="b"
        ),
    ]
    sp = _ports(objs)["default/m/tcp/http"]
    assert sp.cluster_endpoints == (("10.244.1.1", 8080), ("10.244.1.3", 8080))


def test_headless_and_foreign_proxy_services_are_skipped() -> None:
    assert _ports(SHAPES["ignored-headless-and-other-proxy"]) == {}


def test_local_policies() -> None:
    sp = _ports(SHAPES["nodeport-local"])["default/npl/tcp/http"]
    assert sp.local_endpoints == (("10.244.1.6", 8080),)
    assert len(sp.cluster_endpoints) == 2
    itl = _ports(SHAPES["internal-local"])["default/itl/tcp/http"]
    assert itl.local_endpoints == () and itl.internal_local


def test_keep_local_endpoints_when_masters_lose_the_node() -> None:
    objs = [
        service("k", "10.96.1.3", [tcp(80, "http")]),
        endpoint_slice(
            "k",
            [
                endpoint("10.244.1.1", ready=False),
                endpoint("10.244.2.1", node="edge-2", ready=False),
            ],
            [tcp(8080, "http")],
        ),
    ]
    from edgesite_agent.proxy.model import build_model
    from edgesite_agent.proxy.render import load_cache

    cache = load_cache(objs)
    plain = build_model(cache, NODE)["default/k"][0]
    kept = build_model(cache, NODE, keep_local_unready=True)["default/k"][0]
    assert plain.cluster_endpoints == ()
    assert kept.cluster_endpoints == (("10.244.1.1", 8080),)  # only our own node's


def test_partial_nft_update_touches_only_the_changed_service() -> None:
    from edgesite_agent.proxy import nft

    objs = [o for o in SHAPES["clusterip"] + SHAPES["nodeport"]]
    before = nft.merge(
        nft.base_state(S), [nft.render_fragment(sp, S) for sp in service_ports(objs, NODE, S)]
    )
    objs[1] = endpoint_slice("web", [endpoint("10.244.1.5")], [tcp(8080, "http")])
    after = nft.merge(
        nft.base_state(S), [nft.render_fragment(sp, S) for sp in service_ports(objs, NODE, S)]
    )
    script = nft.partial_script(before, after)
    # web (10.96.0.10) moves to the shared one-endpoint pick chain; np (10.96.0.20) untouched.
    assert "10.96.0.10 . tcp . 80 : goto pick-cluster-tcp-1" in script
    assert "10.96.0.20" not in script and "30080" not in script
    assert nft.partial_script(after, after) == ""


def test_one_slice_fast_path_chooses_as_the_general_rule() -> None:
    """The single-slice path reads the packed records directly; it must choose exactly what
    the general path (`_usable` over decoded endpoints, for any number of slices) chooses:
    cluster, this node, hairpin, for random mixes of conditions and nodes, with and without
    keeping local endpoints."""
    import random

    from edgesite_agent.proxy.cache import parse_slice
    from edgesite_agent.proxy.model import _from_one_slice, _from_slices, pack_endpoints

    rng = random.Random(7)
    for case in range(400):
        eps = []
        for n in range(rng.randint(1, 12)):
            cond = {k: rng.choice([True, False, None]) for k in ("ready", "serving", "terminating")}
            ep = {"addresses": [f"10.9.{case % 200}.{n + 1}"], "conditions": cond}
            node = rng.choice([NODE, "other-1", "other-2", None])
            if node is not None:
                ep["nodeName"] = node
            eps.append(ep)
        sl = parse_slice({
            "metadata": {"name": f"s{case}", "namespace": "ns",
                         "labels": {"kubernetes.io/service-name": "svc"}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}]})  # fmt: skip
        assert sl is not None
        for keep in (False, True):
            want = _from_slices([(8080, sl)], NODE, keep)
            want_packed = pack_endpoints(want[0])
            # The cluster endpoints come packed only (the model decodes them when asked).
            got = _from_one_slice(sl, 8080, NODE, keep)
            assert got == (None, want[1], want[2], want_packed), (case, keep)


def test_pick_elements_name_each_endpoints_own_port() -> None:
    """One target port (written once) and mixed ports (slices of one service can resolve a
    named port differently) give the same element text as writing each endpoint."""
    from edgesite_agent.proxy.model import pack_endpoints
    from edgesite_agent.proxy.nft import _pick_elems

    same = (("10.0.0.1", 8080), ("10.0.0.2", 8080), ("10.0.0.3", 8080))
    mixed = (("10.0.0.1", 8080), ("10.0.0.2", 9090), ("10.0.0.3", 8080))
    for endpoints in (same, mixed, same[:1]):
        assert _pick_elems("10.96.0.1 . 80", pack_endpoints(endpoints)) == [
            f"10.96.0.1 . 80 . {i} : {ip} . {port}" for i, (ip, port) in enumerate(endpoints)
        ]
