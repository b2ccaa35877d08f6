"""Reflectors: keep the store equal to the API's state of one resource, through any outage.

The rules (numbered as in the project issue; each has a test in tests/agent):
1. the first list asks for resourceVersion=0; the watch starts at the list's
   resourceVersion; every event, bookmarks included, advances it;
2. 410 Gone (list, watch answer or watch ERROR event) -> relist with resourceVersion=""
   and diff against what is known, so objects deleted meanwhile become DELETED events;
3. an expired continue token (410) restarts the list from its first page;
4. failures back off 0.8 s doubling to 30 s with jitter; two healthy minutes reset it; a
   watch that had been healthy (answered 200 and delivered an event or stayed open for
   HEALTHY_WATCH_S) and is then cut reopens at once from its resourceVersion, with no
   backoff (client-go tools/cache/reflector.go: watch() loops straight back to a new watch
   after handleWatch returns; only a "very short watch", under a second without events,
   is an error that ends ListAndWatch and waits on the backoff manager). Ours is 0.25 s,
   not 1 s: on a link that drops streams every second, a quiet kind's (no events) watch
   would otherwise count as failed at every other cut and wait out the backoff; a server
   that accepts and drops watches at once still meets the backoff;
5. each watch asks for a random timeoutSeconds in [300, 600]; reads always time out;
6. optional watch-list (sendInitialEvents) ends at the k8s.io/initial-events-end bookmark,
   and falls back to list+watch when the server refuses it, or ends the stream without
   that bookmark (servers before 1.27 ignore sendInitialEvents);
7. scope is decided by the ResourceSpec (field/label selectors + a client-side filter);
8. changes go to a Dispatcher: store first, then handlers.

The diff state is compact (versions.Versions: (namespace, name) -> resourceVersion per
kind), seeded from the store, so a restart delivers only real changes (no ADDED churn for
unchanged objects).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator

from edgesite_agent.client import ApiError, KubeClient
from edgesite_agent.events import EventType, KubeObject
from edgesite_agent.status import Status

Key = tuple[str, str]
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
LIST_BATCH = 20  # listed objects applied per store transaction
HEALTHY_WATCH_S = 0.25  # a watch cut sooner, without events, is a failure (rule 4)


TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Any, Protocol

    from edgesite_agent.log import Logger
    from edgesite_agent.versions import Versions

    class Sink(Protocol):
        def event(
            self, kind: str, event_type: EventType, obj: KubeObject, kind_rv: str
        ) -> None: ...
        def resource_version(self, kind: str, rv: str) -> None: ...
        def synced(self, kind: str) -> None: ...
        def batch(self) -> AbstractContextManager[None]: ...
        def last_known(self, kind: str, namespace: str, name: str) -> KubeObject: ...


class Backoff:
    """Rule 4. Clock and randomness are injectable so the policy is testable exactly."""

    def __init__(
        self,
        initial: float = 0.8,
        cap: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.1,
        reset_after: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial, self.cap, self.factor = initial, cap, factor
        self.jitter, self.reset_after = jitter, reset_after
        self._clock, self._rand = clock, rand
        self._step = 0.0
        self._last: float | None = None

    def reset(self) -> None:
        """A healthy stretch ended: the next failure starts again at `initial`."""
        self._last = None

    def next(self) -> float:
        """The delay before the next attempt after a failure."""
        now = self._clock()
        if self._last is None or now - self._last > self.reset_after:
            self._step = self.initial
        else:
            self._step = min(self._step * self.factor, self.cap)
        self._last = now
        # Jitter spreads many agents' retries after a shared outage (e.g. a master reboot).
        return self._step * (1 + self.jitter * self._rand())


class ResourceSpec:
    """One watched resource and its scope (rule 7)."""

    __slots__ = ("api_version", "field_selector", "keep", "kind", "label_selector", "path")

    def __init__(
        self,
        kind: str,
        api_version: str,
        path: str,  # collection path, e.g. /api/v1/pods
        field_selector: str = "",
        label_selector: str = "",
        keep: Callable[[KubeObject], bool] | None = None,  # client-side scope filter
    ) -> None:
        self.kind, self.api_version, self.path = kind, api_version, path
        self.field_selector, self.label_selector, self.keep = field_selector, label_selector, keep

    def params(self) -> dict[str, str]:
        p = {}
        if self.field_selector:
            p["fieldSelector"] = self.field_selector
        if self.label_selector:
            p["labelSelector"] = self.label_selector
        return p


def _meta(obj: KubeObject) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _key(obj: KubeObject) -> Key:
    m = _meta(obj)
    return m.get("namespace") or "", m.get("name") or ""


class Reflector:
    def __init__(
        self,
        spec: ResourceSpec,
        client: KubeClient,
        sink: Sink,
        known: Versions,
        status: Status,
        log: Logger,
        stop: threading.Event,
        watch_list: bool = False,
        page_size: int = 500,
        idle_timeout: float = 90.0,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.spec, self.client, self.sink, self.known = spec, client, sink, known
        self.status, self.log, self.stop = status, log, stop
        self.watch_list = watch_list
        self.page_size, self.idle_timeout = page_size, idle_timeout
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        self.rv = ""  # where the next watch starts
        self.list_rv = "0"  # rule 1: the first list may be served from the watch cache
        self.watches = 0
        self.synced = False
        self._stream: Any = None
        self._healthy = False  # the current watch lasted HEALTHY_WATCH_S or had an event
        self._started = 0.0

    def close(self) -> None:
        """Interrupt a blocked watch read (used on shutdown, after setting `stop`)."""
        stream = self._stream
        if stream is not None:
            stream.close()

    # --- main loop -----------------------------------------------------------------
    def run(self) -> None:
        kind = self.spec.kind
        need_list = True
        while not self.stop.is_set():
            try:
                if need_list and self.watch_list:
                    try:
                        self._watch(initial=True)
                        need_list = False
                        continue
                    except ApiError as exc:
                        # 400/415/422: a server that refuses it (1.27+ with the WatchList
                        # gate off). WatchEnded: the stream ended without the end-of-initial-
                        # events bookmark, as from a server older than 1.27 that ignores
                        # sendInitialEvents; retrying watch-list there would never sync.
                        if exc.code not in (400, 415, 422) and exc.reason != "WatchEnded":
                            raise
                        self.log.warning(
                            "%s: server does not support watch-list (%s); using list+watch",
                            kind, exc,
                        )  # fmt: skip
                        self.watch_list = False
                if need_list:
                    self._list()
                    need_list = False
                self._watch(initial=False)
            except ApiError as exc:
                if self.stop.is_set():
                    return
                self.status.inc("errors_total", kind=kind)
                if self._healthy and exc.code == 0:
                    # Rule 4: a healthy watch was cut (stream reset, proxy or LB restart):
                    # reopen at once from self.rv; only consecutive failures back off. An
                    # ERROR event (code != 0) is no cut: reflector.go then returns from
                    # watch() and ListAndWatch waits on its backoff.
                    self._healthy = False
                    self.backoff.reset()
                    self.log.info("%s: %s; reopening the watch at %s", kind, exc, self.rv)
                    continue
                if exc.gone:
                    # Rule 2: never retry the same version; relist from the most recent state.
                    self.log.info("%s: %s; relisting", kind, exc)
                    self.rv, self.list_rv, need_list = "", "", True
                    continue
                delay = self.backoff.next()
                self.log.warning("%s: %s; retrying in %.1fs", kind, exc, delay)
                self.stop.wait(delay)
            except Exception:
                # A bug or a surprising answer must not end the informer for good.
                if self.stop.is_set():
                    return
                self.status.inc("errors_total", kind=kind)
                delay = self.backoff.next()
                self.log.exception("%s: unexpected error; retrying in %.1fs", kind, delay)
                self.stop.wait(delay)

    # --- list (rules 1-3) -----------------------------------------------------------
    def _list(self) -> None:
        kind = self.spec.kind
        params = self.spec.params()
        params["resourceVersion"] = self.list_rv
        self.status.inc("relists_total", kind=kind)
        while True:
            seen: set[Key] = set()
            list_rv = ""
            pages = 0
            try:
                for page in self.client.list_pages(self.spec.path, params, self.page_size):
                    pages += 1
                    self.status.contact()
                    # Items arrive one at a time (the page is streamed); at most LIST_BATCH
                    # of them are held, then applied in one transaction and dropped.
                    pending: list[KubeObject] = []
                    for obj in page:
                        pending.append(obj)
                        if len(pending) >= LIST_BATCH:
                            self._offer_all(pending, seen)
                    self._offer_all(pending, seen)
                    list_rv = page.metadata.get("resourceVersion") or list_rv
            except ApiError as exc:
                if exc.gone and exc.reason == "Expired" and pages > 0:
                    # Rule 3: the snapshot is gone; restart from the first page.
                    self.log.info("%s: continue token expired; restarting the list", kind)
                    self.status.inc("relists_total", kind=kind)
                    params["resourceVersion"] = ""
                    continue
                raise
            break
        # The watch uses its own connection; an idle kept-alive TLS connection per informer
        # would hold its buffers for the next 5-10 minutes for nothing.
        self.client.close()
        self._finish_sync(seen, list_rv)

    def _finish_sync(self, seen: set[Key], rv: str) -> None:
        kind = self.spec.kind
        # Deletions found by the list happened by `rv` at the latest: they carry it (the
        # local API's watchers resume after them; the store's version is `rv` just below).
        for key in [k for k in self.known if k not in seen]:
            self._delete(key, rv)
        self.rv = rv
        self.list_rv = rv
        self.sink.resource_version(kind, rv)
        if not self.synced:
            self.synced = True
        self.sink.synced(kind)

    def _offer_all(self, objs: list[KubeObject], seen: set[Key]) -> None:
        """Listed objects, applied in one store transaction (no network I/O inside it)."""
        if not objs:
            return
        kind, api_version = self.spec.kind, self.spec.api_version
        with self.sink.batch():
            for obj in objs:
                obj.setdefault("kind", kind)
                obj.setdefault("apiVersion", api_version)
                if self._offer(obj, ""):
                    seen.add(_key(obj))
        objs.clear()

    def _offer(self, obj: KubeObject, kind_rv: str) -> bool:
        """Deliver an object as ADDED/MODIFIED if it is new or changed; False if out of scope."""
        key = _key(obj)
        if self.spec.keep is not None and not self.spec.keep(obj):
            if key in self.known:
                self._delete(key, kind_rv, obj)
            return False
        rv = _meta(obj).get("resourceVersion") or ""
        old = self.known.get(key)
        if old == rv:
            return True
        self.known[key] = rv
        etype = EventType.ADDED if old is None else EventType.MODIFIED
        self.sink.event(self.spec.kind, etype, obj, kind_rv)
        return True

    def _delete(self, key: Key, kind_rv: str, obj: KubeObject | None = None) -> None:
        if self.known.pop(key, None) is None:
            return
        if obj is None:
            obj = self.sink.last_known(self.spec.kind, *key)
        self.sink.event(self.spec.kind, EventType.DELETED, obj, kind_rv)

    # --- watch (rules 1, 5, 6) ------------------------------------------------------
    def _watch(self, initial: bool) -> None:
        kind = self.spec.kind
        params = self.spec.params()
        params["allowWatchBookmarks"] = "true"
        # Rule 5: spread watch re-establishment over time across many agents.
        params["timeoutSeconds"] = str(self.rng.randint(300, 600))
        if initial:
            params.update(
                sendInitialEvents="true", resourceVersionMatch="NotOlderThan", resourceVersion=""
            )
            self.status.inc("relists_total", kind=kind)
        else:
            params["resourceVersion"] = self.rv
        if self.watches:
            self.status.inc("watch_restarts_total", kind=kind)
        self.watches += 1
        seen: set[Key] | None = set() if initial else None
        self._healthy = False
        self._started = time.monotonic()
        with self.client.watch(self.spec.path, params, self.idle_timeout) as stream:
            self._stream = stream
            if self.stop.is_set():  # close() may have run just before this stream existed
                return
            for etype, obj in self._events(stream):
                self.status.contact()
                self._healthy = True
                rv = _meta(obj).get("resourceVersion") or ""
                if etype == "BOOKMARK":
                    if (
                        seen is not None
                        and (_meta(obj).get("annotations") or {}).get(INITIAL_EVENTS_END) == "true"
                    ):
                        self._finish_sync(seen, rv)
                        seen = None
                    elif rv:
                        self.rv = rv
                        self.sink.resource_version(kind, rv)
                    continue
                obj.setdefault("kind", kind)
                obj.setdefault("apiVersion", self.spec.api_version)
                if etype == "DELETED":
                    self._delete(_key(obj), rv, obj)
                elif etype in ("ADDED", "MODIFIED"):
                    # During the initial events the kind's rv is not final until the bookmark.
                    kept = self._offer(obj, "" if seen is not None else rv)
                    if kept and seen is not None:
                        seen.add(_key(obj))
                if seen is None and rv:
                    self.rv = rv
        if seen is not None:
            raise ApiError(0, "WatchEnded", f"{kind}: watch-list ended before initial events")
        # A clean end (timeoutSeconds reached) while healthy: reopen at self.rv.

    def _events(self, stream: Any) -> Iterator[tuple[str, KubeObject]]:
        try:
            yield from self._checked(stream)
        finally:
            # reflector.go handleWatch: a watch held open long enough counts as healthy even
            # without events (the server answered and kept it).
            if stream.opened and time.monotonic() - self._started >= HEALTHY_WATCH_S:
                self._healthy = True

    def _checked(self, stream: Any) -> Iterator[tuple[str, KubeObject]]:
        for etype, obj in stream:
            if etype == "ERROR":
                err = ApiError.from_status(int(obj.get("code") or 500), obj)
                raise err
            yield etype, obj
