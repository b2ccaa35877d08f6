"""A test Kubernetes API server speaking the real protocol over HTTP/1.1 + TLS.

What it implements, because the agent relies on it:
- client-certificate authentication and a small Node-authorizer-like authorization
  (system:node:<name> sees only its own pods/node and the ConfigMaps/Secrets they use;
  system:kube-proxy reads Services and EndpointSlices; system:masters may do anything);
- list with resourceVersion semantics ("0" = any, served whole like the watch cache does;
  "" = most recent, paginated with `limit`/`continue`; expired tokens answer 410 Expired);
- chunked watch streams with BOOKMARK events (`allowWatchBookmarks`), `timeoutSeconds`,
  `sendInitialEvents` ending with the `k8s.io/initial-events-end` bookmark (or 422 when
  refused), and 410 "too old resource version" for compacted history;
- fieldSelector (metadata.name, metadata.namespace, spec.nodeName) and labelSelector;
- Status objects on every error, and per-name GET;
- the non-resource endpoints /version, /livez, /readyz (with ?verbose check lines) open to
  everyone like kube-apiserver's public-info-viewer role, and /metrics (system:masters) with
  the apiserver_storage_size_bytes gauge.
Test controls (mutations, compaction, dropped streams, stop/start) are methods here and
are exposed over a separate plain-HTTP admin port by `tests.kubeapi.admin`.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.kubeapi import discovery, writes
from tests.kubeapi.selectors import field_value, matcher
from tests.kubeapi.state import RESOURCES, ApiStatusError, Obj, Resource, State

INITIAL_EVENTS_END = "k8s.io/initial-events-end"

# An extra non-Kubernetes route served on the API port (a host process embedding this server
# adds its own, e.g. the k3s test stand-in's join endpoints): request headers in, (HTTP code,
# content type, body) out. It runs before authentication: it must check credentials itself.
ExtraRoute = Callable[[Message], tuple[int, str, bytes]]


@dataclass
class Options:
    """Behaviour switches tests flip at run time."""

    bookmark_interval: float = 1.0
    refuse_watch_list: bool = False
    paginate_rv0: bool = False  # real apiservers ignore `limit` for resourceVersion=0
    authorize: bool = True
    tokens: dict[str, str] = field(default_factory=dict)  # bearer token -> user name
    # Non-resource endpoints (health reports read them): /version's gitVersion, the
    # /readyz checks that fail (e.g. ["etcd"]), and the storage size /metrics reports.
    git_version: str = "v1.36.4+k3s1"
    failing_checks: list[str] = field(default_factory=list)
    storage_size_bytes: int = 1 << 20


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    user: str


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr: tuple[str, int], api: KubeAPIServer) -> None:
        self.api = api
        super().__init__(addr, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        # The handshake runs in the handler thread so a slow client cannot stall accept().
        tls = self.api.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        return tls, addr


class _Abort(Exception):
    """The connection must be dropped without a proper HTTP ending."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TLSServer

    def setup(self) -> None:
        self.request.settimeout(30)
        try:
            self.request.do_handshake()
        except (OSError, ssl.SSLError):
            self.close_connection = True
            raise
        super().setup()
        self.api = self.server.api
        self.api.track(self.request, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.api.track(self.request, False)

    def handle(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError, _Abort):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:  # quiet tests
        pass

    # --- plumbing ------------------------------------------------------------------
    def _identity(self) -> Identity | None:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            user = self.api.options.tokens.get(auth[7:].strip())
            return Identity(user, ("system:authenticated",)) if user else None
        cert = self.request.getpeercert()
        if not cert:
            return None
        cn, orgs = "", []
        for rdn in cert.get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    cn = v
                elif k == "organizationName":
                    orgs.append(v)
        return Identity(cn, tuple(orgs))

    def _send_json(self, code: int, body: Obj) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _extra_route(self, method: str) -> bool:
        route = self.api.extra_routes.get((method, urlsplit(self.path).path))
        if route is None:
            return False
        code, ctype, data = route(self.headers)
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return True

    def do_GET(self) -> None:
        if self._extra_route("GET"):
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        ident = self._identity()
        self.api.log_request(Request("GET", url.path, query, ident.user if ident else ""))
        try:
            if url.path in _NON_RESOURCE:
                self._non_resource(url.path, query, ident)
                return
            if ident is None:
                raise ApiStatusError(401, "Unauthorized", "Unauthorized")
            doc = discovery.document(url.path)
            if doc is not None:  # open to every authenticated user (system:discovery)
                self._send_json(200, doc)
                return
            res, ns, name = _route(url.path)
            watch = query.get("watch", "") in ("1", "true")
            self.api.authorize(ident, res, ns, name, query, "watch" if watch else "get")
            if name is not None:
                self._send_json(200, self.api.state.get(res.plural, ns or "", name))
            elif watch:
                self._watch(res, ns, query)
            else:
                self._send_json(200, self.api.list(res, ns, query))
        except ApiStatusError as err:
            self._send_json(err.code, err.status())

    def _send_text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _non_resource(self, path: str, query: dict[str, str], ident: Identity | None) -> None:
        opts = self.api.options
        if path == "/version":
            major, minor = opts.git_version.lstrip("v").split(".")[:2]
            self._send_json(200, {"major": major, "minor": minor, "gitVersion": opts.git_version,
                                  "platform": "linux/amd64"})  # fmt: skip
        elif path == "/metrics":
            if ident is None or (opts.authorize and "system:masters" not in ident.groups):
                raise ApiStatusError(403, "Forbidden", 'forbidden: cannot get path "/metrics"')
            self._send_text(200, "# HELP apiserver_storage_size_bytes Size of the storage "
                            "database file physically allocated in bytes.\n"
                            "# TYPE apiserver_storage_size_bytes gauge\n"
                            'apiserver_storage_size_bytes{storage_cluster_id="test"} '
                            f"{opts.storage_size_bytes}\n")  # fmt: skip
        else:  # /livez, /readyz, like kube-apiserver's healthz handler
            checks = ("ping", "log", "etcd", "poststarthook/start-informers")
            lines = [f"[-]{c} failed: reason withheld" if c in opts.failing_checks
                     else f"[+]{c} ok" for c in checks]  # fmt: skip
            ok = not any(c in opts.failing_checks for c in checks)
            name = path.strip("/")
            lines.append(f"{name} check passed" if ok else f"{name} check failed")
            verbose = "verbose" in query
            self._send_text(200 if ok else 500, "\n".join(lines) + "\n" if verbose or not ok
                            else "ok")  # fmt: skip

    def _write(self, method: str) -> None:
        if self._extra_route(method):
            return
        url = urlsplit(self.path)
        size = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(size) if size else b""
        ident = self._identity()
        self.api.log_request(Request(method, url.path, {}, ident.user if ident else ""))
        try:
            if ident is None:
                raise ApiStatusError(401, "Unauthorized", "Unauthorized")
            code, obj = self.api.write(ident, method, url.path, self.headers, raw)
            self._send_json(code, obj)
        except ApiStatusError as err:
            self._send_json(err.code, err.status())

    def do_POST(self) -> None:
        self._write("POST")

    def do_PUT(self) -> None:
        self._write("PUT")

    def do_PATCH(self) -> None:
        self._write("PATCH")

    def do_DELETE(self) -> None:
        self._write("DELETE")

    # --- watch ---------------------------------------------------------------------
    def _watch(self, res: Resource, ns: str | None, q: dict[str, str]) -> None:
        api, st = self.api, self.api.state
        match = matcher(q.get("fieldSelector", ""), q.get("labelSelector", ""))
        bookmarks = q.get("allowWatchBookmarks") in ("1", "true")
        initial = q.get("sendInitialEvents") in ("1", "true")
        rv_param = q.get("resourceVersion", "")
        timeout = float(q.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        if initial:
            if api.options.refuse_watch_list:
                raise ApiStatusError(
                    422, "Invalid", "sendInitialEvents: Forbidden: sendInitialEvents is "
                    "forbidden for watch unless the WatchList feature gate is enabled",
                )  # fmt: skip
            if q.get("resourceVersionMatch") != "NotOlderThan" or not bookmarks:
                raise ApiStatusError(
                    422, "Invalid", "sendInitialEvents requires resourceVersionMatch="
                    "NotOlderThan and allowWatchBookmarks=true",
                )  # fmt: skip
        with st.cond:
            gen = api.generation
            too_old = False
            if rv_param in ("", "0") or initial:
                start = [o for o in st.items(res.plural, ns) if match(o)]
                last_rv = st.rv
            else:
                start = []
                last_rv = int(rv_param)
                too_old = last_rv < st.compacted_rv
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if too_old:
            self._event("ERROR", _gone(last_rv))
            self._chunk(b"")
            return
        for obj in start:
            self._event("ADDED", obj)
        if initial:
            self._event("BOOKMARK", _bookmark(res, last_rv, end=True))
        next_bookmark = time.monotonic() + api.options.bookmark_interval
        while True:
            with st.cond:
                while True:
                    if api.generation != gen:
                        self._drop(api.drop_mid_event)
                    if last_rv < st.compacted_rv:
                        events, gone = [], True
                        break
                    i = bisect.bisect_right(st.history, last_rv, key=lambda e: e.rv)
                    events, gone = st.history[i:], False
                    now = time.monotonic()
                    if events or now >= deadline or (bookmarks and now >= next_bookmark):
                        break
                    st.cond.wait(min(deadline, next_bookmark if bookmarks else deadline) - now)
                current = st.rv
            if gone:
                self._event("ERROR", _gone(last_rv))
                break
            for ev in events:
                last_rv = ev.rv
                if ev.resource != res.plural or not match(ev.obj):
                    continue
                if ns is not None and ev.obj["metadata"].get("namespace") != ns:
                    continue
                self._event(ev.type, ev.obj)
            if not events:
                last_rv = max(last_rv, current)
            if time.monotonic() >= deadline:
                break
            if bookmarks and time.monotonic() >= next_bookmark:
                self._event("BOOKMARK", _bookmark(res, last_rv))
                next_bookmark = time.monotonic() + api.options.bookmark_interval
        self._chunk(b"")

    def _event(self, etype: str, obj: Obj) -> None:
        line = json.dumps({"type": etype, "object": obj}, separators=(",", ":")) + "\n"
        self._chunk(line.encode())

    def _drop(self, mid_event: bool) -> None:
        if mid_event:
            # Half an event line, then the TCP connection dies: the client must not apply it.
            self._chunk(b'{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"half')
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_RDWR)
        raise _Abort


_NON_RESOURCE = frozenset({"/version", "/livez", "/readyz", "/metrics"})


def _bookmark(res: Resource, rv: int, end: bool = False) -> Obj:
    meta: Obj = {"resourceVersion": str(rv)}
    if end:
        meta["annotations"] = {INITIAL_EVENTS_END: "true"}
    return {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}


def _gone(rv: int) -> Obj:
    return ApiStatusError(410, "Expired", f"too old resource version: {rv}").status()


def _route(path: str) -> tuple[Resource, str | None, str | None]:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        rest = parts[3:]
    else:
        raise ApiStatusError(404, "NotFound", f"the server could not find {path}")
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    if not rest or rest[0] not in RESOURCES or len(rest) > 2:
        raise ApiStatusError(404, "NotFound", f"the server could not find {path}")
    res = RESOURCES[rest[0]]
    if res.prefix != "/" + "/".join(parts[: 2 if parts[0] == "api" else 3]):
        raise ApiStatusError(404, "NotFound", f"the server could not find {path}")
    name = rest[1] if len(rest) == 2 else None
    if name is not None and res.namespaced and ns is None:
        raise ApiStatusError(404, "NotFound", f"the server could not find {path}")
    return res, ns, name


class KubeAPIServer:
    """Start with `start()`; `url` then points at it. Usable in-process or via `admin`."""

    def __init__(
        self,
        tls_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        options: Options | None = None,
    ) -> None:
        from tests.kubeapi import certs

        ca, _ = certs.ensure_ca(tls_dir)
        srv = certs.server_cert(tls_dir, (host, "127.0.0.1", "localhost"))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(srv.cert, srv.key)
        ctx.load_verify_locations(ca)
        # Optional so that a missing certificate gets a 401 Status, like kube-apiserver.
        ctx.verify_mode = ssl.CERT_OPTIONAL
        self.ssl_context = ctx
        self.tls_dir, self.host, self.port = tls_dir, host, port
        self.options = options or Options()
        self.state = State()
        self.generation = 0
        self.drop_mid_event = False
        self.requests: deque[Request] = deque(maxlen=2000)
        self.extra_routes: dict[tuple[str, str], ExtraRoute] = {}
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._httpd: _TLSServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> None:
        if self._httpd is not None:
            return
        for _ in range(100):  # the port may linger briefly after stop()
            try:
                self._httpd = _TLSServer((self.host, self.port), self)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise OSError(f"cannot bind {self.host}:{self.port}")
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and cut every open connection (the API 'goes down')."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        self.drop_streams(mid_event=False)
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        # Let handler threads finish, so the port can be bound again at once by start().
        deadline = time.monotonic() + 5
        while self._conns and time.monotonic() < deadline:
            time.sleep(0.01)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    # --- test controls -------------------------------------------------------------
    def upsert(self, resource: str, obj: Obj) -> Obj:
        return self.state.upsert(resource, obj)

    def delete(self, resource: str, namespace: str, name: str) -> Obj:
        return self.state.delete(resource, namespace, name)

    def compact(self, up_to: int | None = None) -> int:
        return self.state.compact(up_to)

    def expire_tokens(self) -> None:
        self.state.expire_tokens()

    def drop_streams(self, mid_event: bool = False) -> None:
        with self.state.cond:
            self.drop_mid_event = mid_event
            self.generation += 1
            self.state.cond.notify_all()

    def log_request(self, req: Request) -> None:
        self.requests.append(req)

    # --- API semantics -------------------------------------------------------------
    def write(
        self, who: Identity, method: str, path: str, headers: Message, raw: bytes
    ) -> tuple[int, Obj]:
        """POST/PUT/PATCH/DELETE on a resource path (tests.kubeapi.writes has the rules)."""
        sub = None
        parts = path.rstrip("/").split("/")
        if len(parts) > 2 and parts[-3] == "pods" and parts[-1] == "eviction":
            sub, path = "eviction", "/".join(parts[:-1])
        res, ns, name = _route(path)
        if self.options.authorize and "system:masters" not in who.groups:
            raise ApiStatusError(
                403, "Forbidden", f'{res.plural} is forbidden: User "{who.user}" cannot '
                f"{method.lower()} resource \"{res.plural}\" (the test API lets only "
                "system:masters write)",
            )  # fmt: skip
        body: Any = None
        if method in ("POST", "PUT") and raw:
            try:
                body = json.loads(raw)
            except ValueError as err:
                raise ApiStatusError(400, "BadRequest", f"error decoding body: {err}") from err
        if sub == "eviction" and method == "POST" and name is not None:
            return 201, writes.evict(self.state, ns or "default", name, body)
        if method == "POST" and name is None:
            return 201, writes.create(self.state, res, ns, body)
        if name is None:
            raise ApiStatusError(405, "MethodNotAllowed", f"{method} is not allowed on {path}")
        if method == "PUT":
            return 200, writes.update(self.state, res, ns, name, body)
        if method == "PATCH":
            ctype = headers.get("Content-Type", "")
            return 200, writes.patch(self.state, res, ns, name, ctype, raw)
        if method == "DELETE":
            return 200, writes.delete(self.state, res, ns, name)
        raise ApiStatusError(405, "MethodNotAllowed", f"{method} is not allowed on {path}")

    def list(self, res: Resource, ns: str | None, q: dict[str, str]) -> Obj:
        st = self.state
        match = matcher(q.get("fieldSelector", ""), q.get("labelSelector", ""))
        limit = int(q.get("limit") or 0)
        token = q.get("continue", "")
        rv_param = q.get("resourceVersion", "")
        if token:
            tok = st.take_token(token)
            rv, items = tok.rv, tok.items
        else:
            with st.cond:
                rv = st.rv
                items = [o for o in st.items(res.plural, ns) if match(o)]
            if rv_param == "0" and not self.options.paginate_rv0:
                limit = 0
        meta: Obj = {"resourceVersion": str(rv)}
        if limit and len(items) > limit:
            items, rest = items[:limit], items[limit:]
            meta["continue"] = st.new_token(rv, rest)
            meta["remainingItemCount"] = len(rest)
        return {"kind": res.kind + "List", "apiVersion": res.api_version, "metadata": meta,
                "items": items}  # fmt: skip

    def authorize(
        self, who: Identity, res: Resource, ns: str | None, name: str | None,
        q: dict[str, str], verb: str,
    ) -> None:  # fmt: skip
        if not self.options.authorize or "system:masters" in who.groups:
            return
        fsel = q.get("fieldSelector", "")
        allowed = False
        if who.user == "system:kube-proxy":
            allowed = res.plural in ("services", "endpointslices", "nodes")
        elif who.user.startswith("system:node:") and "system:nodes" in who.groups:
            node = who.user.removeprefix("system:node:")
            if res.plural == "pods":
                allowed = field_value(fsel, "spec.nodeName") == node
            elif res.plural == "nodes":
                allowed = (name or field_value(fsel, "metadata.name")) == node
            elif res.plural == "services":
                allowed = True
            elif res.plural in ("configmaps", "secrets"):
                target = name or field_value(fsel, "metadata.name")
                allowed = target is not None and (ns or "", target) in self._node_refs(
                    node, res.plural
                )
        if not allowed:
            scope = f' in the namespace "{ns}"' if ns else " at the cluster scope"
            raise ApiStatusError(
                403, "Forbidden", f'{res.plural} is forbidden: User "{who.user}" cannot '
                f'{"list" if verb == "get" and name is None else verb} resource '
                f'"{res.plural}"{scope}',
            )  # fmt: skip

    def _node_refs(self, node: str, plural: str) -> set[tuple[str, str]]:
        refs: set[tuple[str, str]] = set()
        for pod in self.state.items("pods", None):
            if pod.get("spec", {}).get("nodeName") != node:
                continue
            ns = pod["metadata"].get("namespace", "default")
            refs.update((ns, n) for n in pod_references(pod, plural))
        return refs


def pod_references(pod: Obj, plural: str) -> set[str]:
    """Names of ConfigMaps ("configmaps") or Secrets ("secrets") a pod uses."""
    spec = pod.get("spec", {})
    kind = "configMap" if plural == "configmaps" else "secret"
    out: set[str] = set()
    for vol in spec.get("volumes") or []:
        src = vol.get(kind)
        if src:
            out.add(src.get("name") if kind == "configMap" else src.get("secretName"))
        for proj in (vol.get("projected") or {}).get("sources") or []:
            if proj.get(kind):
                out.add(proj[kind].get("name"))
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for env in c.get("env") or []:
            ref = (env.get("valueFrom") or {}).get(f"{kind}KeyRef")
            if ref:
                out.add(ref.get("name"))
        for env_from in c.get("envFrom") or []:
            ref = env_from.get(f"{kind}Ref")
            if ref:
                out.add(ref.get("name"))
    if kind == "secret":
        out.update(s.get("name") for s in spec.get("imagePullSecrets") or [])
    out.discard(None)
    return out


def free_port() -> int:
    """A free loopback port (bind port 0), for callers that need one up front."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
