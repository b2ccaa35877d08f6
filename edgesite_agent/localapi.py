"""Read-only local API on loopback (or a unix socket): a Kubernetes API for the objects this
node holds, plus health.

Node-local consumers (kubectl, client-go informers, the official clients, scripts) read what
the node knows even while the masters are unreachable, like KubeEdge's MetaServer: discovery
(`discovery`), list/get with the API server's selectors, paging and resourceVersions
(`localapi_read`), watches from the agent's recent changes (`localapi_watch`, `watchcache`)
and Table answers for kubectl (`tables`). Lists stream stored JSON texts straight from
SQLite, so serving a big list costs little.

Access: on TCP an optional bearer token (a 0600 file) guards everything but /healthz,
/livez, /readyz and /version (kube-apiserver's system:public-info-viewer role), optionally
over TLS (kubectl sends tokens only over TLS); on a unix socket the file's permissions
decide.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable

from edgesite_agent.status import Status
from edgesite_agent.store import Store
from edgesite_agent.urls import parse_query, split_target

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from typing import Any

    from edgesite_agent.log import Logger
    from edgesite_agent.watchcache import WatchCache

# plural -> (kind, apiVersion, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "pods": ("Pod", "v1", True),
    "nodes": ("Node", "v1", False),
    "configmaps": ("ConfigMap", "v1", True),
    "secrets": ("Secret", "v1", True),
    "services": ("Service", "v1", True),
    "endpointslices": ("EndpointSlice", "discovery.k8s.io/v1", True),
}
MAX_LINE = 8192  # request line and each header line
MAX_HEADERS = 100
MAX_DISCARD = 1 << 20  # a request body we read (to answer cleanly) but never use
PUBLIC = frozenset({"/healthz", "/livez", "/readyz", "/version"})


# The answers this server gives; http.HTTPStatus would import an enum of ~60 members.
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable", 410: "Gone",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable", 504: "Gateway Timeout"}  # fmt: skip


def status_obj(code: int, reason: str, message: str, details: Any = None) -> dict[str, Any]:
    """A metav1.Status as the API server's errors carry it (apimachinery api/errors)."""
    out = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code}  # fmt: skip
    if details:
        out["details"] = details
    return out


