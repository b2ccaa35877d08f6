# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared client for the edgesite.fleet etcd_* modules.

Speaks etcd's v3 JSON gateway (grpc-gateway, served on every client URL under /v3/ since etcd 3.4)
over HTTPS with a client certificate, using only the Python standard library. Why the gateway and
not etcdctl: the modules then work on any host that has python3 (controller, master, witness)
without an etcdctl binary of the right version, and k3s's embedded etcd ships no etcdctl at all,
while its client port serves the same gateway. Offline snapshot restore is the one exception: it
must rewrite a data directory, which only etcdutl (3.5+) / etcdctl (3.4) can do.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import ssl
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

# Argument spec shared by all etcd_* modules (merge into each module's own spec).
ETCD_CONNECTION_ARGS: dict[str, dict[str, Any]] = {
    "endpoints": {"type": "list", "elements": "str", "required": True},
    "ca_cert": {"type": "path"},
    "client_cert": {"type": "path"},
    # A path to the key, not the key itself, so it need not be hidden from logs.
    "client_key": {"type": "path", "no_log": False},
    "timeout": {"type": "float", "default": 10.0},
}

# gRPC status code etcd's gateway returns when a member cannot serve right now (no leader,
# leader changed, stopping): another endpoint may well succeed.
GRPC_UNAVAILABLE = 14


class EtcdError(Exception):
    """An etcd request failed; names the endpoint and the cause."""

    def __init__(self, endpoint: str, message: str, code: int | None = None) -> None:
        super().__init__(f"{endpoint}: {message}")
        self.endpoint = endpoint
        self.message = message
        self.code = code


def member_id_hex(raw: str | int) -> str:
    """etcd prints member IDs as 16 hex digits; the gateway sends them as decimal strings."""
    return f"{int(raw):016x}"


def member_id_dec(hex_id: str) -> str:
    """Back to the decimal string form the gateway expects for uint64 fields."""
    return str(int(hex_id, 16))


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


