#!/usr/bin/env python3
"""TEST STAND-IN for the k3s binary. It is NOT k3s and runs no Kubernetes component.

No k3s binary can be obtained on the machines these tests run on, so the test artifact
directory ships this script under the name `k3s`. It does only what lets the tests check what
EdgeSite's roles are responsible for:

* reports a version in the shape of `k3s --version`;
* accepts the real command-line shape: `k3s server|agent [--config FILE] [flags]`,
  `k3s kubectl get --raw=/readyz`, `k3s kubectl get node NAME`, `k3s certificate rotate`,
  `k3s etcd-snapshot save|ls`, `k3s token rotate --token T --new-token T`;
* `server` and `agent` stay running as a systemd Type=notify service and record what they
  were started with (arguments and a copy of the config file) under the data dir;
* servers answer a tiny plain-HTTP join check on the API port, so a joining server or agent
  proves it was given a reachable server URL and the same token as that server.

Fault injection for tests: while DATA_DIR/standin/fail-health exists, `kubectl get
--raw=/readyz` reports unhealthy.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = "@VERSION@"
DEFAULT_CONFIG = "/etc/rancher/k3s/config.yaml"
DATA_DIR = Path("/var/lib/rancher/k3s")
STATE = DATA_DIR / "standin"


def read_config(path: str) -> tuple[str, dict[str, str]]:
    """Top-level `key: scalar` pairs are all this stand-in needs; lists are kept raw."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return "", {}
    values = {}
    for line in text.splitlines():
        if line and not line.startswith((" ", "-", "#")) and ":" in line:
            key, _, value = line.partition(":")
            values[key.strip()] = value.strip().strip("\"'")
    return text, values


def append(name: str, record: dict) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / name).open("a") as f:
        f.write(json.dumps(record) + "\n")


def sd_notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if address:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect("\0" + address[1:] if address.startswith("@") else address)
            sock.sendall(message.encode())


def token_of(config: dict[str, str]) -> str:
    path = config.get("token-file")
    return Path(path).read_text().strip() if path and Path(path).exists() else ""


def join(server_url: str, token: str, node: str, role: str) -> None:
    # Plain HTTP on the server's API port: the stand-in's own join check, not k3s's protocol.
    url = server_url.replace("https://", "http://").rstrip("/") + "/v1-standin/join"
    body = json.dumps({"node": node, "role": role}).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Authorization": f"Bearer {token}"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


def serve(port: int, token: str) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply(200, b"pong" if self.path == "/ping" else b"standin")

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if self.headers.get("Authorization") != f"Bearer {token}":
                append("rejected.jsonl", {"node": body.get("node")})
                self._reply(401, b"token mismatch")
                return
            append("joined.jsonl", {"node": body.get("node"), "role": body.get("role")})
            self._reply(200, b"joined")

        def _reply(self, code: int, payload: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()


def run_node(role: str, args: list[str]) -> int:
    config_path = DEFAULT_CONFIG
    if "--config" in args:
        config_path = args[args.index("--config") + 1]
    text, config = read_config(config_path)
    token = token_of(config)
    node = config.get("node-name") or socket.gethostname()
    append(
        "starts.jsonl",
        {
            "role": role,
            "version": VERSION,
            "args": args,
            "config_path": config_path,
            "config": text,
            "pid": os.getpid(),
            "started_ns": time.time_ns(),
        },
    )
    if role == "server":
        serve(int(config.get("https-listen-port") or 6443), token)
        # Like k3s, a server writes the admin kubeconfig pointing at itself.
        kubeconfig = Path(config.get("write-kubeconfig") or "/etc/rancher/k3s/k3s.yaml")
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n"
            "    certificate-authority-data: U1RBTkQtSU4=\n"
            "    server: https://127.0.0.1:6443\n  name: default\n"
            "contexts:\n- context: {cluster: default, user: default}\n  name: default\n"
            "current-context: default\nusers:\n- name: default\n  user: {token: standin}\n"
        )
        os.chmod(kubeconfig, 0o600)
    joined_to = config.get("server")
    if joined_to:
        for attempt in range(30):
            try:
                join(joined_to, token, node, role)
                break
            except (urllib.error.URLError, OSError) as err:
                if attempt == 29:
                    print(f"standin: cannot join {joined_to}: {err}", file=sys.stderr)
                    return 1
                time.sleep(1)
    (STATE / "running.json").write_text(json.dumps({"role": role, "pid": os.getpid()}))
    sd_notify("READY=1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


def running() -> bool:
    try:
        pid = json.loads((STATE / "running.json").read_text())["pid"]
        os.kill(pid, 0)
    except (FileNotFoundError, ProcessLookupError, KeyError, ValueError):
        return False
    return True


def kubectl(args: list[str]) -> int:
    if args[:2] == ["get", "--raw=/readyz"] or args[:3] == ["get", "--raw", "/readyz"]:
        if running() and not (STATE / "fail-health").exists():
            print("ok")
            return 0
        print("[-]standin not ready", file=sys.stderr)
        return 1
    if args[:2] == ["get", "node"] and len(args) > 2:
        joined = STATE / "joined.jsonl"
        lines = joined.read_text().splitlines() if joined.exists() else []
        if any(json.loads(line)["node"] == args[2] for line in lines):
            print("True")
            return 0
        print(f'Error from server (NotFound): nodes "{args[2]}" not found', file=sys.stderr)
        return 1
    print(f"standin: kubectl {' '.join(args)} is not supported", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("--version", "-v", "version"):
        print(f"k3s version {VERSION} (test-standin)\ngo version standin")
        return 0
    command, rest = argv[0], argv[1:]
    if command in ("server", "agent"):
        return run_node(command, rest)
    if command == "kubectl":
        return kubectl(rest)
    if command in ("certificate", "etcd-snapshot", "token"):
        # Token values are never recorded, only which flags were given.
        shown = [a if not a.startswith("--") or "=" not in a else a.split("=")[0] for a in rest]
        if command == "token":
            shown = [a for a in shown if a.startswith("--") or a == "rotate"]
        append("commands.jsonl", {"command": command, "args": shown, "at_ns": time.time_ns()})
        print(f"standin: {command} {' '.join(shown)} recorded")
        return 0
    print(f"standin: unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
