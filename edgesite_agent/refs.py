"""ConfigMaps and Secrets used by this node's pods, fetched one by one by name.

The Node authorizer lets a kubelet identity read only the ConfigMaps/Secrets referenced
by pods bound to its node, and only by name: a collection list/watch is forbidden. So this
handler follows the Pod events, and a thread GETs each referenced object (right away when a
new reference appears, and every `refresh_s` to pick up changes); objects no longer
referenced, or gone from the API (404), are deleted from the store.
"""

from __future__ import annotations

import threading

from edgesite_agent.client import ApiError, KubeClient
from edgesite_agent.events import EventType, KubeObject
from edgesite_agent.informer import Backoff
from edgesite_agent.status import Status

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from typing import Any

    from edgesite_agent.informer import Sink
    from edgesite_agent.log import Logger
    from edgesite_agent.versions import Versions

Ref = tuple[str, str, str]  # (kind, namespace, name)
PATHS = {"ConfigMap": "configmaps", "Secret": "secrets"}


def pod_refs(pod: KubeObject, kinds: tuple[str, ...]) -> frozenset[Ref]:
    spec: dict[str, Any] = pod.get("spec") or {}
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    out: set[Ref] = set()

    def add(kind: str, name: Any) -> None:
        if kind in kinds and isinstance(name, str) and name:
            out.add((kind, ns, name))

    for vol in spec.get("volumes") or []:
        add("ConfigMap", (vol.get("configMap") or {}).get("name"))
        add("Secret", (vol.get("secret") or {}).get("secretName"))
        for src in (vol.get("projected") or {}).get("sources") or []:
            add("ConfigMap", (src.get("configMap") or {}).get("name"))
            add("Secret", (src.get("secret") or {}).get("name"))
    containers = [
        *(spec.get("containers") or []),
        *(spec.get("initContainers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]
    for c in containers:
        for env in c.get("env") or []:
            vf = env.get("valueFrom") or {}
            add("ConfigMap", (vf.get("configMapKeyRef") or {}).get("name"))
            add("Secret", (vf.get("secretKeyRef") or {}).get("name"))
        for ef in c.get("envFrom") or []:
            add("ConfigMap", (ef.get("configMapRef") or {}).get("name"))
            add("Secret", (ef.get("secretRef") or {}).get("name"))
    for ips in spec.get("imagePullSecrets") or []:
        add("Secret", ips.get("name"))
    return frozenset(out)


class RefFetcher:
    """An EventHandler for Pods plus the thread (`run`) that fetches what they reference."""

    def __init__(
        self,
        client: KubeClient,
        sink: Sink,
        kinds: tuple[str, ...],
        known: dict[str, Versions],
        status: Status,
        log: Logger,
        stop: threading.Event,
        refresh_s: float = 60.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.client, self.sink, self.kinds, self.known = client, sink, kinds, known
        self.status, self.log, self.stop = status, log, stop
        self.refresh_s = refresh_s
        self.backoff = backoff or Backoff()
        self._lock = threading.Lock()
        self._pods: dict[tuple[str, str], frozenset[Ref]] = {}
        self._pods_synced = False
        self._wake = threading.Event()
        self._fetched: set[Ref] = set()
        self.synced = False

    # --- EventHandler for Pods -----------------------------------------------------
    def on_event(self, kind: str, event_type: EventType, obj: KubeObject) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        with self._lock:
            if event_type == EventType.DELETED:
                changed = self._pods.pop(key, None) is not None
            else:
                refs = pod_refs(obj, self.kinds)
                changed = self._pods.get(key) != refs
                self._pods[key] = refs
        if changed:
            self._wake.set()

    def on_synced(self, kind: str) -> None:
        self._pods_synced = True
        self._wake.set()

    # --- fetch loop ----------------------------------------------------------------
    def desired(self) -> set[Ref]:
        with self._lock:
            return set().union(*self._pods.values()) if self._pods else set()

    def close(self) -> None:
        """Wake the loop so that it sees `stop` (set first) now, not after `refresh_s`."""
        self._wake.set()

    def run(self) -> None:
        delay = 0.0
        while not self.stop.is_set():
            woke = self._wake.wait(delay if delay else self.refresh_s)
            if self.stop.is_set():
                return
            refresh = not woke
            self._wake.clear()
            if not self._pods_synced:
                delay = 0.0
                continue
            try:
                self.sync_once(refresh_all=refresh or delay > 0)
                delay = 0.0
            except ApiError as exc:
                self.status.inc("errors_total", kind="/".join(self.kinds))
                delay = self.backoff.next()
                self.log.warning("referenced objects: %s; retrying in %.1fs", exc, delay)

    def sync_once(self, refresh_all: bool = True) -> None:
        want = self.desired()
        for ref in sorted(want):
            if self.stop.is_set():
                return
            if refresh_all or ref not in self._fetched:
                self._fetch(ref)
        for kind in self.kinds:
            for ns, name in list(self.known[kind]):
                if (kind, ns, name) not in want:
                    self._gone((kind, ns, name))
        if not self.synced:
            self.synced = True
            for kind in self.kinds:
                self.sink.synced(kind)

    def _fetch(self, ref: Ref) -> None:
        kind, ns, name = ref
        path = f"/api/v1/namespaces/{ns}/{PATHS[kind]}/{name}"
        try:
            obj = self.client.get(path)
        except ApiError as exc:
            if exc.code in (404, 403):
                # 403: the authorizer's graph may not know the pod yet; retried next round.
                self.status.contact()
                if exc.code == 404:
                    self._fetched.add(ref)
                    self._gone(ref)
                return
            raise
        self.status.contact()
        self._fetched.add(ref)
        obj.setdefault("kind", kind)
        obj.setdefault("apiVersion", "v1")
        rv = (obj.get("metadata") or {}).get("resourceVersion") or ""
        known = self.known[kind]
        old = known.get((ns, name))
        if old != rv:
            known[(ns, name)] = rv
            etype = EventType.ADDED if old is None else EventType.MODIFIED
            self.sink.event(kind, etype, obj, "")

    def _gone(self, ref: Ref) -> None:
        kind, ns, name = ref
        self._fetched.discard(ref)
        if self.known[kind].pop((ns, name), None) is not None:
            self.sink.event(kind, EventType.DELETED, self.sink.last_known(kind, ns, name), "")
