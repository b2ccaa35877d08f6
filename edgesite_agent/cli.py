"""`edgesite-agent` command line: run, status, dump, and the proxy's own subcommands.

Exit codes: 0 ok, 1 not ready / failure, 2 usage or configuration error.
"""

from __future__ import annotations

import json
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    import argparse
    from typing import Any

KIND_ALIASES = {
    "pod": "Pod", "pods": "Pod", "po": "Pod",
    "node": "Node", "nodes": "Node", "no": "Node",
    "service": "Service", "services": "Service", "svc": "Service",
    "endpointslice": "EndpointSlice", "endpointslices": "EndpointSlice",
    "configmap": "ConfigMap", "configmaps": "ConfigMap", "cm": "ConfigMap",
    "secret": "Secret", "secrets": "Secret",
}  # fmt: skip
API_VERSIONS = {"EndpointSlice": "discovery.k8s.io/v1"}


# Commands that never need the proxy package: importing it would cost the running agent
# several MiB of modules it does not use (the agent imports it itself when enabled).
AGENT_COMMANDS = ("run", "status", "dump")


def build_parser(with_proxy: bool = True) -> argparse.ArgumentParser:
    import argparse

    from edgesite_agent import __version__

    p = argparse.ArgumentParser(prog="edgesite-agent", description="EdgeSite edge agent")
    p.add_argument("--version", action="version", version=f"edgesite-agent {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the agent")
    run.add_argument("--config", required=True, help="agent config file (JSON)")
    run.set_defaults(func=cmd_run)

    st = sub.add_parser("status", help="ask a running agent whether it is ready")
    st.add_argument("--config", help="agent config file (to find the local API)")
    st.add_argument(
        "--url", help="local API: http://HOST:PORT or unix:/PATH (default http://127.0.0.1:10260)"
    )
    st.set_defaults(func=cmd_status)

    dump = sub.add_parser("dump", help="print cached objects of KIND as a Kubernetes List")
    dump.add_argument("kind", help="pods, nodes, services, endpointslices, configmaps, secrets")
    src = dump.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="agent config file (to find the store)")
    src.add_argument("--store", help="path of the store file")
    dump.add_argument("-n", "--namespace", help="only this namespace")
    dump.set_defaults(func=cmd_dump)

    if not with_proxy:
        return p
    try:  # the proxy adds its own group when it is part of this build
        from edgesite_agent.proxy import cli as proxy_cli
    except ImportError:
        proxy_cli = None
    except SyntaxError as exc:  # a broken proxy module must not take run/status/dump down
        print(f"edgesite-agent: proxy commands unavailable: {exc}", file=sys.stderr)
        proxy_cli = None
    if proxy_cli is not None and hasattr(proxy_cli, "add_parser"):
        proxy_cli.add_parser(sub)
    return p


def _load(path: str) -> Any:
    from edgesite_agent.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"edgesite-agent: config error in {path}: {exc}", file=sys.stderr)
        return None


def cmd_run(args: Any) -> int:  # argparse.Namespace or _plain_run's namespace
    import signal

    cfg = _load(args.config)
    if cfg is None:
        return 2
    from edgesite_agent.log import get_logger

    log = get_logger("edgesite_agent", cfg.log_level)
    from edgesite_agent.agent import Agent
    from edgesite_agent.kubeconfig import KubeconfigError

    agent = Agent(cfg, log)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop_event.set())
    try:
        agent.start()
    except KubeconfigError as exc:
        key = (
            "proxy_kubeconfig"
            if cfg.proxy_kubeconfig and cfg.proxy_kubeconfig in str(exc)
            else "kubeconfig"
        )
        print(f"edgesite-agent: config error: {key}: {exc}", file=sys.stderr)
        agent.stop()
        return 2
    except OSError as exc:
        log.error("cannot start: %s", exc)
        agent.stop()
        return 1
    agent.wait()
    log.info("stopping")
    agent.stop()
    return 0


class _Access:
    """How to reach a TCP listener with a token and/or TLS (from the agent's config)."""

    def __init__(self, token: str = "", cert_file: str = "") -> None:
        self.token, self.cert_file = token, cert_file


def _local_url(args: argparse.Namespace, access: _Access | None = None) -> str | None:
    if args.url:
        return args.url.rstrip("/")
    if args.config:
        cfg = _load(args.config)
        if cfg is None:
            return None
        if cfg.listen_unix:
            return f"unix:{cfg.listen_unix}"
        if access is not None and cfg.listen_token_file:
            from edgesite_agent.localapi import read_token

            access.token = read_token(cfg.listen_token_file).decode()
        if access is not None:
            access.cert_file = cfg.listen_tls_cert_file
        host = f"[{cfg.listen_address}]" if ":" in cfg.listen_address else cfg.listen_address
        scheme = "https" if cfg.listen_tls_cert_file else "http"
        return f"{scheme}://{host}:{cfg.listen_port}"
    return "http://127.0.0.1:10260"


