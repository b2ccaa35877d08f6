"""A minimal HTTP/1.1 client connection: GET, Content-Length and chunked bodies, keep-alive.

Why not http.client: it imports the `email` package (parser, feedparser, charset, utils,
calendar, datetime, quopri ...) to parse headers, about 1.1 MiB resident for the life of
the agent (docs/agent.md). The agent only ever sends GETs to an API server and reads JSON
or line-delimited watch streams, which needs far less.
"""

from __future__ import annotations

import socket

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    import ssl
    from io import BufferedReader

MAX_LINE = 65536  # status and header lines, chunk-size lines
MAX_HEADERS = 100


class ProtocolError(Exception):
    """The peer did not speak HTTP/1.1 as expected (or the body ended early)."""


class Connection:
    """One TCP (or TLS when `context` is given) connection; one request at a time."""

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self.host, self.port, self.context = host, port, context
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.sock: socket.socket | None = None
        self._rfile: BufferedReader | None = None
        self._response: Response | None = None
        default = 443 if context is not None else 80
        name = f"[{host}]" if ":" in host else host
        self._host_header = name if port == default else f"{name}:{port}"

    def connect(self) -> None:
        # An ASCII name goes to getaddrinfo and ssl as bytes: a str is passed through the
        # `idna` codec there, which imports stringprep and unicodedata's tables (~0.2 MiB
        # resident for the agent's life, docs/agent.md). Other names keep that encoding.
        host: str | bytes = self.host.encode() if self.host.isascii() else self.host
        sock = socket.create_connection((host, self.port), self.connect_timeout)
        try:
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=host)
            sock.settimeout(self.read_timeout)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._rfile = sock.makefile("rb")

    def close(self) -> None:
        sock, rfile = self.sock, self._rfile
        self.sock = self._rfile = None
        self._response = None
        if rfile is not None:
            rfile.close()
        if sock is not None:
            sock.close()

    def request(self, target: str, headers: dict[str, str]) -> Response:
        """Send a GET and read the status line and headers; the body is read from the result."""
        if self.sock is None:
            self.connect()
        prev = self._response
        if prev is not None and not prev.complete:
            raise ProtocolError("previous response body not read")
        lines = [f"GET {target} HTTP/1.1", f"Host: {self._host_header}",
                 "Accept-Encoding: identity"]  # fmt: skip
        lines += [f"{k}: {v}" for k, v in headers.items()]
        assert self.sock is not None and self._rfile is not None
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        resp = self._response = Response(self._rfile)
        return resp


class Response:
    """Status, headers (lower-case names) and the body, read with `read` or `readline`."""

    def __init__(self, rfile: BufferedReader) -> None:
        self._rfile = rfile
        status = self._line()
        parts = status.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {status[:80]!r}")
        self.status = int(parts[1])
        self.headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {line[:80]!r}")
            self.headers[name.strip().lower()] = value.strip()
        else:
            raise ProtocolError("too many headers")
        h = self.headers
        self.chunked = "chunked" in h.get("transfer-encoding", "").lower()
        length = h.get("content-length")
        self._left: int | None = None  # body bytes (or bytes of the current chunk) left
        if not self.chunked and length is not None:
            if not length.isdigit():
                raise ProtocolError(f"bad Content-Length {length!r}")
            self._left = int(length)
        self._eof = self._left == 0 or self.status in (204, 304)
        connection = h.get("connection", "").lower()
        # No length and not chunked: the body ends when the server closes the connection.
        self.will_close = (
            "close" in connection
            or parts[0] == b"HTTP/1.0"
            or (not self.chunked and length is None)
        )
        self._pending = b""  # readline() leftovers

    @property
    def complete(self) -> bool:
        return self._eof and not self._pending

    def _line(self) -> bytes:
        line = self._rfile.readline(MAX_LINE + 1)
        if not line:
            raise ProtocolError("connection closed (response incomplete)")
        if len(line) > MAX_LINE:
            raise ProtocolError("line too long")
        return line

    def _raw(self, n: int) -> bytes:
        """At most n bytes of the body as sent (chunk framing removed); b"" at its end."""
        if self._eof:
            return b""
        rfile = self._rfile
        if self.chunked:
            if not self._left:
                size = self._line().split(b";", 1)[0].strip()
                try:
                    self._left = int(size, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {size[:20]!r}") from None
                if self._left == 0:
                    while self._line() not in (b"\r\n", b"\n"):  # trailers
                        pass
                    self._eof = True
                    return b""
            assert self._left is not None
            data = rfile.read(min(n, self._left))
            if not data:
                raise ProtocolError("body ended inside a chunk")
            self._left -= len(data)
            if self._left == 0 and rfile.readline(3) not in (b"\r\n", b"\n"):
                raise ProtocolError("chunk not followed by CRLF")
            return data
        if self._left is None:  # until the server closes
            data = rfile.read1(n)
            if not data:
                self._eof = True
            return data
        data = rfile.read1(min(n, self._left))
        if not data:
            raise ProtocolError("body shorter than its Content-Length")
        self._left -= len(data)
        if self._left == 0:
            self._eof = True
        return data

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes of the body (all of it with n < 0); b"" once it has been read."""
        if self._pending:
            if n < 0 or n >= len(self._pending):
                out, self._pending = self._pending, b""
                return out if n >= 0 else out + self.read()
            out, self._pending = self._pending[:n], self._pending[n:]
            return out
        if n >= 0:
            return self._raw(n) if n else b""
        parts = []
        while data := self._raw(65536):
            parts.append(data)
        return b"".join(parts)

    def readline(self) -> bytes:
        """The next line of the body, with its b"\\n"; a last line without one when the
        body ends in the middle of it; b"" at the end."""
        buf = self._pending
        while True:
            i = buf.find(b"\n")
            if i >= 0:
                self._pending = buf[i + 1 :]
                return buf[: i + 1]
            data = self._raw(65536)
            if not data:
                self._pending = b""
                return buf
            buf += data
