"""The agent's configuration file (JSON; Ansible writes it with `to_nice_json`).

Every problem is reported as `ConfigError("<key>: <problem>")` so an operator knows which
line to fix. Unknown keys are errors too: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from typing import Any


class ConfigError(ValueError):
    pass


class AgentConfig:
    """The parsed file. A plain class rather than a dataclass: the dataclasses module
    imports inspect/ast (about 1 MiB resident), which an agent targeting 24 MiB can't spare."""

    def __init__(
        self,
        node_name: str,
        store_path: str,
        *,
        kubeconfig: str | None = None,  # the node's kubelet identity (Node authorizer)
        proxy_kubeconfig: str | None = None,  # kube-proxy identity: Services, EndpointSlices
        in_cluster: bool = False,
        listen_address: str = "127.0.0.1",
        listen_port: int = 10260,
        listen_unix: str = "",  # serve the local API on this unix socket instead of TCP
        listen_token_file: str = "",  # bearer token (0600 file) the TCP listener requires
        listen_tls_cert_file: str = "",  # serve HTTPS on TCP with this certificate (PEM)
        listen_tls_key_file: str = "",  # its key (PEM; may be in the certificate file)
        cache_secrets: bool = False,
        watch_list: bool = False,
        page_size: int = 500,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        watch_idle_timeout_s: float = 90.0,
        refs_refresh_s: float = 60.0,
        store_cache_kib: int = 128,
        log_level: str = "INFO",
        proxy: dict[str, Any] | None = None,
    ) -> None:
        self.node_name, self.store_path = node_name, store_path
        self.kubeconfig, self.proxy_kubeconfig = kubeconfig, proxy_kubeconfig
        self.in_cluster = in_cluster
        self.listen_address, self.listen_port = listen_address, listen_port
        self.listen_unix, self.listen_token_file = listen_unix, listen_token_file
        self.listen_tls_cert_file, self.listen_tls_key_file = (
            listen_tls_cert_file, listen_tls_key_file)  # fmt: skip
        self.cache_secrets, self.watch_list, self.page_size = cache_secrets, watch_list, page_size
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self.watch_idle_timeout_s, self.refs_refresh_s = watch_idle_timeout_s, refs_refresh_s
        self.store_cache_kib, self.log_level = store_cache_kib, log_level
        self.proxy: dict[str, Any] = dict(proxy or {})

    @property
    def proxy_enabled(self) -> bool:
        # A "proxy" object means "run the proxy" unless it says enabled: false (the proxy's own
        # default); no "proxy" object at all means no proxy.
        return bool(self.proxy) and bool(self.proxy.get("enabled", True))


_TYPES: dict[str, tuple[type, ...]] = {
    "node_name": (str,),
    "store_path": (str,),
    "kubeconfig": (str,),
    "proxy_kubeconfig": (str,),
    "in_cluster": (bool,),
    "listen_address": (str,),
    "listen_port": (int,),
    "listen_unix": (str,),
    "listen_token_file": (str,),
    "listen_tls_cert_file": (str,),
    "listen_tls_key_file": (str,),
    "cache_secrets": (bool,),
    "watch_list": (bool,),
    "page_size": (int,),
    "connect_timeout_s": (int, float),
    "read_timeout_s": (int, float),
    "watch_idle_timeout_s": (int, float),
    "refs_refresh_s": (int, float),
    "store_cache_kib": (int,),
    "log_level": (str,),
    "proxy": (dict,),
}
_REQUIRED = ("node_name", "store_path")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _type_name(types: tuple[type, ...]) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string",
             dict: "an object"}  # fmt: skip
    return " or ".join(names[t] for t in types if not (t is int and float in types))


def parse_config(data: Any) -> AgentConfig:
    if not isinstance(data, dict):
        raise ConfigError("<top level>: must be a JSON object")
    for key in data:
        if key not in _TYPES:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(sorted(_TYPES))})")
    for key in _REQUIRED:
        if key not in data:
            raise ConfigError(f"{key}: required key is missing")
    for key, value in data.items():
        types = _TYPES[key]
        # bool is an int in Python; a JSON true must not pass as a port number.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ConfigError(
                f"{key}: must be {_type_name(types)}, got {type(value).__name__} {value!r}"
            )
    cfg = AgentConfig(**data)
    if not cfg.node_name.strip() or len(cfg.node_name) > 253:
        raise ConfigError("node_name: must be a non-empty node name")
    if not cfg.store_path.strip():
        raise ConfigError("store_path: must not be empty")
    if not cfg.in_cluster and not cfg.kubeconfig:
        raise ConfigError("kubeconfig: required unless in_cluster is true")
    for key in ("kubeconfig", "proxy_kubeconfig"):
        path = getattr(cfg, key)
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{key}: file {path} does not exist")
    loopback = _loopback(cfg.listen_address)
    if loopback is None:
        raise ConfigError(f"listen_address: not an IP address: {cfg.listen_address!r}")
    if not loopback:
        # The local API serves cached objects (Secrets too, if cached) without auth.
        raise ConfigError(f"listen_address: must be a loopback address, got {cfg.listen_address}")
    if cfg.listen_unix and not os.path.isabs(cfg.listen_unix):
        raise ConfigError(f"listen_unix: must be an absolute path, got {cfg.listen_unix!r}")
    if len(cfg.listen_unix.encode()) > 100:  # sun_path holds 108 bytes with the NUL
        raise ConfigError("listen_unix: path too long for a unix socket (100 bytes at most)")
    if cfg.listen_token_file:
        if not os.path.isabs(cfg.listen_token_file):
            raise ConfigError("listen_token_file: must be an absolute path")
        try:
            mode = os.stat(cfg.listen_token_file).st_mode
        except OSError as exc:
            raise ConfigError(f"listen_token_file: {exc.strerror}") from exc
        if mode & 0o077:
            raise ConfigError(f"listen_token_file: mode {mode & 0o777:o} lets others read "
                              "the token; must be 0600 or stricter")  # fmt: skip
    for key in ("listen_tls_cert_file", "listen_tls_key_file"):
        path = getattr(cfg, key)
        if path and not os.path.isfile(path):
            raise ConfigError(f"{key}: file {path} does not exist")
    if cfg.listen_tls_key_file and not cfg.listen_tls_cert_file:
        raise ConfigError("listen_tls_key_file: needs listen_tls_cert_file")
    if not 0 <= cfg.listen_port <= 65535:
        raise ConfigError(f"listen_port: must be 0-65535, got {cfg.listen_port}")
    if not 1 <= cfg.page_size <= 10000:
        raise ConfigError(f"page_size: must be 1-10000, got {cfg.page_size}")
    for key in ("connect_timeout_s", "read_timeout_s", "watch_idle_timeout_s", "refs_refresh_s"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{key}: must be greater than 0")
    if cfg.log_level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"log_level: must be one of {', '.join(_LOG_LEVELS)}")
    if "enabled" in cfg.proxy and not isinstance(cfg.proxy["enabled"], bool):
        raise ConfigError("proxy.enabled: must be true/false")
    return cfg


def _loopback(address: str) -> bool | None:
    """Whether an IP address is loopback (127.0.0.0/8, ::1); None if it is no IP address.
    With socket (loaded anyway) rather than ipaddress, which the agent would keep loaded."""
    import socket

    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            packed = socket.inet_pton(family, address)
        except (OSError, ValueError):
            continue
        return packed[0] == 127 if family == socket.AF_INET else packed == bytes(15) + b"\x01"
    return None


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"<file>: cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"<file>: {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    return parse_config(data)