def _https(host: str, port: int, cert_file: str) -> Any:
    """HTTPS to our own listener: its certificate must be the configured one (pinned: the
    token is sent only to the agent, not to whatever else might listen on that port)."""
    import http.client
    import ssl

    class Pinned(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            with open(cert_file, encoding="ascii") as f:
                want = ssl.PEM_cert_to_DER_cert(f.read())
            if self.sock.getpeercert(binary_form=True) != want:
                self.sock.close()
                raise OSError("the listener's certificate is not the configured one")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # pinned in connect()
    return Pinned(host, port, timeout=5, context=ctx)


def _get(base: str, path: str, access: _Access | None = None) -> tuple[int, bytes]:
    """GET from the local API at an http(s):// URL or a `unix:/path` socket."""
    import http.client
    import socket

    if base.startswith("unix:"):
        sock_path = base.removeprefix("unix:")

        class UnixConnection(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(self.timeout)
                self.sock.connect(sock_path)

        conn: http.client.HTTPConnection = UnixConnection("localhost", timeout=5)
    else:
        from urllib.parse import urlsplit

        u = urlsplit(base)
        if u.scheme == "https" and access is not None and access.cert_file:
            conn = _https(u.hostname or "", u.port or 443, access.cert_file)
        elif u.scheme == "https":
            conn = http.client.HTTPSConnection(u.hostname or "", u.port or 443, timeout=5)
        else:
            conn = http.client.HTTPConnection(u.hostname or "", u.port or 80, timeout=5)
        path = u.path.rstrip("/") + path
    headers = {"Authorization": f"Bearer {access.token}"} if access and access.token else {}
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from exc
    finally:
        conn.close()


def cmd_status(args: argparse.Namespace) -> int:
    access = _Access()
    try:
        base = _local_url(args, access)
    except (OSError, ValueError) as exc:
        print(f"listen_token_file: {exc}", file=sys.stderr)
        return 2
    if base is None:
        return 2
    try:
        code, body = _get(base, "/metrics", access)
        if code != 200:
            print(f"agent at {base} answered {code} for /metrics", file=sys.stderr)
            return 1
        metrics = body.decode()
        ready = _get(base, "/readyz", access)[0] == 200
    except OSError as exc:
        print(f"agent not reachable at {base}: {exc}", file=sys.stderr)
        return 1
    print(f"ready: {'yes' if ready else 'no'}")
    for line in metrics.splitlines():
        if line.startswith(("edgesite_agent_objects", "edgesite_agent_synced",
                            "edgesite_agent_seconds_since_api_contact")):  # fmt: skip
            print("  " + line.removeprefix("edgesite_agent_"))
    return 0 if ready else 1


def cmd_dump(args: argparse.Namespace) -> int:
    import sqlite3

    from edgesite_agent.store import StoreError, open_readonly

    kind = KIND_ALIASES.get(args.kind.lower())
    if kind is None:
        print(f"edgesite-agent: unknown kind {args.kind!r}", file=sys.stderr)
        return 2
    path = args.store
    if path is None:
        cfg = _load(args.config)
        if cfg is None:
            return 2
        path = cfg.store_path
    try:
        db = open_readonly(path)
        sql = "SELECT json FROM objects WHERE kind=?"
        params: list[str] = [kind]
        if args.namespace:
            sql += " AND namespace=?"
            params.append(args.namespace)
        rows = db.execute(sql + " ORDER BY namespace, name", params)
        row = db.execute("SELECT resource_version FROM kinds WHERE kind=?", (kind,)).fetchone()
        out = sys.stdout
        head = {"kind": f"{kind}List", "apiVersion": API_VERSIONS.get(kind, "v1"),
                "metadata": {"resourceVersion": row[0] if row else ""}}  # fmt: skip
        out.write(json.dumps(head)[:-1] + ', "items": [')
        for i, (text,) in enumerate(rows):
            out.write(("," if i else "") + "\n" + text)
        out.write("\n]}\n")
        db.close()
    except (StoreError, sqlite3.DatabaseError) as exc:
        print(f"edgesite-agent: cannot read store {path}: {exc}", file=sys.stderr)
        return 1
    return 0


def _plain_run(argv: list[str]) -> Any:
    """`run --config FILE` exactly: parsed by hand, because argparse (and the shutil, bz2
    and lzma modules its help formatter imports) would stay resident in the long-running
    agent for ~0.9 MiB. Anything else, `--help` included, goes through argparse."""
    if len(argv) == 3 and argv[:2] == ["run", "--config"] and not argv[2].startswith("-"):
        path = argv[2]
    elif len(argv) == 2 and argv[0] == "run" and argv[1].startswith("--config="):
        path = argv[1].removeprefix("--config=")
    else:
        return None
    from types import SimpleNamespace

    return SimpleNamespace(config=path, func=cmd_run) if path else None


def main(argv: list[str]) -> int:
    args = _plain_run(argv)
    if args is not None:
        return int(args.func(args) or 0)
    parser = build_parser(with_proxy=not argv or argv[0] not in AGENT_COMMANDS)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)
