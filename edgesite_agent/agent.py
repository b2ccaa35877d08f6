"""The one place where the agent's parts are wired together.

Start order is what makes the node autonomous: the store is opened and replayed to the
handlers (the proxy programs rules from it) and the local API answers before any attempt
to reach the API server; only then do the informers start and reconcile.
"""

from __future__ import annotations

import threading

from edgesite_agent.config import AgentConfig
from edgesite_agent.dispatch import Dispatcher
from edgesite_agent.informer import Reflector, ResourceSpec
from edgesite_agent.memory import Allocator
from edgesite_agent.status import Status
from edgesite_agent.store import Store

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from typing import Any

    from edgesite_agent.log import Logger

# The labels kube-proxy selects on: Services handled by another proxy, and headless ones.
PROXY_LABEL_SELECTOR = "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless"
LISTED_KINDS = ("Node", "Pod", "Service", "EndpointSlice")
MALLOC_ARENAS = 1  # one arena for all threads: measured best, see docs/agent.md


def _proxied_service(obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if "service.kubernetes.io/service-proxy-name" in labels:
        return False
    return (obj.get("spec") or {}).get("clusterIP") != "None"


def _proxied_slice(obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return not (
        "service.kubernetes.io/service-proxy-name" in labels
        or "service.kubernetes.io/headless" in labels
    )


def resource_specs(node: str) -> list[ResourceSpec]:
    """Rule 7: what this node watches, each with the narrowest selector the API offers."""
    return [
        ResourceSpec("Node", "v1", "/api/v1/nodes", field_selector=f"metadata.name={node}"),
        ResourceSpec("Pod", "v1", "/api/v1/pods", field_selector=f"spec.nodeName={node}"),
        ResourceSpec("Service", "v1", "/api/v1/services",
                     label_selector=PROXY_LABEL_SELECTOR, keep=_proxied_service),
        ResourceSpec("EndpointSlice", "discovery.k8s.io/v1",
                     "/apis/discovery.k8s.io/v1/endpointslices",
                     label_selector=PROXY_LABEL_SELECTOR, keep=_proxied_slice),
    ]  # fmt: skip


class Agent:
    def __init__(self, cfg: AgentConfig, log: Logger) -> None:
        self.cfg, self.log = cfg, log
        self.stop_event = threading.Event()
        self.allocator = Allocator()
        self.status = Status()
        self.store: Store | None = None
        self.dispatcher: Dispatcher | None = None
        self.localapi: Any = None
        self.watch: Any = None
        self.proxy: Any = None
        self.reflectors: list[Reflector] = []
        self.refs: Any = None
        self.threads: list[threading.Thread] = []
        self.ref_kinds: tuple[str, ...] = (
            ("ConfigMap", "Secret") if cfg.cache_secrets else ("ConfigMap",)
        )

    @property
    def kinds(self) -> list[str]:
        return [*LISTED_KINDS, *self.ref_kinds]

    def start(self) -> None:
        """Load the store, serve from it, then start talking to the API (non-blocking)."""
        cfg, log = self.cfg, self.log
        # Before any thread exists, so all of them share the arenas (docs/agent.md).
        self.allocator.limit_arenas(MALLOC_ARENAS)
        store = self.store = Store(cfg.store_path, log.getChild("store"), cfg.store_cache_kib)
        if not cfg.cache_secrets and store.delete_kind("Secret"):
            log.info("cache_secrets is false: removed cached Secrets from the store")
        from edgesite_agent.watchcache import WatchCache

        # Recent changes for the local API's watches, from the stored versions onwards.
        watch = self.watch = WatchCache()
        for kind, rv in store.kinds().items():
            watch.seed(kind, rv)
        dispatcher = self.dispatcher = Dispatcher(store, self.status, log, watch)
        self.status.expected_kinds = set(self.kinds)
        if cfg.proxy_enabled:
            from edgesite_agent.proxy import build_proxy

            # A full sync frees ~1 MiB of ruleset text and fragments in small pieces (a
            # delta less): trimmed, the deployed agent measures ~0.9 MiB less (docs/agent.md).
            self.proxy = build_proxy(
                dict(cfg.proxy), cfg.node_name, log.getChild("proxy"), self.allocator.trim
            )
            # Its own Node too: keep_local_endpoints_when_disconnected reads its Ready condition.
            dispatcher.register(self.proxy, ["Service", "EndpointSlice", "Node"])

        from edgesite_agent.refs import RefFetcher

        known = {kind: store.versions(kind) for kind in self.kinds}
        kubelet_client, proxy_client = self._clients()
        refs = self.refs = RefFetcher(
            kubelet_client, dispatcher, self.ref_kinds, known, self.status,
            log.getChild("refs"), self.stop_event, cfg.refs_refresh_s,
        )  # fmt: skip
        dispatcher.register(refs, ["Pod"])
        dispatcher.register(self.allocator, list(LISTED_KINDS))

        # Offline autonomy: handlers get the stored state before any network I/O.
        replayed = dispatcher.replay(self.kinds)
        self.status.loaded_from_store = set(LISTED_KINDS) <= set(store.kinds())
        log.info(
            "store %s loaded: %d objects replayed (%s)", cfg.store_path, replayed,
            "complete" if self.status.loaded_from_store else "empty or partial: waiting for sync",
        )  # fmt: skip
        if self.proxy is not None:
            self.proxy.start()
            self.status.extra_ready = self.proxy.ready

        from edgesite_agent.localapi import LocalAPI

        self.localapi = LocalAPI(
            store, self.status, log.getChild("localapi"), cfg.listen_address, cfg.listen_port,
            cfg.cache_secrets, after_list=self.allocator.trim, unix_path=cfg.listen_unix,
            watch=watch, token_file=cfg.listen_token_file,
            tls_cert_file=cfg.listen_tls_cert_file, tls_key_file=cfg.listen_tls_key_file,
        )  # fmt: skip
        self.localapi.start()
        log.info("local API listening on %s", self.localapi.url)

        for spec in resource_specs(cfg.node_name):
            client = proxy_client if spec.kind in ("Service", "EndpointSlice") else kubelet_client
            r = Reflector(
                spec, client, dispatcher, known[spec.kind], self.status,
                log.getChild(spec.kind.lower()), self.stop_event, watch_list=cfg.watch_list,
                page_size=cfg.page_size, idle_timeout=cfg.watch_idle_timeout_s,
            )  # fmt: skip
            self.reflectors.append(r)
            self._spawn(r.run, f"informer-{spec.kind}")
        self._spawn(refs.run, "refs")

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def _clients(self) -> tuple[Any, Any]:
        from edgesite_agent import __version__
        from edgesite_agent.client import KubeClient
        from edgesite_agent.kubeconfig import in_cluster, load_kubeconfig

        cfg = self.cfg
        node_creds = load_kubeconfig(cfg.kubeconfig) if cfg.kubeconfig else in_cluster()
        proxy_creds = load_kubeconfig(cfg.proxy_kubeconfig) if cfg.proxy_kubeconfig else None
        if proxy_creds is None:
            self.log.warning(
                "proxy_kubeconfig unset: Services/EndpointSlices are read with the node identity"
            )
        ua = f"edgesite-agent/{__version__} ({cfg.node_name})"
        kw = {"connect_timeout": cfg.connect_timeout_s, "read_timeout": cfg.read_timeout_s,
              "user_agent": ua}  # fmt: skip
        node_client = KubeClient(node_creds, **kw)
        return node_client, KubeClient(proxy_creds, **kw) if proxy_creds else node_client

    def wait(self) -> None:
        self.stop_event.wait()

    def stop(self) -> None:
        self.stop_event.set()
        for r in self.reflectors:
            r.close()
        if self.refs is not None:
            self.refs.close()
        for t in self.threads:
            t.join(timeout=5)
        if self.localapi is not None:
            self.localapi.stop()
        if self.proxy is not None:
            try:
                self.proxy.stop()
            except Exception:
                self.log.exception("proxy stop failed")
        if self.store is not None:
            self.store.close()
