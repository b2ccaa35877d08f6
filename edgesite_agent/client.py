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

from edgesite_agent.urls import split_server, urlencode
from edgesite_agent.wire import Connection, ProtocolError, Response

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from typing import Any

    from edgesite_agent.kubeconfig import Credentials

Obj = dict  # dict[str, Any]: decoded JSON objects


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
        self.host, self.port, self.base_path = split_server(creds.server)
        self.creds = creds
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.user_agent = user_agent
        self._ctx = creds.ssl_context()
        self._local = threading.local()

    # --- connections ---------------------------------------------------------------
    def _connect(self, read_timeout: float) -> Connection:
        conn = Connection(self.host, self.port, self._ctx, self.connect_timeout, read_timeout)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise ApiError(0, "ConnectFailed", f"connect {self.host}:{self.port}: {exc}") from exc
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
        target = self.url(path, params)
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            fresh = conn is None
            if conn is None:
                conn = self._local.conn = self._connect(self.read_timeout)
            try:
                resp = conn.request(target, self._headers())
                body = resp.read()
            except (OSError, ProtocolError) as exc:
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

    def list_pages(self, path: str, params: dict[str, str], limit: int) -> Iterator[ListPage]:
        """Yield list pages following `continue`; an expired token surfaces as ApiError 410.

        Each page is streamed: iterate it for its items (decoded one at a time), then read
        its `metadata`. A page must be consumed before the next one is requested. Why: a
        real API server answers resourceVersion=0 lists from its watch cache and may ignore
        `limit`, so one answer can hold every object; decoding it whole would keep the
        body and all objects in memory at once (tens of MiB, never fully returned to the
        OS by the allocator)."""
        params = dict(params)
        if limit:
            params["limit"] = str(limit)
        while True:
            page = self._open_list(path, params)
            try:
                yield page
                page.drain()
            except BaseException:
                self.close()  # a half-read body leaves the connection unusable
                raise
            if page.will_close:
                self.close()
            token = page.metadata.get("continue")
            if not token:
                return
            # Upstream: a continue request carries no resourceVersion of its own.
            params = {k: v for k, v in params.items() if k != "resourceVersion"}
            params["continue"] = token

    def _open_list(self, path: str, params: dict[str, str]) -> ListPage:
        target = self.url(path, params)
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            fresh = conn is None
            if conn is None:
                conn = self._local.conn = self._connect(self.read_timeout)
            try:
                resp = conn.request(target, self._headers())
                if resp.status // 100 != 2:
                    body = resp.read()
                    if resp.will_close:
                        self.close()
                    raise ApiError.from_status(resp.status, body)
            except (OSError, ProtocolError) as exc:
                self.close()
                if not fresh and attempt == 0:
                    continue
                raise ApiError(0, "TransportError", f"GET {path}: {exc}") from exc
            return ListPage(resp, path)
        raise AssertionError("unreachable")

    def watch(self, path: str, params: dict[str, str], idle_timeout: float) -> Watch:
        params = dict(params, watch="1")
        conn = self._connect(idle_timeout)
        return Watch(conn, self.url(path, params), self._headers(), path)


class Watch:
    """A watch stream; iterate for (type, object). Close it to end the stream early."""

    def __init__(self, conn: Connection, target: str, headers: dict[str, str], path: str) -> None:
        self._conn, self._target, self._headers, self._path = conn, target, headers, path
        # Kept apart: conn.close() drops conn.sock, and close() may run from another thread.
        self._sock = conn.sock
        self.opened = False  # the server answered 200: the stream is established

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
        try:
            resp = self._conn.request(self._target, self._headers)
            if resp.status != 200:
                raise ApiError.from_status(resp.status, resp.read())
            self.opened = True
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
        except (OSError, ProtocolError, ValueError, AttributeError) as exc:
            # ValueError/AttributeError: the stream was closed under us by close().
            raise ApiError(0, "TransportError", f"watch {self._path}: {exc!r}") from exc
        finally:
            self.close()


_WS = frozenset(" \t\n\r")


class ListPage:
    """One List answer, decoded incrementally: `for obj in page` yields the `items` one by
    one while the body is read in chunks; the other top-level fields (`metadata`, `kind`,
    ...) land in `fields`, wherever they are in the document.

    Only the current chunk and the current item exist as Python objects. JSON values are
    self-delimiting except numbers, so a value that ends exactly at the end of the buffer
    is decoded again once more text (or the end of the body) is there."""

    def __init__(self, resp: Response, path: str, chunk: int = 65536) -> None:
        import codecs

        self._resp, self._path, self._chunk = resp, path, chunk
        self._text = codecs.getincrementaldecoder("utf-8")()
        self._decode = json.JSONDecoder().raw_decode
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._started = False
        self.fields: Obj = {}
        self.will_close = bool(resp.will_close)

    @property
    def metadata(self) -> Obj:
        meta = self.fields.get("metadata")
        return meta if isinstance(meta, dict) else {}

    def drain(self) -> None:
        """Consume what the caller did not (e.g. a filtered-out remainder)."""
        for _ in self:
            pass

    def __iter__(self) -> Iterator[Obj]:
        if self._started:
            return
        self._started = True
        try:
            yield from self._items()
        except (OSError, ProtocolError) as exc:
            raise ApiError(0, "TransportError", f"GET {self._path}: {exc!r}") from exc
        except ValueError as exc:  # UnicodeDecodeError, or JSON that is not a List
            raise ApiError(0, "BadResponse", f"GET {self._path}: {exc}") from exc

    def _items(self) -> Iterator[Obj]:
        self._expect("{")
        if self._peek() == "}":
            self._pos += 1
            return
        while True:
            key = self._value()
            if not isinstance(key, str):
                raise ValueError("object key is not a string")
            self._expect(":")
            if key == "items" and self._peek() == "[":
                self._pos += 1
                if self._peek() == "]":
                    self._pos += 1
                else:
                    while True:
                        obj = self._value()
                        if isinstance(obj, dict):
                            yield obj
                        if self._peek() == "]":
                            self._pos += 1
                            break
                        self._expect(",")
            else:
                self.fields[key] = self._value()
            if self._peek() == "}":
                self._pos += 1
                return
            self._expect(",")

    def _fill(self, want: int) -> bool:
        """Append at least one more chunk of text; False at the end of the body."""
        while not self._eof:
            data = self._resp.read(want)
            if not data:
                self._eof = True
                text = self._text.decode(b"", final=True)
            else:
                text = self._text.decode(data)
            self._buf = self._buf[self._pos :] + text
            self._pos = 0
            if text:
                return True
        return False

    def _peek(self) -> str:
        buf, pos = self._buf, self._pos
        while True:
            while pos < len(buf) and buf[pos] in _WS:
                pos += 1
            self._pos = pos
            if pos < len(buf):
                return buf[pos]
            if not self._fill(self._chunk):
                raise ValueError("truncated list response")
            buf, pos = self._buf, self._pos

    def _expect(self, char: str) -> None:
        if self._peek() != char:
            raise ValueError(f"expected {char!r} at offset {self._pos} of the buffer")
        self._pos += 1

    def _value(self) -> Any:
        self._peek()
        want = self._chunk
        while True:
            try:
                value, end = self._decode(self._buf, self._pos)
            except json.JSONDecodeError:
                # Incomplete (or invalid: then the body ends and we fail). Read in growing
                # steps so a very large object is not re-scanned once per small chunk.
                if not self._fill(want):
                    raise
                want = max(want, len(self._buf) - self._pos)
                continue
            if end == len(self._buf) and self._fill(want):
                continue  # a number may continue in the next chunk
            self._pos = end
            return value
