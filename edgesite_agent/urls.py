"""The little URL handling the agent needs: split an API server URL, build and read a query.

Why not urllib.parse: since Python 3.11.4 it imports ipaddress (to check bracketed hosts),
and both stay loaded for the agent's life (~0.2 MiB, docs/agent.md) for four functions.
"""

from __future__ import annotations

# RFC 3986 unreserved characters: never percent-encoded in a query.
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote(text: str) -> str:
    """Percent-encode everything but unreserved characters (UTF-8), for query keys/values."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in text.encode())


def urlencode(params: dict[str, str]) -> str:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in params.items())


def unquote(text: str) -> str:
    """Decode %XX escapes and "+" (a space in form-encoded queries); invalid escapes stay."""
    if "%" not in text and "+" not in text:
        return text
    raw = text.replace("+", " ").encode()
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25 and _hex(raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


def _hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def parse_query(query: str) -> dict[str, list[str]]:
    """name -> values, in order; pairs without "=" get an empty value."""
    out: dict[str, list[str]] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        out.setdefault(unquote(key), []).append(unquote(value))
    return out


def split_target(target: str) -> tuple[str, str]:
    """A request target "/path?query#frag" -> (path, query)."""
    target = target.partition("#")[0]
    path, _, query = target.partition("?")
    return path, query


def split_server(url: str) -> tuple[str, int, str]:
    """ "https://host[:port][/base]" -> (host, port, base path without trailing "/").
    IPv6 hosts come bracketed in URLs ("[::1]:6443") and are returned without brackets."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "https":
        raise ValueError(f"not an https:// URL: {url!r}")
    netloc, slash, path = rest.partition("/")
    netloc = netloc.rpartition("@")[2]
    if netloc.startswith("["):
        host, bracket, tail = netloc[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"bad host in {url!r}")
        port_text = tail[1:]
    else:
        host, _, port_text = netloc.partition(":")
    if not host:
        raise ValueError(f"no host in {url!r}")
    if port_text and not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"bad port in {url!r}")
    port = int(port_text) if port_text else 443
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {url!r}")
    return host, port, (slash + path).split("?")[0].rstrip("/")
