"""Fan-out of informer events: the store first (so state survives a crash), then handlers.

A handler that raises is logged and skipped; it must never stop an informer, because the
store would then stop following the API.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict

from edgesite_agent.events import EventType, KubeObject
from edgesite_agent.status import Status
from edgesite_agent.store import Store, object_key

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from edgesite_agent.events import EventHandler
    from edgesite_agent.log import Logger
    from edgesite_agent.watchcache import WatchCache


class Dispatcher:
    def __init__(
        self, store: Store, status: Status, log: Logger, watch: WatchCache | None = None
    ) -> None:
        self.store, self.status, self.log = store, status, log
        self.watch = watch  # the local API's watches read the changes from it
        self._handlers: dict[str, list[EventHandler]] = defaultdict(list)

    def register(self, handler: EventHandler, kinds: list[str]) -> None:
        for kind in kinds:
            self._handlers[kind].append(handler)

    # --- called by informers -------------------------------------------------------
    def event(self, kind: str, event_type: EventType, obj: KubeObject, kind_rv: str) -> None:
        watch, prev = self.watch, None
        if watch is not None and event_type == EventType.MODIFIED and watch.want_prev(kind):
            prev = self.store.get_json(kind, *object_key(obj))
        text = self.store.apply(kind, event_type, obj, kind_rv)
        self.status.inc("events_applied_total", kind=kind, type=str(event_type))
        if watch is not None:
            watch.publish(kind, str(event_type), obj, text, kind_rv, prev)
        self.notify(kind, event_type, obj)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Events applied inside share one store transaction (see Store.transaction)."""
        return self.store.transaction()

    def notify(self, kind: str, event_type: EventType, obj: KubeObject) -> None:
        for h in self._handlers.get(kind, ()):
            try:
                h.on_event(kind, event_type, obj)
            except Exception:
                self.log.exception("handler %s failed on %s %s", type(h).__name__, event_type, kind)

    def resource_version(self, kind: str, rv: str) -> None:
        self.store.set_resource_version(kind, rv)
        if self.watch is not None:
            self.watch.advance(kind, rv)

    def synced(self, kind: str) -> None:
        self.status.mark_synced(kind)
        for h in self._handlers.get(kind, ()):
            try:
                h.on_synced(kind)
            except Exception:
                self.log.exception("handler %s failed on synced %s", type(h).__name__, kind)

    def last_known(self, kind: str, namespace: str, name: str) -> KubeObject:
        """The stored object, for DELETED events the API can no longer describe."""
        text = self.store.get_json(kind, namespace, name)
        if text is not None:
            return json.loads(text)
        meta = {"name": name} | ({"namespace": namespace} if namespace else {})
        return {"kind": kind, "metadata": meta}

    # --- startup -------------------------------------------------------------------
    def replay(self, kinds: list[str]) -> int:
        """Deliver every stored object as ADDED, then on_synced: how handlers learn the
        state after a restart, before (or without) any contact with the API."""
        n = 0
        for kind in kinds:
            if self._handlers.get(kind):
                for text in self.store.iter_json(kind):
                    self.notify(kind, EventType.ADDED, json.loads(text))
                    n += 1
            for h in self._handlers.get(kind, ()):
                try:
                    h.on_synced(kind)
                except Exception:
                    self.log.exception("handler %s failed on synced %s", type(h).__name__, kind)
        return n
