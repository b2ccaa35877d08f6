"""A small Kubernetes API client: GET, paginated LIST and line-by-line WATCH over HTTPS.

Every request has a connect timeout and a read timeout (a socket timeout covers each
read, so a silently dead link is noticed). Errors come back as `ApiError` carrying the
HTTP code and the Status reason, so callers can tell 410 Gone from everything else.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    import http.client

    from edgesite_agent.kubeconfig import Credentials

Obj = dict[str, Any]


class ApiError(Exception):
    """An error answer from the API server, or a transport failure (code 0)."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}" if code else message)
        self.code, self.reason, self.message = code, reason, message

    @property
    def gone(self) -> bool:
        return self.code == 410

    @classmethod
    def from_status(cls, code: int, body: bytes | Obj) -> ApiError:
        status: Any = body
        if isinstance(body, bytes | bytearray):
            try:
                status = json.loads(body)
            except ValueError:
                status = {}
        if not isinstance(status, dict):
            status = {}
        return cls(
            int(status.get("code") or code),
            str(status.get("reason") or "Unknown"),
            str(status.get("message") or "")[:500],
        )


class KubeClient:
    """One identity talking to one API server. Thread-safe: connections are per thread."""

    def __init__(
        self,
        creds: Credentials,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        user_agent: str = "edgesite-agent",
    ) -> None:
        url = urlsplit(creds.server)
        self.host = url.hostname or ""
        self.port = url.port or 443
        self.base_path = url.path.rstrip("/")
        self.creds = creds
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.user_agent = user_agent
        self._ctx = creds.ssl_context()
        self._local = threading.local()

    # --- connections ---------------------------------------------------------------
    def _connect(self, read_timeout: float) -> http.client.HTTPSConnection:
        import http.client

        conn = http.client.HTTPSConnection(
            self.host, self.port, timeout=self.connect_timeout, context=self._ctx
        )
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ApiError(0, "ConnectFailed", f"connect {self.host}:{self.port}: {exc}") from exc
        assert conn.sock is not None
        conn.sock.settimeout(read_timeout)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return conn

    def _headers(self, accept: str = "application/json") -> dict[str, str]:
        h = {"Accept": accept, "User-Agent": self.user_agent}
        token = self.creds.bearer()
        if token:
            h["Authorization"] = f"Bearer {token}"
        return h

    def url(self, path: str, params: dict[str, str] | None = None) -> str:
        q = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        return self.base_path + path + (f"?{q}" if q else "")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- requests ------------------------------------------------------------------
    def get(self, path: str, params: dict[str, str] | None = None) -> Obj:
        """GET returning decoded JSON; reuses this thread's keep-alive connection."""
        import http.client

        target = self.url(path, params)
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            fresh = conn is None
            if conn is None:
                conn = self._local.conn = self._connect(self.read_timeout)
            try:
                conn.request("GET", target, headers=self._headers())
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # A kept-alive connection the server closed meanwhile: retry once, fresh.
                if not fresh and attempt == 0:
                    continue
                raise ApiError(0, "TransportError", f"GET {path}: {exc}") from exc
            if resp.will_close:
                self.close()
            if resp.status // 100 != 2:
                raise ApiError.from_status(resp.status, body)
            try:
                return json.loads(body)
            except ValueError as exc:
                raise ApiError(0, "BadResponse", f"GET {path}: invalid JSON") from exc
        raise AssertionError("unreachable")

    def list_pages(self, path: str, params: dict[str, str], limit: int) -> Iterator[Obj]:
        """Yield list pages following `continue`; an expired token surfaces as ApiError 410."""
        params = dict(params)
        if limit:
            params["limit"] = str(limit)
        while True:
            page = self.get(path, params)
            yield page
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            # Upstream: a continue request carries no resourceVersion of its own.
            params = {k: v for k, v in params.items() if k != "resourceVersion"}
            params["continue"] = token

    def watch(self, path: str, params: dict[str, str], idle_timeout: float) -> Watch:
        params = dict(params, watch="1")
        conn = self._connect(idle_timeout)
        return Watch(conn, self.url(path, params), self._headers(), path)


class Watch:
    """A watch stream; iterate for (type, object). Close it to end the stream early."""

    def __init__(
        self, conn: http.client.HTTPSConnection, target: str, headers: dict[str, str], path: str
    ) -> None:
        self._conn, self._target, self._headers, self._path = conn, target, headers, path
        # Kept apart: http.client may drop conn.sock once the response owns the socket.
        self._sock = conn.sock

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        # shutdown() first: close() alone does not wake a thread blocked reading a TLS socket.
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._conn.close()

    def __iter__(self) -> Iterator[tuple[str, Obj]]:
        import http.client

        try:
            self._conn.request("GET", self._target, headers=self._headers)
            resp = self._conn.getresponse()
            if resp.status != 200:
                raise ApiError.from_status(resp.status, resp.read())
            while True:
                line = resp.readline()
                if not line:
                    return  # server ended the stream (timeoutSeconds) cleanly
                if not line.endswith(b"\n"):
                    # The connection died in the middle of an event: drop the fragment.
                    raise ApiError(0, "TruncatedEvent", f"watch {self._path}: stream cut")
                if not line.strip():
                    continue
                try:
                    ev = json.loads(line)
                    etype, obj = ev["type"], ev["object"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise ApiError(0, "BadEvent", f"watch {self._path}: bad event") from exc
                yield etype, obj
        except (OSError, http.client.HTTPException, ValueError, AttributeError) as exc:
            # ValueError/AttributeError: the stream was closed under us by close().
            raise ApiError(0, "TransportError", f"watch {self._path}: {exc!r}") from exc
        finally:
            self.close()
