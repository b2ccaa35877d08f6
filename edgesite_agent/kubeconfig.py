"""Credentials for the Kubernetes API: kubeconfig files and in-cluster service accounts.

k3s writes its node kubeconfigs as YAML (`/var/lib/rancher/k3s/agent/kubelet.kubeconfig`,
`kubeproxy.kubeconfig`), and the runtime may only use the standard library, so this module
reads the small YAML subset kubeconfigs use (block mappings and sequences, plain and
quoted scalars, `{}`/`[]`) as well as JSON.
"""

from __future__ import annotations

import base64
import json
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from typing import Any

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubeconfigError(ValueError):
    pass


class Credentials:
    """Where the API is and how to prove who we are. (A plain class, not a dataclass: the
    dataclasses module imports inspect/ast, about 1 MiB of the agent's footprint.)"""

    def __init__(
        self,
        server: str,
        ca_file: str | None = None,
        ca_data: bytes | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        cert_data: bytes | None = None,
        key_data: bytes | None = None,
        token: str | None = None,
        token_file: str | None = None,
        insecure: bool = False,
    ) -> None:
        self.server, self.ca_file, self.ca_data = server, ca_file, ca_data
        self.cert_file, self.key_file = cert_file, key_file
        self.cert_data, self.key_data = cert_data, key_data
        self.token, self.token_file, self.insecure = token, token_file, insecure

    def __repr__(self) -> str:  # never print key material or tokens
        return f"Credentials(server={self.server!r}, cert_file={self.cert_file!r})"

    def bearer(self) -> str | None:
        if self.token_file:  # re-read: projected tokens rotate
            with open(self.token_file, encoding="utf-8") as f:
                return f.read().strip()
        return self.token

    def ssl_context(self) -> Any:
        import ssl

        # Same defaults as ssl.create_default_context (hostname check, CERT_REQUIRED), but
        # the system bundle is loaded only when the kubeconfig names no CA: a cluster CA is
        # the only trust anchor kubectl uses too, and parsing ~140 system certificates per
        # context costs about 1 MiB of the agent's footprint for nothing.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_file or self.ca_data:
            ctx.load_verify_locations(
                cafile=self.ca_file, cadata=self.ca_data.decode() if self.ca_data else None
            )
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        elif self.cert_data:
            _load_chain_from_memory(ctx, self.cert_data, self.key_data or b"")
        return ctx


