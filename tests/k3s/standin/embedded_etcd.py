"""TEST STAND-IN: k3s's embedded etcd, modelled with a REAL etcd member per server.

k3s runs etcd inside its own process; the stand-in runs the etcd project's own binary (the
machine's Debian etcd-server, carried in the stand-in's archive with etcdctl) as a child, laid
out as k3s lays it out (k3s pkg/etcd/etcd.go):

* data in <data-dir>/server/db/etcd, member name <node>-<8 hex> kept in db/etcd/name (setName);
* clients https://127.0.0.1:2379 and https://<node-ip>:2379, peers https://<node-ip>:2380,
  metrics http://127.0.0.1:2381, the HTTP/JSON gateway https://127.0.0.1:2382
  (listenClientURLs, listenPeerURLs, listenMetricsURLs, listenClientHTTPURLs);
* TLS with k3s's file names under server/tls/etcd: server-ca, peer-ca, server-client (the
  member's serving certificate, also a client), peer-server-client, client
  (pkg/daemons/control/deps/deps.go);
* start (ETCD.Start): a member with a WAL starts as it is; otherwise with a server URL it joins
  (ETCD.join: member list from the server's /db/info, then MemberAdd on the members' client
  URLs and start with initial-cluster-state existing); otherwise it starts a NEW cluster
  (newCluster) — also on a first master whose data dir was wiped;
* bootstrap data (the CA certificates and keys every server shares) under
  /bootstrap/<sha256(token)[:12]> (pkg/cluster/encrypt.go storageKey); a server whose token
  is not the one the datastore's bootstrap data was stored with refuses to start with k3s's
  message (pkg/cluster/storage.go getBootstrapKeyFromStorage).

Debian's etcd 3.4 serves its JSON gateway on every client URL (3.5+ can keep it apart), so
etcd's client listener is on an internal loopback port and GrpcFront serves 2379 with gRPC
only, as k3s's etcd does.

Not modelled: the bootstrap data is stored unencrypted (k3s encrypts it with AES-GCM under a
key derived from the token); members join as voters, not as learners promoted later.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

CLIENT_PORT, PEER_PORT, METRICS_PORT, GATEWAY_PORT = 2379, 2380, 2381, 2382
# Debian's etcd 3.4 cannot keep its JSON gateway off the gRPC client URLs
# (--listen-client-http-urls is 3.5+), so etcd's client listener sits on loopback here and
# GrpcFront serves 2379 with gRPC only, as k3s's etcd does.
INTERNAL_CLIENT_PORT = 12379
# pkg/cluster/storage.go getBootstrapKeyFromStorage, as pkg/cluster/bootstrap.go wraps it.
TOKEN_MISMATCH = (
    "failed to bootstrap cluster data: failed to reconcile with local datastore: "
    "bootstrap data already found and encrypted with different token"
)
# The CA material every server of a cluster shares (k3s's ControlRuntimeBootstrap subset the
# stand-in uses), relative to <data-dir>/server.
BOOTSTRAP_FILES = (
    "tls/ca.crt",
    "tls/ca.key",
    "tls/etcd/server-ca.crt",
    "tls/etcd/server-ca.key",
    "tls/etcd/peer-ca.crt",
    "tls/etcd/peer-ca.key",
)


def storage_key(token: str) -> str:
    """pkg/cluster/encrypt.go storageKey: /bootstrap/ + first 12 hex of sha256(token)."""
    return "/bootstrap/" + hashlib.sha256(token.encode()).hexdigest()[:12]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _key(path: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path))
    os.chmod(path, 0o600)


def _ca(crt: Path, key: Path, cn: str) -> None:
    if crt.exists():
        return
    _key(key)
    _openssl("req", "-x509", "-new", "-key", str(key), "-sha256", "-days", "3650",
             "-subj", f"/CN={cn}", "-out", str(crt))  # fmt: skip


def _leaf(crt: Path, ca: Path, cn: str, sans: list[str], usage: str) -> None:
    if crt.exists():
        return
    key, csr, ext = crt.with_suffix(".key"), crt.with_suffix(".csr"), crt.with_suffix(".ext")
    alt = ",".join(f"IP:{s}" if s.replace(".", "").isdigit() or ":" in s else f"DNS:{s}"
                   for s in sans)  # fmt: skip
    ext.write_text((f"subjectAltName={alt}\n" if alt else "") + f"extendedKeyUsage={usage}\n")
    _key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey",
             str(ca.with_suffix(".key")), "-CAcreateserial", "-days", "3650", "-sha256",
             "-extfile", str(ext), "-out", str(crt))  # fmt: skip
    csr.unlink()
    ext.unlink()


class EmbeddedEtcd:
    """One server's etcd member (a real etcd process) and the k3s rules around it."""

    def __init__(self, data_dir: Path, node: str, ip: str, binaries: dict[str, Path],
                 extra_args: list[str]) -> None:  # fmt: skip
        self.server_dir = data_dir / "server"
        self.db = self.server_dir / "db" / "etcd"
        self.tls = self.server_dir / "tls" / "etcd"
        self.node, self.ip = node, ip or "127.0.0.1"
        self.binaries, self.extra_args = binaries, extra_args
        self.process: subprocess.Popen | None = None
        self.front: GrpcFront | None = None

    # --- identity and files -------------------------------------------------------------
    def initialized(self) -> bool:
        """ETCD.IsInitialized: a WAL directory means this member has run before."""
        return (self.db / "member" / "wal").is_dir()

    def name(self) -> str:
        """ETCD.setName: <node>-<8 hex>, generated once and kept in db/etcd/name."""
        path = self.db / "name"
        if not path.exists():
            self.db.mkdir(parents=True, exist_ok=True)
            os.chmod(self.db, 0o700)
            path.write_text(f"{self.node}-{uuid.uuid4().hex[:8]}")
            os.chmod(path, 0o600)
        return path.read_text()

    @property
    def peer_url(self) -> str:
        return f"https://{_host(self.ip)}:{PEER_PORT}"

    def bootstrap_data(self) -> dict[str, str]:
        """What a joining server receives (k3s /v1-k3s/server-bootstrap): the shared CAs."""
        return {
            name: base64.b64encode((self.server_dir / name).read_bytes()).decode()
            for name in BOOTSTRAP_FILES
            if (self.server_dir / name).exists()
        }

    def write_bootstrap(self, data: dict[str, str]) -> None:
        for name, content in data.items():
            if name not in BOOTSTRAP_FILES:
                continue
            path = self.server_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(content))
            os.chmod(path, 0o600)

    def certificates(self) -> None:
        """The etcd CAs (unless received) and this member's certificates, k3s's names."""
        self.tls.mkdir(parents=True, exist_ok=True)
        server_ca, peer_ca = self.tls / "server-ca.crt", self.tls / "peer-ca.crt"
        _ca(server_ca, self.tls / "server-ca.key", "etcd-server-ca")
        _ca(peer_ca, self.tls / "peer-ca.key", "etcd-peer-ca")
        sans = ["127.0.0.1", "localhost", socket.gethostname(), self.node, self.ip]
        sans = list(dict.fromkeys(s for s in sans if s))
        usage = "serverAuth,clientAuth"
        _leaf(self.tls / "server-client.crt", server_ca, "etcd-server", sans, usage)
        _leaf(self.tls / "peer-server-client.crt", peer_ca, "etcd-peer", sans, usage)
        _leaf(self.tls / "client.crt", server_ca, "etcd-client", [], "clientAuth")

    # --- the etcd process ---------------------------------------------------------------
    def start(self, initial_cluster: str = "", state: str = "new") -> None:
        """executor.ETCD with ETCD.cluster's URLs; initial-* only matter without a WAL."""
        host = _host(self.ip)
        tls = self.tls
        args = [
            str(self.binaries["etcd"]),
            f"--name={self.name()}",
            f"--data-dir={self.db}",
            f"--listen-client-urls=https://127.0.0.1:{INTERNAL_CLIENT_PORT},"
            f"https://127.0.0.1:{GATEWAY_PORT}",
            f"--advertise-client-urls=https://{host}:{CLIENT_PORT}",
            "--listen-peer-urls=" + _urls(f"https://127.0.0.1:{PEER_PORT}", self.peer_url),
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--listen-metrics-urls=http://127.0.0.1:{METRICS_PORT}",
            f"--initial-cluster={initial_cluster or self.name() + '=' + self.peer_url}",
            f"--initial-cluster-state={state}",
            f"--cert-file={tls / 'server-client.crt'}",
            f"--key-file={tls / 'server-client.key'}",
            f"--trusted-ca-file={tls / 'server-ca.crt'}",
            "--client-cert-auth",
            f"--peer-cert-file={tls / 'peer-server-client.crt'}",
            f"--peer-key-file={tls / 'peer-server-client.key'}",
            f"--peer-trusted-ca-file={tls / 'peer-ca.crt'}",
            "--peer-client-cert-auth",
            # ETCD.cluster's own values; etcd-arg entries below override them, as in k3s.
            "--election-timeout=5000",
            "--heartbeat-interval=500",
            "--snapshot-count=10000",
        ]
        args += [f"--{arg}" for arg in self.extra_args]
        log = (self.server_dir / "db" / "etcd.log").open("ab")
        self.process = subprocess.Popen(
            args, stdout=log, stderr=log, start_new_session=True, preexec_fn=_die_with_parent
        )
        if not self.front:
            self.front = GrpcFront(sorted({"127.0.0.1", self.ip}))
            self.front.start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        # k3s runs etcd in-process: when etcd ends, k3s ends (logrus.Fatal in executor).
        assert self.process is not None
        code = self.process.wait()
        if code != 0 and not getattr(self, "stopping", False):
            print(f'level=fatal msg="etcd exited: {code}"', file=sys.stderr, flush=True)
            os._exit(1)

    def stop(self) -> None:
        self.stopping = True
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def _etcdctl(self, args: tuple[str, ...], endpoints: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.binaries["etcdctl"]), f"--endpoints={endpoints or self.local_url}",
             f"--cacert={self.tls / 'server-ca.crt'}", f"--cert={self.tls / 'client.crt'}",
             f"--key={self.tls / 'client.key'}", "--dial-timeout=2s", "--command-timeout=5s",
             *args],
            capture_output=True, text=True, env=dict(os.environ, ETCDCTL_API="3"), timeout=30,
        )  # fmt: skip

    def etcdctl(self, *args: str, endpoints: str = "") -> str:
        result = self._etcdctl(args, endpoints)
        if result.returncode != 0:
            raise OSError(f"etcdctl {args[0]}: {result.stderr.strip()}")
        return result.stdout

    @property
    def local_url(self) -> str:
        return f"https://127.0.0.1:{CLIENT_PORT}"

    def healthy(self) -> bool:
        # etcdctl 3.4 prints the health result on stderr: the exit code is what counts.
        return self._etcdctl(("endpoint", "health")).returncode == 0

    def wait_healthy(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = self._etcdctl(("endpoint", "health"))
            if result.returncode == 0:
                return
            time.sleep(0.5)
        raise OSError(f"etcd did not become healthy: {result.stderr.strip()}")

    # --- cluster operations --------------------------------------------------------------
    def members(self, endpoints: str = "") -> list[dict]:
        return json.loads(self.etcdctl("member", "list", "-w", "json", endpoints=endpoints)).get(
            "members", [])  # fmt: skip

    def join(self, info: dict) -> None:
        """ETCD.join: add this member through the cluster's client URLs, start as existing."""
        name = self.name()
        endpoints = ",".join(u for m in info.get("members", []) for u in m.get("clientURLs", []))
        cluster, add = [], True
        for member in info.get("members", []):
            peers = member.get("peerURLs") or []
            member_name = member.get("name") or (name if self.peer_url in peers else "")
            if member_name == name and self.peer_url in peers:
                add = False
            if member_name != name and member_name.rsplit("-", 1)[0] == self.node:
                (self.db / "name").unlink(missing_ok=True)
                raise ValueError(
                    "duplicate node name found, please use a unique name for this node"
                )
            if peers and member_name:
                cluster.append(f"{member_name}={peers[0]}")
        if add:
            self.etcdctl("member", "add", name, f"--peer-urls={self.peer_url}",
                         endpoints=endpoints)  # fmt: skip
            cluster.append(f"{name}={self.peer_url}")
        self.start(",".join(cluster), "existing")

    def remove_members_of(self, node: str) -> list[str]:
        """k3s's member controller: a deleted Node's etcd member leaves the cluster (k3s
        pkg/etcd/member_controller.go onRemove, by the member name <node>-<8 hex>)."""
        removed = []
        for member in self.members():
            name = member.get("name") or ""
            if name.rsplit("-", 1)[0] == node and name != self.name():
                self.etcdctl("member", "remove", format(int(member["ID"]), "x"))
                removed.append(name)
        return removed

    def check_bootstrap(self, token: str) -> str | None:
        """Store the bootstrap data once; refuse a token the data was not stored with."""
        key = storage_key(token)
        found = self.etcdctl("get", "--prefix", "/bootstrap", "--keys-only").split()
        if not found:
            self.etcdctl("put", key, json.dumps(self.bootstrap_data()))
            return None
        return None if key in found else TOKEN_MISMATCH

    def rotate_token(self, old: str, new: str) -> None:
        """k3s token rotate: the bootstrap data is stored again under the new token's key."""
        value = self.etcdctl("get", storage_key(old), "--print-value-only").strip()
        if not value:
            raise OSError("bootstrap data for the current token not found")
        self.etcdctl("put", storage_key(new), value)
        self.etcdctl("del", storage_key(old))


class GrpcFront:
    """Port 2379 as k3s's etcd serves it: gRPC only (TLS, ALPN h2), no HTTP/JSON gateway.

    k3s sets listen-client-http-urls to https://127.0.0.1:2382 (pkg/etcd/etcd.go
    listenClientHTTPURLs), so its client URLs serve gRPC alone and the JSON gateway answers on
    loopback port 2382 only. The front reads the client's TLS ClientHello without consuming
    it: a client that does not offer h2 (gRPC) is closed, anything else is relayed byte for
    byte to etcd, which does the TLS and the client-certificate check itself.
    """

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    def start(self) -> None:
        for address in self.addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((address, CLIENT_PORT))
            listener.listen(64)
            threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            if b"h2" not in _offered_alpn(conn):
                conn.close()  # not gRPC: nothing on this listener speaks HTTP/1.1
                return
            conn.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", INTERNAL_CLIENT_PORT), timeout=5)
            upstream.settimeout(None)
        except OSError:
            conn.close()
            return
        threading.Thread(target=_pump, args=(upstream, conn), daemon=True).start()
        _pump(conn, upstream)


def _offered_alpn(conn: socket.socket) -> list[bytes]:
    """The ALPN protocols of a TLS ClientHello (RFC 8446 4.1.2, RFC 7301), peeked."""
    data = b""
    for _ in range(50):
        data = conn.recv(16384, socket.MSG_PEEK)
        if len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[3:5], "big"):
            break
        time.sleep(0.01)
    if len(data) < 43 or data[0] != 0x16 or data[5] != 0x01:
        return []
    pos = 5 + 4 + 2 + 32  # record header, handshake header, version, random
    pos += 1 + data[pos]  # session id
    pos += 2 + int.from_bytes(data[pos : pos + 2], "big")  # cipher suites
    pos += 1 + data[pos]  # compression methods
    end = pos + 2 + int.from_bytes(data[pos : pos + 2], "big")
    pos += 2
    while pos + 4 <= min(end, len(data)):
        kind, size = int.from_bytes(data[pos : pos + 2], "big"), int.from_bytes(
            data[pos + 2 : pos + 4], "big")  # fmt: skip
        if kind == 0x0010:  # application_layer_protocol_negotiation
            protocols, at = [], pos + 6
            while at < pos + 4 + size:
                protocols.append(data[at + 1 : at + 1 + data[at]])
                at += 1 + data[at]
            return protocols
        pos += 4 + size
    return []


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


def _die_with_parent() -> None:
    # etcd lives inside k3s's process: if the stand-in is killed, its etcd must not linger
    # (the unit's KillMode=process would leave it holding the ports). PR_SET_PDEATHSIG = 1.
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _urls(*urls: str) -> str:
    return ",".join(dict.fromkeys(urls))  # a node on loopback only: one listener per address


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip
