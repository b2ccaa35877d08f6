"""Minimal test-side client for etcd's v3 JSON gateway (keep-alive HTTPS, client cert).

Independent of the collection's module_utils on purpose: the tests check the modules against
etcd itself, not against a second use of the same code.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlsplit


class GatewayError(Exception):
    pass


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


class Gateway:
    """One persistent connection per endpoint; use one instance per thread."""

    def __init__(self, ca: str, cert: str | None, key: str | None, timeout: float = 5.0) -> None:
        self._ctx = ssl.create_default_context(cafile=ca)
        if cert:
            self._ctx.load_cert_chain(cert, key)
        self._timeout = timeout
        self._conns: dict[str, http.client.HTTPSConnection] = {}

    def _conn(self, endpoint: str) -> http.client.HTTPSConnection:
        conn = self._conns.get(endpoint)
        if conn is None:
            parts = urlsplit(endpoint)
            conn = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=self._timeout, context=self._ctx
            )
            self._conns[endpoint] = conn
        return conn

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def raw(
        self, endpoint: str, method: str, path: str, body: str | None = None
    ) -> tuple[int, bytes]:
        conn = self._conn(endpoint)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self._conns.pop(endpoint, None)
            raise GatewayError(f"{endpoint}{path}: {exc}") from exc

    def post(self, endpoint: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, raw = self.raw(endpoint, "POST", path, json.dumps(body))
        data = json.loads(raw) if raw.strip() else {}
        if status != 200 or "error" in data:
            raise GatewayError(f"{endpoint}{path}: HTTP {status} {data}")
        return data

    def put(self, endpoint: str, key: str, value: str) -> int:
        """Returns the revision etcd acknowledged the write at."""
        data = self.post(endpoint, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
        return int(data["header"]["revision"])

    def put_many(self, endpoint: str, items: dict[str, str]) -> int:
        """Writes in transactions of 100 puts (etcd's default limit is 128 ops per txn)."""
        revision = 0
        pairs = list(items.items())
        for start in range(0, len(pairs), 100):
            ops = [
                {"request_put": {"key": _b64(k), "value": _b64(v)}}
                for k, v in pairs[start : start + 100]
            ]
            data = self.post(endpoint, "/v3/kv/txn", {"success": ops})
            revision = int(data["header"]["revision"])
        return revision

    def delete_prefix(self, endpoint: str, prefix: str) -> int:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        data = self.post(
            endpoint, "/v3/kv/deleterange", {"key": _b64(prefix), "range_end": _b64(end)}
        )
        return int(data.get("deleted", 0))

    def get_prefix(
        self, endpoint: str, prefix: str, serializable: bool = False
    ) -> tuple[int, dict[str, str]]:
        """(revision, {key: value}); serializable reads answer from the member's own copy."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        data = self.post(
            endpoint,
            "/v3/kv/range",
            {"key": _b64(prefix), "range_end": _b64(end), "serializable": serializable},
        )
        kvs = {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in data.get("kvs", [])}
        return int(data["header"]["revision"]), kvs

    def healthy(self, endpoint: str) -> bool:
        try:
            status, raw = self.raw(endpoint, "GET", "/health")
        except GatewayError:
            return False
        return status == 200 and json.loads(raw).get("health") == "true"

    def status(self, endpoint: str) -> dict[str, Any]:
        return self.post(endpoint, "/v3/maintenance/status", {})
