"""The streamed List decoder (client.ListPage) against a real HTTP peer on loopback: items
come out one by one, whatever the field order, chunk boundaries or transfer encoding."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from edgesite_agent.client import ApiError, ListPage
from edgesite_agent.wire import Connection, Response


@contextmanager
def serve(body: bytes, chunked: bool) -> Iterator[Response]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(body), 5):  # tiny chunks: boundaries everywhere
                    part = body[i : i + 5]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

    srv = HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.handle_request, daemon=True)
    t.start()
    # The agent's own HTTP client (edgesite_agent.wire), here without TLS.
    conn = Connection("127.0.0.1", srv.server_address[1], None, 10, 10)
    try:
        yield conn.request("/", {})
    finally:
        conn.close()
        t.join(5)
        srv.server_close()


ITEMS = [
    {"metadata": {"name": f"p{i}", "namespace": "ns", "resourceVersion": str(i)},
     "data": {"k": "välue ✓ " * i, "n": i * 1.5, "big": 10**20 + i, "nul": None}}
    for i in range(40)
]  # fmt: skip


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("read_size", [1, 3, 64, 65536])
@pytest.mark.parametrize("items_first", [False, True])
def test_items_streamed_in_any_field_order(
    chunked: bool, read_size: int, items_first: bool
) -> None:
    meta = {"resourceVersion": "77", "continue": "tok", "remainingItemCount": 5}
    doc = (
        {"items": ITEMS, "kind": "PodList", "metadata": meta, "apiVersion": "v1"}
        if items_first
        else {"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": ITEMS}
    )
    body = json.dumps(doc, indent=1, ensure_ascii=False).encode()
    with serve(body, chunked) as resp:
        page = ListPage(resp, "/api/v1/pods", chunk=read_size)
        got = list(page)
    assert got == ITEMS
    assert page.metadata == meta
    assert page.fields["kind"] == "PodList"


@pytest.mark.parametrize("text", ['{"items":[],"metadata":{"resourceVersion":"3"}}',
                                  '{"items":null,"metadata":{"resourceVersion":"3"}}',
                                  '{"metadata":{"resourceVersion":"3"}}'])  # fmt: skip
def test_empty_lists(text: str) -> None:
    with serve(text.encode(), chunked=True) as resp:
        page = ListPage(resp, "/x", chunk=4)
        assert list(page) == []
        assert page.metadata["resourceVersion"] == "3"


@pytest.mark.parametrize("text", ['{"items":[{"a":1},{"b":', '{"items":[{"a":1}]', "not json",
                                  '{"items":[{"a":1}}'])  # fmt: skip
def test_truncated_or_invalid_body_is_an_error_not_a_short_list(text: str) -> None:
    with serve(text.encode(), chunked=False) as resp:
        page = ListPage(resp, "/x", chunk=3)
        with pytest.raises(ApiError) as err:
            list(page)
    assert err.value.reason == "BadResponse"
