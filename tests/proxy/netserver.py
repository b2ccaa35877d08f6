"""Backend server run inside a test namespace: answers every TCP/UDP request with its name."""

from __future__ import annotations

import socket
import socketserver
import sys
import threading


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
