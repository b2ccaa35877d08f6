"""Run the test Kubernetes API server as a process (used on test hosts by the e2e scenario).

    python -m tests.kubeapi --port 6443 --tls-dir DIR [--host 0.0.0.0] [--admin-port 6080]
        [--node NAME ...]

TLS material in DIR is reused when present, else created (ca.crt, server.crt/key, and
client certificates for each --node, kube-proxy and admin). The line "READY <api-url>
<admin-url>" on stdout tells a supervisor that both ports listen.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tests.kubeapi import certs
from tests.kubeapi.admin import AdminServer
from tests.kubeapi.server import KubeAPIServer, Options


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.kubeapi")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--tls-dir", type=Path, required=True)
    p.add_argument("--admin-host", default="127.0.0.1")
    p.add_argument("--admin-port", type=int, default=0)
    p.add_argument("--node", action="append", default=[], help="issue a kubelet cert for NAME")
    p.add_argument("--san", action="append", default=[], help="extra server cert IP/DNS name")
    p.add_argument("--bookmark-interval", type=float, default=60.0)
    args = p.parse_args(argv)

    tls_dir: Path = args.tls_dir
    if args.san:
        certs.ensure_ca(tls_dir)
        certs.server_cert(tls_dir, (args.host, "127.0.0.1", "localhost", *args.san))
    for node in args.node:
        certs.node_cert(tls_dir, node)
    certs.proxy_cert(tls_dir)
    certs.admin_cert(tls_dir)

    api = KubeAPIServer(
        tls_dir, args.host, args.port, Options(bookmark_interval=args.bookmark_interval)
    )
    api.start()
    admin = AdminServer(api, args.admin_host, args.admin_port)
    admin.start()
    print(f"READY {api.url} {admin.url}", flush=True)

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    admin.stop()
    api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