class EtcdClient:
    """Small etcd v3 gateway client: one short HTTPS connection per request."""

    def __init__(
        self,
        endpoints: list[str],
        ca_cert: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is required")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self._ca_cert = ca_cert
        self._client_cert = client_cert
        self._client_key = client_key
        self._ctx: ssl.SSLContext | None = None

    @classmethod
    def from_module_params(cls, params: dict[str, Any]) -> EtcdClient:
        return cls(
            params["endpoints"],
            ca_cert=params.get("ca_cert"),
            client_cert=params.get("client_cert"),
            client_key=params.get("client_key"),
            timeout=params.get("timeout") or 10.0,
        )

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ctx is None:
            # Server certificates are always verified: against ca_cert when given, else the
            # system trust store. There is deliberately no switch to turn this off.
            ctx = ssl.create_default_context(cafile=self._ca_cert)
            if self._client_cert:
                ctx.load_cert_chain(self._client_cert, self._client_key)
            self._ctx = ctx
        return self._ctx

    def _connection(self, endpoint: str, timeout: float | None) -> http.client.HTTPConnection:
        parts = urlsplit(endpoint)
        if parts.scheme == "https":
            return http.client.HTTPSConnection(
                parts.hostname or "",
                parts.port or 2379,
                timeout=timeout or self.timeout,
                context=self._ssl_context(),
            )
        if parts.scheme == "http":
            return http.client.HTTPConnection(
                parts.hostname or "", parts.port or 2379, timeout=timeout or self.timeout
            )
        raise EtcdError(endpoint, f"unsupported URL scheme {parts.scheme!r} (use https://)")

    def request(
        self,
        endpoint: str,
        path: str,
        body: dict[str, Any] | None = None,
        method: str = "POST",
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One request to one endpoint; raises EtcdError for transport and API errors."""
        conn = self._connection(endpoint, timeout)
        try:
            payload = json.dumps(body or {}) if method == "POST" else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except ssl.SSLError as exc:
            raise EtcdError(endpoint, f"TLS error ({exc.reason or exc})") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise EtcdError(endpoint, f"cannot reach etcd ({exc})") from exc
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            text = raw[:200].decode(errors="replace")
            raise EtcdError(endpoint, f"HTTP {resp.status} non-JSON answer: {text}") from exc
        if resp.status != 200 or (isinstance(data, dict) and "error" in data and "code" in data):
            message = data.get("message") or data.get("error") or f"HTTP {resp.status}"
            raise EtcdError(endpoint, str(message), data.get("code"))
        return data

    def request_any(
        self, path: str, body: dict[str, Any] | None = None, timeout: float | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Cluster-wide request: first endpoint that answers. API errors other than
        'unavailable' are final, since every member would give the same answer."""
        errors: list[str] = []
        for endpoint in self.endpoints:
            try:
                return endpoint, self.request(endpoint, path, body, timeout=timeout)
            except EtcdError as exc:
                errors.append(str(exc))
                if exc.code is not None and exc.code != GRPC_UNAVAILABLE:
                    raise
        raise EtcdError(",".join(self.endpoints), "no endpoint answered: " + "; ".join(errors))

    # ---- read helpers -------------------------------------------------------------------------

    def health(self, endpoint: str, timeout: float | None = None) -> tuple[bool, str]:
        """etcd's /health: false when the member has no leader, an alarm is raised, or a
        quorum read fails."""
        try:
            data = self.request(endpoint, "/health", method="GET", timeout=timeout)
        except EtcdError as exc:
            return False, exc.message
        healthy = str(data.get("health")) == "true"
        return healthy, "" if healthy else str(data.get("reason") or "reported unhealthy")

    def status(self, endpoint: str) -> dict[str, Any]:
        data = self.request(endpoint, "/v3/maintenance/status")
        header = data.get("header", {})
        return {
            "endpoint": endpoint,
            "member_id": member_id_hex(header.get("member_id", 0)),
            "cluster_id": member_id_hex(header.get("cluster_id", 0)),
            "leader_id": member_id_hex(data.get("leader", 0)),
            "version": data.get("version", ""),
            "db_size": int(data.get("dbSize", 0)),
            "db_size_in_use": int(data.get("dbSizeInUse", 0)),
            "revision": int(header.get("revision", 0)),
            "raft_term": int(data.get("raftTerm", 0)),
            "raft_index": int(data.get("raftIndex", 0)),
            "raft_applied_index": int(data.get("raftAppliedIndex", 0)),
            "is_learner": bool(data.get("isLearner", False)),
            "errors": list(data.get("errors", [])),
        }

    def member_list(self) -> list[dict[str, Any]]:
        _status, data = self.request_any("/v3/cluster/member/list")
        return [normalize_member(m) for m in data.get("members", [])]

    def alarms(self) -> list[dict[str, str]]:
        _status, data = self.request_any("/v3/maintenance/alarm", {"action": "GET"})
        return [
            {"member_id": member_id_hex(a.get("memberID", 0)), "alarm": a.get("alarm", "NONE")}
            for a in data.get("alarms", [])
            if a.get("alarm", "NONE") != "NONE"
        ]

    def wait_healthy(self, endpoint: str, wait_timeout: float) -> tuple[bool, str]:
        """Poll /health until healthy or wait_timeout passes; returns the last answer."""
        deadline = time.monotonic() + wait_timeout
        while True:
            healthy, reason = self.health(endpoint, timeout=min(self.timeout, 5.0))
            if healthy or time.monotonic() >= deadline:
                return healthy, reason
            time.sleep(0.5)

    # ---- snapshot stream ----------------------------------------------------------------------

    def snapshot_chunks(self, endpoint: str) -> Iterator[bytes]:
        """Stream /v3/maintenance/snapshot: newline-separated JSON messages carrying base64
        'blob' pieces of the bbolt file followed by its sha256 (as etcdctl snapshot save
        receives it, so the result is what etcdctl/etcdutl snapshot restore expects)."""
        conn = self._connection(endpoint, max(self.timeout, 60.0))
        try:
            conn.request(
                "POST",
                "/v3/maintenance/snapshot",
                body="{}",
                headers={"Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            if resp.status != 200:
                raw = resp.read()
                raise EtcdError(endpoint, f"snapshot refused: HTTP {resp.status} {raw[:200]!r}")
            while True:
                line = resp.readline()
                if not line:
                    break
                if not line.strip():
                    continue
                msg = json.loads(line)
                if "error" in msg:
                    err = msg["error"]
                    text = err.get("message", err) if isinstance(err, dict) else err
                    raise EtcdError(endpoint, f"snapshot stream failed: {text}")
                blob = msg.get("result", {}).get("blob")
                if blob:
                    yield base64.b64decode(blob)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise EtcdError(endpoint, f"snapshot stream broken ({exc})") from exc
        finally:
            conn.close()


def normalize_member(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": member_id_hex(raw.get("ID", 0)),
        "name": raw.get("name", ""),
        "peer_urls": list(raw.get("peerURLs", [])),
        "client_urls": list(raw.get("clientURLs", [])),
        "is_learner": bool(raw.get("isLearner", False)),
        # A member added through the API has no name until its etcd process first starts.
        "started": bool(raw.get("name")),
    }


def verify_snapshot_hash(path: str) -> bool:
    """An etcd snapshot file ends with the sha256 of everything before it."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        if size <= 32:
            return False
        fh.seek(0)
        remaining = size - 32
        while remaining:
            chunk = fh.read(min(remaining, 1 << 20))
            if not chunk:
                return False
            digest.update(chunk)
            remaining -= len(chunk)
        return fh.read(32) == digest.digest()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
