"""Backend server run inside a test namespace: answers every TCP/UDP (and SCTP, where the
kernel has it) request with its name."""

from __future__ import annotations

import socket
import socketserver
import sys
import threading


def _serve_sctp(sock: socket.socket, reply: bytes) -> None:
    # One-to-one SCTP sockets behave like TCP: accept an association, answer, close.
    while True:
        conn, _ = sock.accept()
        with conn:
            conn.sendall(reply)


def main() -> None:
    name, port = sys.argv[1], int(sys.argv[2])
    reply = name.encode()

    class Tcp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(reply)

    class Udp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            _, sock = self.request
            sock.sendto(reply, self.client_address)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    tcp = socketserver.ThreadingTCPServer(("0.0.0.0", port), Tcp)
    udp = socketserver.UDPServer(("0.0.0.0", port), Udp)
    threading.Thread(target=udp.serve_forever, daemon=True).start()
    try:
        sctp = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    except OSError:
        sctp = None  # no SCTP in this kernel: the SCTP test skips itself
    if sctp is not None:
        sctp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sctp.bind(("0.0.0.0", port))
        sctp.listen(64)
        threading.Thread(target=_serve_sctp, args=(sctp, reply), daemon=True).start()
    # Tell the test we listen, so it never races the first request.
    sys.stdout.write("listening\n")
    sys.stdout.flush()
    try:
        tcp.serve_forever()
    finally:
        tcp.server_close()
        udp.server_close()
        socket.socket().close()


if __name__ == "__main__":
    main()