class ApiFailure(Exception):
    """An error answer: becomes a Status with this code and reason."""

    def __init__(self, code: int, reason: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status_obj(code, reason, message, details)
        self.code = code


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many local clients connecting at once (default 5)

    def __init__(self, addr: tuple[str, int], api: LocalAPI) -> None:
        self.api = api
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, _Handler)


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    """The same API on a unix socket: access is then decided by file permissions (0600,
    the agent's user) instead of by whoever can reach a loopback port."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, path: str, api: LocalAPI) -> None:
        self.api = api
        super().__init__(path, _Handler, bind_and_activate=False)
        # Bound under a temporary name, made private, then renamed into place: the socket
        # is never reachable with the process umask's permissions, and a stale socket
        # left by a killed agent is replaced atomically.
        tmp = f"{path}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            self.socket.bind(tmp)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
            self.server_address = path
            self.server_activate()
        except BaseException:
            self.server_close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


class _Handler(socketserver.StreamRequestHandler):
    """A deliberately small HTTP/1.1 server side: one GET/HEAD per connection, answered
    with `Connection: close`. http.server would pull in html, mimetypes, shutil, bz2 and
    lzma (about 1 MiB resident) for features a loopback read API does not use."""

    server: _Server
    timeout = 30  # a client that stops sending (or reading) must not hold a thread for ever

    def setup(self) -> None:
        tls = self.server.api.tls
        if tls is not None:
            # The handshake runs here, in the connection's thread, bounded by `timeout`.
            self.request.settimeout(self.timeout)
            self.request = tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def handle(self) -> None:
        self.command = "GET"
        self.headers: dict[str, str] = {}
        try:
            line = self.rfile.readline(MAX_LINE + 1)
            if not line:
                return
            parts = line.decode("latin-1").split()
            if len(line) > MAX_LINE or len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                return self.send(400, b"bad request", "text/plain")
            self.command, target = parts[0], parts[1]
            for _ in range(MAX_HEADERS):
                header = self.rfile.readline(MAX_LINE + 1)
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                self.headers[name.strip().lower()] = value.strip()
            else:
                return self.send(431, b"too many headers", "text/plain")
            length = int(self.headers.get("content-length") or 0)
            if length:
                # Read what the client sends before answering, so closing does not reset
                # the connection under the client before it has read our answer.
                self.rfile.read(min(length, MAX_DISCARD))
            # Nothing more is read from the client: its 8 KiB read buffer goes now rather than
            # when the connection ends (a watch holds its connection for up to an hour).
            self.rfile.close()
            path, query = split_target(target)
            path = path.rstrip("/") or "/"
            api = self.server.api
            api.log.debug("local api: %s %s", self.command, target)
            if not self._authorized(path):
                return self.json(401, status_obj(401, "Unauthorized", "Unauthorized"))
            if self.command in ("GET", "HEAD"):
                self.do_get(path, query)
            else:
                self.json(405, status_obj(405, "MethodNotAllowed", "the local API is read-only"))
        except (OSError, ValueError) as exc:
            self.server.api.log.debug("local api: %s: %s", self.client_address, exc)

    def _authorized(self, path: str) -> bool:
        token = self.server.api.token
        if token is None or path in PUBLIC:
            return True
        from _operator import _compare_digest  # hmac.compare_digest without hmac's imports

        scheme, _, given = self.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and _compare_digest(given.strip().encode(), token)

    # --- answers -------------------------------------------------------------------
    def head(self, code: int, ctype: str, length: int | None) -> None:
        framing = (
            f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
        )
        self.wfile.write(
            f"HTTP/1.1 {code} {REASONS.get(code, 'Error')}\r\nContent-Type: {ctype}\r\n"
            f"{framing}\r\nCache-Control: no-cache, private\r\nConnection: close\r\n\r\n"
            .encode("latin-1")
        )  # fmt: skip

    def send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.head(code, ctype, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def json(self, code: int, obj: Any) -> None:
        self.send(code, json.dumps(obj, separators=(",", ":")).encode())

    def chunk(self, text: str) -> None:
        data = text.encode()
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def client_gone(self) -> bool:
        """The client closed its end (a watch has nothing to read from it otherwise)."""
        import select

        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if readable and self.server.api.tls is not None:
                return True  # TLS cannot peek; a watch client sends nothing but its close
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True

    # --- routes --------------------------------------------------------------------
    def do_get(self, path: str, query: str) -> None:
        api = self.server.api
        if path in ("/healthz", "/livez"):
            return self.send(200, b"ok", "text/plain")
        if path == "/readyz":
            ready = api.status.ready()
            return self.send(200 if ready else 503, b"ok" if ready else b"not ready",
                             "text/plain")  # fmt: skip
        if path == "/metrics":
            text = api.status.render(api.store.counts(), api.store.size_bytes())
            return self.send(200, text.encode(), "text/plain; version=0.0.4")
        if path == "/version":
            from edgesite_agent.discovery import version_info

            return self.json(200, version_info())
        if path in ("/api", "/apis", "/api/v1") or (
            path.startswith("/apis/") and path.count("/") <= 3
        ):  # discovery only: /api/v1/pods must not import it
            from edgesite_agent import discovery

            addr = self.server.server_address
            where = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else "127.0.0.1:0"
            doc = discovery.document(path, api.served(), where)
            if doc is not None:
                return self.json(200, doc)
        route = _route(path)
        if route is None:
            return self.json(
                404, status_obj(404, "NotFound", "the server could not find the requested resource")
            )
        plural, ns, name = route
        if plural == "secrets" and not api.cache_secrets:
            return self.json(403, status_obj(
                403, "Forbidden", "secrets are not cached on this node (cache_secrets=false)"
            ))  # fmt: skip
        q = {k: v[-1] for k, v in parse_query(query).items()}
        try:
            if q.get("watch") in ("1", "true") and name is None:
                from edgesite_agent.localapi_watch import serve_watch

                serve_watch(self, plural, ns, q)
            else:
                from edgesite_agent.localapi_read import serve_read

                serve_read(self, plural, ns, name, q)
        except ApiFailure as exc:
            self.json(exc.code, exc.status)


def _route(path: str) -> tuple[str, str | None, str | None] | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        rest, group = parts[2:], "v1"
    elif parts[:3] == ["apis", "discovery.k8s.io", "v1"]:
        rest, group = parts[3:], "discovery.k8s.io/v1"
    else:
        return None
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    if not rest or len(rest) > 2 or rest[0] not in RESOURCES:
        return None
    plural = rest[0]
    _, api_version, namespaced = RESOURCES[plural]
    if api_version != group or (ns is not None and not namespaced):
        return None
    name = rest[1] if len(rest) == 2 else None
    if name is not None and namespaced and ns is None:
        return None
    return plural, ns, name


def read_token(path: str) -> bytes:
    """The bearer token file: must be private to its owner (0600 or stricter)."""
    st = os.stat(path)
    if st.st_mode & 0o077:
        raise ValueError(f"{path}: mode {st.st_mode & 0o777:o} is readable by others; use 0600")
    with open(path, "rb") as f:
        token = f.read().strip()
    if not token:
        raise ValueError(f"{path}: empty token")
    return token


class LocalAPI:
    def __init__(
        self, store: Store, status: Status, log: Logger, address: str, port: int,
        cache_secrets: bool, after_list: Callable[[], None] = lambda: None, unix_path: str = "",
        watch: WatchCache | None = None, token_file: str = "", tls_cert_file: str = "",
        tls_key_file: str = "",
    ) -> None:  # fmt: skip
        self.store, self.status, self.log = store, status, log
        self.cache_secrets = cache_secrets
        self.after_list = after_list  # e.g. return the list's transient heap to the OS
        self.unix_path = unix_path
        if watch is None:
            from edgesite_agent.watchcache import WatchCache

            watch = WatchCache()
        self.watch = watch
        # The unix socket keeps its file permissions as the only gate (see module doc).
        self.token = read_token(token_file) if token_file and not unix_path else None
        # HTTPS on TCP when a certificate is given: client-go (kubectl) sends a bearer token
        # only over TLS (tools/clientcmd/client_config.go getUserIdentificationPartialConfig).
        self.tls: Any = None
        if tls_cert_file and not unix_path:
            import ssl

            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(tls_cert_file, tls_key_file or None)
        self._httpd: socketserver.BaseServer
        if unix_path:
            self._httpd = _UnixServer(unix_path, self)
            self.port = 0
            self.url = f"unix:{unix_path}"
        else:
            self._httpd = _Server((address, port), self)
            self.port = self._httpd.server_address[1]
            host = f"[{address}]" if ":" in address else address
            self.url = f"{'https' if self.tls else 'http'}://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="localapi", daemon=True
        )

    def served(self) -> set[str]:
        """The plurals discovery lists: what this node holds."""
        return {p for p in RESOURCES if p != "secrets" or self.cache_secrets}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self.unix_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)
