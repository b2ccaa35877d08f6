"""The proxy's compact cache keeps what the rules need, exactly (pure Python, no root)."""

from __future__ import annotations

import ipaddress
import random

import pytest

from edgesite_agent.proxy.cache import ObjectCache, parse_service, parse_slice
from edgesite_agent.proxy.config import ipv4_network, parse_settings
from tests.proxy.shapes import endpoint, endpoint_slice, service, tcp


def test_slice_endpoints_round_trip_with_conditions_and_nodes() -> None:
    sl = parse_slice(
        endpoint_slice(
            "web",
            [
                endpoint("10.244.1.10", node="edge-2"),
                endpoint("10.244.1.9", ready=False, serving=True, terminating=True),
                {"addresses": ["10.244.3.1"], "conditions": {}},  # no node, conditions unknown
            ],
            [tcp(8080, "http")],
        )
    )
    assert sl is not None and sl.service == "default/web"
    # Sorted by address text (as the rules list them), unknown conditions count as ready.
    assert list(sl.iter_endpoints()) == [
        ("10.244.1.10", True, True, False, "edge-2"),
        ("10.244.1.9", False, True, True, "edge-1"),
        ("10.244.3.1", True, True, False, None),
    ]
    assert sl.ports == (("http", "tcp", 8080),)


def test_duplicate_addresses_keep_the_ready_one_and_odd_addresses_are_dropped() -> None:
    sl = parse_slice(
        endpoint_slice(
            "dup",
            [
                endpoint("10.244.1.5", ready=False),
                endpoint("10.244.1.5", node="edge-3"),
                endpoint("fd00::5"),
                endpoint("10.244.001.6"),  # leading zeros: not a valid address
                {"addresses": [], "conditions": {"ready": True}},
            ],
            [tcp(8080)],
        )
    )
    assert sl is not None
    assert list(sl.iter_endpoints()) == [("10.244.1.5", True, True, False, "edge-3")]


def test_many_nodes_in_one_slice() -> None:
    eps = [endpoint(f"10.1.{i // 250}.{i % 250}", node=f"n{i}") for i in range(1000)]
    sl = parse_slice(endpoint_slice("big", eps, [tcp(80)]))
    assert sl is not None and len(sl) == 1000
    got = {ip: node for ip, *_, node in sl.iter_endpoints()}
    assert got == {e["addresses"][0]: e["nodeName"] for e in eps}


def test_unchanged_objects_report_no_change_and_equal_lists_are_shared() -> None:
    cache = ObjectCache()
    svc = service("a", "10.96.0.1", [tcp(80, "http")])
    assert cache.set_service("default/a", parse_service(svc)) == "default/a"
    assert cache.set_service("default/a", parse_service(svc)) is None
    sl = endpoint_slice("a", [endpoint("10.244.1.1")], [tcp(8080, "http")])
    assert cache.set_slice("default/a-abcde", parse_slice(sl)) == {"default/a"}
    assert cache.set_slice("default/a-abcde", parse_slice(sl)) == set()
    other = endpoint_slice("b", [endpoint("10.244.1.2")], [tcp(8080, "http")])
    cache.set_slice("default/b-abcde", parse_slice(other))
    a, b = cache.slices["default/a-abcde"], cache.slices["default/b-abcde"]
    assert a.ports is b.ports and a.nodes is b.nodes
    # A slice moving to another service changes both.
    moved = endpoint_slice("b", [endpoint("10.244.1.1")], [tcp(8080, "http")])
    assert cache.set_slice("default/a-abcde", parse_slice(moved)) == {"default/a", "default/b"}
    assert cache.slices_of("default/a") == []
    assert [s.service for s in cache.slices_of("default/b")] == ["default/b", "default/b"]
    assert cache.set_slice("default/a-abcde", None) == {"default/b"}


def test_ipv4_network_matches_ipaddress() -> None:
    rng = random.Random(7)
    cases = ["10.42.0.0/16", "10.42.1.7/16", "10.0.0.1", "10.0.0.0/33", "fd00::/64", "x", ""]
    cases += ["1.2.3.4/", "1.2.3.4/016", "10.0.0.0/255.255.0.0", "10.0.0.0/0.0.255.255"]
    cases += ["10.0.0.0/255.0.255.0", "010.0.0.0/8", "1.2.3.4/ 8", "1.2.3.4/1/2"]
    for _ in range(2000):
        addr = ".".join(str(rng.randrange(256)) for _ in range(4))
        mask = (0xFFFFFFFF << (32 - rng.randrange(33))) & 0xFFFFFFFF
        suffix = rng.choice(
            [
                str(rng.randrange(34)),
                str(ipaddress.IPv4Address(mask)),
                str(ipaddress.IPv4Address(mask ^ 0xFFFFFFFF)),
                str(ipaddress.IPv4Address(rng.randrange(2**32))),
            ]
        )
        cases.append(f"{addr}/{suffix}")
    for case in cases:
        try:
            net = ipaddress.ip_network(case, strict=False)
            want = str(net) if net.version == 4 else None
        except ValueError:
            want = None
        assert ipv4_network(case) == want, case


def test_settings_are_read_only_values() -> None:
    a = parse_settings({"cluster_cidrs": ["10.42.7.0/16"]})
    assert a.cluster_cidrs == ("10.42.0.0/16",)
    assert a == parse_settings({"cluster_cidrs": ["10.42.0.0/16"]}) != parse_settings({})
    with pytest.raises(AttributeError):
        a.masquerade_all = True  # type: ignore[misc]
