"""The fleet benchmark's WAN link relays an SSH-like byte stream intact, both ways."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from wan_link import WanLink  # noqa: E402


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_bytes_pass_in_order_both_ways_and_end_of_stream_follows():
    upstream = socket.create_server(("127.0.0.1", 0))
    port = upstream.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = upstream.accept()
        conn.settimeout(30)
        with conn:
            data = read_all(conn)  # until the client's end of stream came through
            received.append(data)
            conn.sendall(data[::-1])

    server = threading.Thread(target=serve)
    server.start()
    message = b"".join(i.to_bytes(4, "big") for i in range(200_000))  # 800 kB, many reads
    with (
        WanLink([("127.0.0.1", port)], rtt_ms=20) as link,
        socket.create_connection(("127.0.0.1", link.ports[("127.0.0.1", port)])) as client,
    ):
        client.settimeout(30)
        for start in range(0, len(message), 70_000):
            client.sendall(message[start : start + 70_000])
        client.shutdown(socket.SHUT_WR)
        answer = read_all(client)
    server.join(timeout=30)
    upstream.close()
    assert received == [message]
    assert answer == message[::-1]


def test_an_open_connection_does_not_keep_the_link_from_stopping():
    upstream = socket.create_server(("127.0.0.1", 0))
    port = upstream.getsockname()[1]
    with WanLink([("127.0.0.1", port)], rtt_ms=20) as link:
        client = socket.create_connection(("127.0.0.1", link.ports[("127.0.0.1", port)]))
        conn, _ = upstream.accept()
        client.settimeout(30)
        conn.settimeout(30)
        client.sendall(b"x")  # the relay is up and carrying data, as an SSH master's would be
        assert conn.recv(1) == b"x"
    # The link ended the relayed connection on its way out: both ends see end of stream.
    assert client.recv(1) == b""
    assert conn.recv(1) == b""
    client.close()
    conn.close()
    upstream.close()