def _load_chain_from_memory(ctx: Any, cert: bytes, key: bytes) -> None:
    import tempfile  # only for embedded key data: tempfile pulls in shutil, bz2, lzma

    # ssl can only load a key from a file: use a private directory and delete at once.
    with tempfile.TemporaryDirectory(prefix="edgesite-") as d:
        path = os.path.join(d, "client.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert + b"\n" + key)
        ctx.load_cert_chain(str(path))


# --- YAML subset ---------------------------------------------------------------------
def _scalar(text: str) -> Any:
    t = text.strip()
    if not t:
        return None
    if t[0] == '"':
        return json.loads(t)
    if t[0] == "'":
        return t[1:-1].replace("''", "'")
    if t == "{}":
        return {}
    if t == "[]":
        return []
    if t in ("true", "false"):
        return t == "true"
    if t in ("null", "~"):
        return None
    return t


def _strip_comment(line: str) -> str:
    if "#" not in line:
        return line
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def parse_yaml(text: str) -> Any:
    """Parse the block-style YAML subset used by kubeconfig files."""
    lines = []
    for raw in text.splitlines():
        line = _strip_comment(raw).rstrip()
        if line.strip() and line.strip() not in ("---", "..."):
            lines.append((len(line) - len(line.lstrip(" ")), line.strip()))
    value, pos = _block(lines, 0, lines[0][0] if lines else 0)
    if pos != len(lines):
        raise KubeconfigError(f"unexpected indentation near {lines[pos][1]!r}")
    return value


def _split_key(item: str) -> tuple[str, str] | None:
    if item.startswith(('"', "'")):
        end = item.index(item[0], 1)
        key, rest = item[1:end], item[end + 1 :]
        return (key, rest[1:].strip()) if rest.startswith(":") else None
    for sep in (": ", ":\t"):
        if sep in item:
            k, _, v = item.partition(sep)
            return k.strip(), v.strip()
    return (item[:-1].strip(), "") if item.endswith(":") else None


def _block(lines: list[tuple[int, str]], pos: int, indent: int) -> tuple[Any, int]:
    if pos >= len(lines):
        return None, pos
    if lines[pos][1].startswith("- ") or lines[pos][1] == "-":
        seq: list[Any] = []
        while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("-"):
            rest = lines[pos][1][1:].strip()
            if not rest:
                if pos + 1 < len(lines) and lines[pos + 1][0] > indent:
                    item, pos = _block(lines, pos + 1, lines[pos + 1][0])
                else:
                    item, pos = None, pos + 1
            elif _split_key(rest) is not None:
                # "- key: value" opens a mapping whose other keys sit two columns right.
                sub = [(indent + 2, rest), *lines[pos + 1 :]]
                item, used = _block(sub, 0, indent + 2)
                pos += used
            else:
                item, pos = _scalar(rest), pos + 1
            seq.append(item)
        return seq, pos
    mapping: dict[str, Any] = {}
    while pos < len(lines) and lines[pos][0] == indent:
        kv = _split_key(lines[pos][1])
        if kv is None:
            raise KubeconfigError(f"expected 'key: value', got {lines[pos][1]!r}")
        key, rest = kv
        pos += 1
        if rest:
            mapping[key] = _scalar(rest)
        elif pos < len(lines) and (
            lines[pos][0] > indent or (lines[pos][0] == indent and lines[pos][1][0] == "-")
        ):
            mapping[key], pos = _block(lines, pos, lines[pos][0])
        else:
            mapping[key] = None
    return mapping, pos


# --- kubeconfig ----------------------------------------------------------------------
def _named(items: Any, name: str, what: str) -> dict[str, Any]:
    for entry in items or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry.get(what) or {}
    raise KubeconfigError(f"{what} {name!r} not found")


def _resolve(base: str, p: str | None) -> str | None:
    if not p:
        return None
    return p if os.path.isabs(p) else os.path.join(base, p)


def _b64(value: Any) -> bytes | None:
    return base64.b64decode(value) if value else None


def load_kubeconfig(path: str | os.PathLike[str], context: str | None = None) -> Credentials:
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise KubeconfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(text) if text.lstrip().startswith("{") else parse_yaml(text)
    except (ValueError, IndexError) as exc:
        raise KubeconfigError(f"{path} is not a valid kubeconfig: {exc}") from exc
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{path} is not a kubeconfig mapping")
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeconfigError(f"{path} has no current-context")
    ctx = _named(doc.get("contexts"), ctx_name, "context")
    cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster")
    user = _named(doc.get("users"), ctx.get("user", ""), "user") if ctx.get("user") else {}
    server = cluster.get("server")
    if not server or not str(server).startswith("https://"):
        raise KubeconfigError(f"{path}: cluster server must be an https:// URL, got {server!r}")
    base = os.path.dirname(path)
    return Credentials(
        server=str(server).rstrip("/"),
        ca_file=_resolve(base, cluster.get("certificate-authority")),
        ca_data=_b64(cluster.get("certificate-authority-data")),
        cert_file=_resolve(base, user.get("client-certificate")),
        key_file=_resolve(base, user.get("client-key")),
        cert_data=_b64(user.get("client-certificate-data")),
        key_data=_b64(user.get("client-key-data")),
        token=user.get("token"),
        token_file=_resolve(base, user.get("tokenFile")),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


def in_cluster(
    env: dict[str, str] | None = None, sa_dir: str | os.PathLike[str] = SA_DIR
) -> Credentials:
    env = dict(os.environ) if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeconfigError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are unset")
    if ":" in host:
        host = f"[{host}]"
    return Credentials(
        server=f"https://{host}:{port}",
        ca_file=os.path.join(sa_dir, "ca.crt"),
        token_file=os.path.join(sa_dir, "token"),
    )
