"""edgesite_agent.urls agrees with urllib.parse (which the agent avoids for its imports) on
everything the agent sends to the API server or reads from local API clients."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from edgesite_agent import urls

PARAMS = [
    {"fieldSelector": "spec.nodeName=edge-1", "resourceVersion": "0", "limit": "500"},
    {"labelSelector": "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless",
     "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTIzfQ==", "watch": "1"},
    {"labelSelector": "app in (a b),tier!=db", "x": "ünïcode ✓ & = ? # / %"},
]  # fmt: skip


@pytest.mark.parametrize("params", PARAMS)
def test_query_round_trip_matches_urllib(params: dict[str, str]) -> None:
    text = urls.urlencode(params)
    assert parse_qs(text, keep_blank_values=True) == {k: [v] for k, v in params.items()}
    assert urls.parse_query(text) == {k: [v] for k, v in params.items()}
    # urllib's own encoding (spaces as "+") reads back the same through ours.
    assert urls.parse_query(urlencode(params)) == {k: [v] for k, v in params.items()}


def test_parse_query_edge_cases() -> None:
    assert urls.parse_query("") == {}
    assert urls.parse_query("a=1&a=2&b&c=") == {"a": ["1", "2"], "b": [""], "c": [""]}
    assert urls.parse_query("bad=%zz%4") == {"bad": ["%zz%4"]}  # invalid escapes stay
    assert urls.split_target("/api/v1/pods?labelSelector=app%3Dweb#x") == (
        "/api/v1/pods", "labelSelector=app%3Dweb")  # fmt: skip


@pytest.mark.parametrize(
    "server",
    ["https://127.0.0.1:6443", "https://10.0.0.1", "https://[::1]:6444/", "https://[fd00::1]",
     "https://api.example.com:443/k8s/clusters/c-1/", "https://user@host:8443"],
)  # fmt: skip
def test_split_server_matches_urllib(server: str) -> None:
    u = urlsplit(server)
    assert urls.split_server(server) == (u.hostname, u.port or 443, u.path.rstrip("/"))


@pytest.mark.parametrize(
    "server", ["http://127.0.0.1:6443", "https://:443", "https://h:0", "https://h:99999",
               "https://h:x", "https://[::1", "127.0.0.1:6443"],
)  # fmt: skip
def test_split_server_refuses_what_it_cannot_use(server: str) -> None:
    with pytest.raises(ValueError):
        urls.split_server(server)
