"""Read-only local API on loopback (or a unix socket): cached objects in Kubernetes JSON
shape, plus health.

Node-local consumers (scripts, DaemonSets using hostNetwork) read what the node knows even
while the masters are unreachable, like KubeEdge's MetaServer. Lists stream stored JSON
texts straight from SQLite without decoding them, so serving a big list costs little.
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


# The answers this server gives; http.HTTPStatus would import an enum of ~60 members.
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], api: LocalAPI) -> None:
        self.api = api
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, _Handler)


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    """The same API on a unix socket: access is then decided by file permissions (0600,
    the agent's user) instead of by whoever can reach a loopback port."""

    daemon_threads = True

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
    timeout = 30  # a client that stops sending must not hold a thread for ever

    def handle(self) -> None:
        self.command = "GET"
        try:
            line = self.rfile.readline(MAX_LINE + 1)
            if not line:
                return
            parts = line.decode("latin-1").split()
            if len(line) > MAX_LINE or len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                return self._send(400, b"bad request", "text/plain")
            self.command, target = parts[0], parts[1]
            length = 0
            for _ in range(MAX_HEADERS):
                header = self.rfile.readline(MAX_LINE + 1)
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip() or 0)
            else:
                return self._send(431, b"too many headers", "text/plain")
            if length:
                # Read what the client sends before answering, so closing does not reset
                # the connection under the client before it has read our answer.
                self.rfile.read(min(length, MAX_DISCARD))
            if self.command in ("GET", "HEAD"):
                self.do_get(target)
            else:
                self._json(405, _status(405, "MethodNotAllowed", "the local API is read-only"))
        except (OSError, ValueError) as exc:
            self.server.api.log.debug("local api: %s: %s", self.client_address, exc)

    def _head(self, code: int, ctype: str, length: int | None) -> None:
        framing = (
            f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
        )
        self.wfile.write(
            f"HTTP/1.1 {code} {REASONS.get(code, 'Error')}\r\nContent-Type: {ctype}\r\n"
            f"{framing}\r\nConnection: close\r\n\r\n".encode("latin-1")
        )

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self._head(code, ctype, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj, separators=(",", ":")).encode())

    def do_get(self, target: str) -> None:
        api = self.server.api
        path, query = split_target(target)
        path = path.rstrip("/")
        api.log.debug("local api: %s %s", self.command, target)
        if path == "/healthz":
            return self._send(200, b"ok", "text/plain")
        if path == "/readyz":
            ready = api.status.ready()
            return self._send(200 if ready else 503, b"ok" if ready else b"not ready",
                              "text/plain")  # fmt: skip
        if path == "/metrics":
            text = api.status.render(api.store.counts(), api.store.size_bytes())
            return self._send(200, text.encode(), "text/plain; version=0.0.4")
        route = _route(path)
        if route is None:
            return self._json(404, _status(404, "NotFound", f"the server could not find {path}"))
        plural, ns, name = route
        kind, api_version, _ = RESOURCES[plural]
        if plural == "secrets" and not api.cache_secrets:
            return self._json(403, _status(
                403, "Forbidden", "secrets are not cached on this node (cache_secrets=false)"
            ))  # fmt: skip
        if name is not None:
            text = api.store.get_json(kind, ns or "", name)
            if text is None:
                return self._json(404, _status(404, "NotFound", f'{plural} "{name}" not found'))
            return self._send(200, text.encode())
        q = parse_query(query)
        self._stream_list(kind, api_version, ns, q.get("labelSelector", [""])[0])

    def _stream_list(self, kind: str, api_version: str, ns: str | None, labels: str) -> None:
        api = self.server.api
        keep = _label_filter(labels)
        rv = api.store.resource_version(kind)
        self._head(200, "application/json", None)
        if self.command == "HEAD":
            self.wfile.write(b"0\r\n\r\n")
            return
        head = json.dumps({"kind": f"{kind}List", "apiVersion": api_version,
                           "metadata": {"resourceVersion": rv}})  # fmt: skip
        parts = [head[:-1] + ',"items":[']
        first = True
        for text in api.store.iter_json(kind, ns):
            if keep is not None and not keep(json.loads(text)):
                continue
            parts.append(text if first else "," + text)
            first = False
            if len(parts) >= 100:
                self._chunk("".join(parts))
                parts = []
        parts.append("]}")
        self._chunk("".join(parts))
        self.wfile.write(b"0\r\n\r\n")
        api.after_list()

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


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


def _label_filter(selector: str) -> Callable[[dict[str, Any]], bool] | None:
    """Equality label selectors (`a=b,c!=d,e,!f`); enough for node-local consumers."""
    terms = [t.strip() for t in selector.split(",") if t.strip()]
    if not terms:
        return None

    def keep(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        for t in terms:
            if t.startswith("!"):
                ok = t[1:] not in labels
            elif "!=" in t:
                k, _, v = t.partition("!=")
                ok = labels.get(k) != v
            elif "=" in t:
                k, _, v = t.partition("==" if "==" in t else "=")
                ok = labels.get(k) == v
            else:
                ok = t in labels
            if not ok:
                return False
        return True

    return keep


class LocalAPI:
    def __init__(
        self, store: Store, status: Status, log: Logger, address: str, port: int,
        cache_secrets: bool, after_list: Callable[[], None] = lambda: None, unix_path: str = "",
    ) -> None:  # fmt: skip
        self.store, self.status, self.log = store, status, log
        self.cache_secrets = cache_secrets
        self.after_list = after_list  # e.g. return the list's transient heap to the OS
        self.unix_path = unix_path
        self._httpd: socketserver.BaseServer
        if unix_path:
            self._httpd = _UnixServer(unix_path, self)
            self.port = 0
            self.url = f"unix:{unix_path}"
        else:
            self._httpd = _Server((address, port), self)
            self.port = self._httpd.server_address[1]
            host = f"[{address}]" if ":" in address else address
            self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="localapi", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self.unix_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)
