"""The agent's HTTP/1.1 client (edgesite_agent.wire) against a loopback peer that sends
exact bytes: chunk framing, keep-alive, bodies that end too early."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from edgesite_agent.wire import Connection, ProtocolError


@contextmanager
def peer(*answers: bytes) -> Iterator[tuple[Connection, list[bytes]]]:
    """Answer each request on one connection with the next of `answers`, then close."""
    srv = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def run() -> None:
        conn, _ = srv.accept()
        with conn:
            buf = b""
            for answer in answers:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                requests.append(head)
                conn.sendall(answer)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    client = Connection("127.0.0.1", srv.getsockname()[1], None, 5, 5)
    try:
        yield client, requests
    finally:
        client.close()
        t.join(5)
        srv.close()


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_watch_lines_split_across_chunks_come_out_whole() -> None:
    body = chunked(b'{"type":"ADDED"', b',"n":1}\n{"ty', b'pe":"DELETED"}\n', b"\n")
    with peer(HEAD + body) as (conn, _):
        resp = conn.request("/w?watch=1", {"Accept": "application/json"})
        lines = list(iter(resp.readline, b""))
    assert lines == [b'{"type":"ADDED","n":1}\n', b'{"type":"DELETED"}\n', b"\n"]
    assert resp.complete and not resp.will_close


def test_keep_alive_connection_serves_two_requests_and_sends_host() -> None:
    first = b'HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{"a":1}'
    second = HEAD + chunked(b'{"b"', b":2}")
    with peer(first, second) as (conn, requests):
        assert conn.request("/one", {"User-Agent": "t"}).read() == b'{"a":1}'
        resp = conn.request("/two", {})
        assert resp.status == 200 and resp.read() == b'{"b":2}'
    assert requests[0].startswith(b"GET /one HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in requests[0] and b"\r\nUser-Agent: t" in requests[0]
    assert requests[1].startswith(b"GET /two HTTP/1.1\r\n")


def test_error_status_and_headers_are_read() -> None:
    body = b'{"kind":"Status","code":410,"reason":"Expired"}'
    answer = (b"HTTP/1.1 410 Gone\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
              % (len(body), body))  # fmt: skip
    with peer(answer) as (conn, _):
        resp = conn.request("/x", {})
        assert (resp.status, resp.headers["content-length"]) == (410, str(len(body)))
        assert resp.will_close and resp.read() == body


@pytest.mark.parametrize(
    "answer",
    [
        HEAD + b"10\r\n0123",  # connection closed inside a chunk
        HEAD + b"4\r\nabcd\r\n",  # closed before the last chunk
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234",  # shorter than announced
        HEAD + b"zz\r\n",  # not a chunk size
        b"SSH-2.0-OpenSSH\r\n\r\n",  # not HTTP at all
    ],
)
def test_a_body_cut_short_is_an_error_not_a_short_body(answer: bytes) -> None:
    with peer(answer) as (conn, _), pytest.raises(ProtocolError):
        conn.request("/x", {}).read()


def test_body_until_close_without_length() -> None:
    with peer(b"HTTP/1.1 200 OK\r\n\r\nline1\nline2") as (conn, _):
        resp = conn.request("/x", {})
        assert resp.will_close
        assert [resp.readline(), resp.readline(), resp.readline()] == [b"line1\n", b"line2", b""]
