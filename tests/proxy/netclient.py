"""Client run inside the test client namespace: N requests, prints one result per line.

Each result is the answering backend's name, or "refused" / "timeout" / "error:<type>".
Every request is a new connection (a new conntrack entry) so the proxy picks again.
"""

from __future__ import annotations

import socket
import sys


def one(proto: str, host: str, port: int, timeout: float) -> str:
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    number = socket.IPPROTO_SCTP if proto == "sctp" else 0
    with socket.socket(socket.AF_INET, kind, number) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
            if proto == "udp":
                sock.send(b"hi")
            return sock.recv(100).decode() or "error:empty"
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return f"error:{type(exc).__name__}:{exc.errno}"


def session(host: str, port: int, timeout: float) -> None:
    """One UDP socket (one conntrack flow) kept open; one request per line read on stdin."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        for _ in sys.stdin:
            try:
                sock.send(b"hi")
                print(sock.recv(100).decode(), flush=True)
            except TimeoutError:
                print("timeout", flush=True)
            except OSError as exc:
                print(f"error:{type(exc).__name__}:{exc.errno}", flush=True)


def main() -> None:
    if sys.argv[1] == "udp-session":
        session(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    proto, host, port, count, timeout = sys.argv[1:6]
    for _ in range(int(count)):  # bounded: stops by itself
        print(one(proto, host, int(port), float(timeout)), flush=True)


if __name__ == "__main__":
    main()
