# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only Kubernetes API access for edgesite.fleet.site_info, standard library only.

Why not the `kubernetes` Python client: site_info needs four GETs (/version, /readyz, /metrics,
/api/v1/nodes). The official client costs about 43 MiB and a second or so per import, and it
is one more dependency an AWX execution environment and ansible-test's import sanity venv must
carry; http.client + ssl do the same four calls with full TLS verification.

Credentials come from a kubeconfig as k3s writes it (inline *-data fields) or with file paths,
client certificate or bearer token. Inline keys go to a private temporary directory only for
as long as `ssl.load_cert_chain` needs a file, then are deleted.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import tempfile
from typing import Any
from urllib.parse import quote, urlsplit

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    HAS_YAML = False


class KubeError(Exception):
    """The API could not be asked (transport, TLS, credentials) or answered an error."""


def _named(entries: list[dict[str, Any]] | None, name: str, what: str) -> dict[str, Any]:
    for entry in entries or []:
        if entry.get("name") == name:
            return entry.get(what) or {}
    raise KubeError(f"kubeconfig has no {what} named {name!r}")


def load_kubeconfig(path: str, context: str | None = None) -> dict[str, Any]:
    """Return {server, ca_data, ca_file, cert_data, cert_file, key_data, key_file, token}."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise KubeError(f"cannot read kubeconfig {path}: {exc.strerror}") from exc
    try:
        doc = yaml.safe_load(text) if HAS_YAML else json.loads(text)
    except Exception as exc:  # yaml.YAMLError or ValueError: both mean a broken file
        raise KubeError(f"kubeconfig {path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise KubeError(f"kubeconfig {path} is not a mapping")
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeError(f"kubeconfig {path} has no current-context; pass a context")
    ctx = _named(doc.get("contexts"), ctx_name, "context")
    cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster")
    user = _named(doc.get("users"), ctx.get("user", ""), "user") if ctx.get("user") else {}
    if not cluster.get("server"):
        raise KubeError(f"kubeconfig {path}: cluster {ctx.get('cluster')!r} has no server")
    return {
        "server": cluster["server"].rstrip("/"),
        "ca_data": cluster.get("certificate-authority-data"),
        "ca_file": cluster.get("certificate-authority"),
        "insecure": bool(cluster.get("insecure-skip-tls-verify")),
        "cert_data": user.get("client-certificate-data"),
        "cert_file": user.get("client-certificate"),
        "key_data": user.get("client-key-data"),
        "key_file": user.get("client-key"),
        "token": user.get("token"),
    }


def _ssl_context(cfg: dict[str, Any]) -> ssl.SSLContext:
    if cfg["insecure"]:
        # A health report must not trust an unverified endpoint: refuse instead of reporting.
        raise KubeError("kubeconfig sets insecure-skip-tls-verify; give the cluster's CA instead")
    if cfg["ca_data"]:
        ctx = ssl.create_default_context(cadata=base64.b64decode(cfg["ca_data"]).decode())
    else:
        ctx = ssl.create_default_context(cafile=cfg["ca_file"])
    cert_file, key_file = cfg["cert_file"], cfg["key_file"]
    if cfg["cert_data"] and cfg["key_data"]:
        with tempfile.TemporaryDirectory(prefix="edgesite-kube-") as tmp:  # 0700
            cert_file, key_file = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
            for dest, data in ((cert_file, cfg["cert_data"]), (key_file, cfg["key_data"])):
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(base64.b64decode(data))
            ctx.load_cert_chain(cert_file, key_file)
    elif cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


class KubeClient:
    """GETs against one API server; a short connection per request (a handful per run)."""

    def __init__(self, kubeconfig: str, context: str | None = None, timeout: float = 10.0):
        cfg = load_kubeconfig(kubeconfig, context)
        self.server = cfg["server"]
        parts = urlsplit(self.server)
        if parts.scheme != "https":
            raise KubeError(f"API server {self.server} is not https; refusing to send credentials")
        self._host, self._port = parts.hostname or "", parts.port or 443
        self._token = cfg["token"]
        self._timeout = timeout
        try:
            self._ctx = _ssl_context(cfg)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise KubeError(f"cannot load the kubeconfig's TLS material: {exc}") from exc

    def get(self, path: str, accept: str = "application/json") -> tuple[int, bytes]:
        """Return (HTTP status, body); raises KubeError when the server cannot be reached."""
        conn = http.client.HTTPSConnection(
            self._host, self._port, timeout=self._timeout, context=self._ctx
        )
        headers = {"Accept": accept, "User-Agent": "edgesite.fleet.site_info"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except ssl.SSLError as exc:
            raise KubeError(f"TLS error talking to {self.server}: {exc.reason or exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise KubeError(f"cannot reach the API at {self.server}: {exc}") from exc
        finally:
            conn.close()

    def get_json(self, path: str) -> dict[str, Any]:
        status, body = self.get(path)
        try:
            data = json.loads(body) if body else {}
        except ValueError as exc:
            raise KubeError(f"GET {path}: HTTP {status}, not JSON") from exc
        if status != 200:
            message = data.get("message") if isinstance(data, dict) else None
            raise KubeError(f"GET {path}: HTTP {status} {message or ''}".rstrip())
        return data

    def list_all(self, path: str, page: int = 500) -> list[dict[str, Any]]:
        """All items of a list, following continue tokens (a big site must not time out)."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query = f"?limit={page}" + (f"&continue={quote(token, safe='')}" if token else "")
            data = self.get_json(path + query)
            items.extend(data.get("items") or [])
            token = (data.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    def get_text(self, path: str) -> tuple[int, str]:
        """Plain-text endpoints (/readyz?verbose, /metrics): status and text, never raises
        for an HTTP error status (a failing /readyz answers 500 with the reasons)."""
        status, body = self.get(path, accept="text/plain")
        return status, body.decode("utf-8", errors="replace")
