"""The proxy: receives Service/EndpointSlice events, keeps rules in sync in its own thread."""

from __future__ import annotations

import random
import threading
import time

from edgesite_agent.events import EventType
from edgesite_agent.proxy.backends import make_backend
from edgesite_agent.proxy.cache import ObjectCache, parse_service, parse_slice
from edgesite_agent.proxy.config import ProxySettings
from edgesite_agent.proxy.conntrack import forget, udp_endpoints
from edgesite_agent.proxy.model import Endpoint, build_service
from edgesite_agent.proxy.render import object_key
from edgesite_agent.proxy.runner import ApplyError, Runner

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see events.py)
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from typing import Any

    from edgesite_agent.proxy.backends import Backend

    Frags = tuple[Any, ...]  # one service's fragments (one per service port)

KINDS = ("Service", "EndpointSlice")


class Proxy:
    """kube-proxy-lite. Event methods are cheap and never block on the kernel."""

    def __init__(
        self,
        settings: ProxySettings,
        node_name: str,
        log: logging.Logger,
        runner: Runner | None = None,
        after_sync: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        # The agent hands the heap a sync freed back to the OS here (docs/agent.md).
        self._after_sync = after_sync
        self.node_name = node_name
        self.log = log
        self.runner = runner or Runner()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._cache = ObjectCache()
        self._synced: set[str] = set()
        self._dirty: set[str] = set()  # service keys whose fragments must be rebuilt
        self._node_unreachable = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._backend: Backend | None = None
        # service key -> its rendered fragments; rebuilt only for changed services
        self._fragments: dict[str, Frags] = {}
        self.stats = {"syncs": 0, "full_syncs": 0, "failures": 0}
        self.last_error: str | None = None
        self._applying = False
        self._full_requested = False
        self._full_needed = True  # first apply, and after a failure
        # UDP endpoints per service, and those removed whose flows are still to be forgotten
        self._udp: dict[str, set[Endpoint]] = {}
        self._stale_udp: set[Endpoint] = set()

    # ---- event side (informer / store thread) ----
    def on_event(self, kind: str, event_type: EventType, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        deleted = event_type == EventType.DELETED
        with self._lock:
            if kind == "Service":
                changed = self._cache.set_service(key, None if deleted else parse_service(obj))
                keys = {changed} if changed else set()
            elif kind == "EndpointSlice":
                keys = self._cache.set_slice(key, None if deleted else parse_slice(obj))
            elif kind == "Node" and (obj.get("metadata") or {}).get("name") == self.node_name:
                keys = self._node_event(obj, deleted)
            else:
                return
            if keys:
                self._dirty |= keys
                self._wake.notify()

    def _node_event(self, obj: dict[str, Any], deleted: bool) -> set[str]:
        # Ready=Unknown is what the node lifecycle controller sets when the masters stop
        # hearing from this node; only then may the keep-local policy override the slices.
        conditions = (obj.get("status") or {}).get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == "Ready"), {})
        unreachable = not deleted and ready.get("status") == "Unknown"
        if unreachable == self._node_unreachable:
            return set()
        self._node_unreachable = unreachable
        if not self.settings.keep_local_endpoints_when_disconnected:
            return set()
        self.log.info("node reachability from the masters changed: unreachable=%s", unreachable)
        return set(self._cache.services) | set(self._cache.slices_by_service)

    def on_synced(self, kind: str) -> None:
        with self._lock:
            if kind in KINDS:
                self._synced.add(kind)
                self._wake.notify()

    # ---- lifecycle ----
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="proxy-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop syncing. The rules stay: traffic keeps flowing while the agent is down."""
        with self._lock:
            self._stop = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def resync(self) -> None:
        """Rewrite all our rules on the next sync (repairs anything edited behind our back)."""
        with self._lock:
            self._full_requested = True
            self._wake.notify()

    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """True once every change received so far is programmed (for tests and tools)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = self._dirty or self._applying or self._full_requested or self._full_needed
                if self._ready.is_set() and not busy:
                    return True
            time.sleep(0.01)
        return False

    # ---- sync side (own thread) ----
    def _loop(self) -> None:
        backoff = 0.0
        last_sync = 0.0
        last_full = 0.0
        # Probing the backend runs nft/iptables: done here, never under the event lock.
        self._backend = make_backend(self.settings, self.runner)
        self.log.info("proxy: using the %s backend", self._backend.name)
        while True:
            with self._lock:
                while not self._stop:
                    if set(KINDS) <= self._synced:
                        now = time.monotonic()
                        due_full = now - last_full >= self.settings.full_resync_interval
                        wanted = bool(self._dirty) or self._full_needed or due_full
                        wanted = wanted or self._full_requested
                        # The first sync is immediate: offline restarts must program rules at once.
                        earliest = last_sync + max(self.settings.min_sync_interval, backoff)
                        first = not self._ready.is_set() and not backoff
                        if wanted and (first or now >= earliest):
                            break
                        timeout = (
                            max(0.0, earliest - now)
                            if wanted
                            else max(0.05, last_full + self.settings.full_resync_interval - now)
                        )
                    else:
                        timeout = None
                    self._wake.wait(timeout)
                if self._stop:
                    return
                dirty, self._dirty = self._dirty, set()
                full = (
                    self._full_needed
                    or self._full_requested
                    or time.monotonic() - last_full >= self.settings.full_resync_interval
                )
                self._full_requested = False
                # Most services changed (the first list after starting with an empty store, a
                # relist): one streamed full sync. Deltas of a thousand services cost ~3 MiB
                # more at their peak (docs/agent.md) and no less time.
                full = full or len(dirty) > max(64, len(self._fragments) // 2)
                assert self._backend is not None
                session = None
                changes: dict[str, tuple[Frags, Frags]] = {}
                if full or self._backend.applied is None:
                    # Each service goes to the backend as soon as it is built: nft parses
                    # the first services while the later ones are still being built.
                    session = self._backend.begin_full()
                    try:
                        self._stream_all(dirty, session)
                    except BaseException:
                        session.abort()
                        raise
                else:
                    changes = self._rebuild(dirty)
                # Only the sync thread changes `_fragments`: the snapshot may be taken later,
                # and only when the backend needs the whole state.
                snapshot = self._fragments

                def all_fragments(snapshot: dict[str, Frags] = snapshot) -> list[Any]:
                    return [f for key in sorted(snapshot) for f in snapshot[key]]

                self._applying = True
            last_sync = time.monotonic()
            try:
                try:
                    if session is not None:
                        mode = session.finish()
                    else:
                        mode = self._backend.sync(all_fragments, changes, full)
                finally:
                    # Not kept until the next sync: the whole ruleset text of a full sync,
                    # the old and new fragments of the changed services.
                    del session, changes, all_fragments
            except ApplyError as exc:
                self.stats["failures"] += 1
                self.last_error = str(exc)
                backoff = min(self.settings.retry_backoff_max, max(1.0, backoff * 2))
                backoff *= random.uniform(0.9, 1.1)  # no lockstep retries across nodes
                self.log.error("proxy: applying rules failed, keeping the previous rules: %s", exc)
                with self._lock:
                    self._full_needed = True  # the kernel may differ from what we think
                    self._applying = False
                continue
            backoff = 0.0
            if mode == "full":
                last_full = last_sync
                self.stats["full_syncs"] += 1
            if mode != "noop" and self._after_sync is not None:
                self._after_sync()
            self.stats["syncs"] += 1
            with self._lock:
                self._full_needed = False
                # Endpoints back in some service (moved, re-added) keep their flows.
                in_use = set().union(*self._udp.values()) if self._udp else set()
                stale, self._stale_udp = self._stale_udp - in_use, set()
            if stale:
                # Only now: the rules no longer send new flows there.
                forget(self.runner, stale, self.log)
            with self._lock:
                self._applying = False
            if not self._ready.is_set():
                self.log.info(
                    "proxy: rules programmed (%s backend, %d services) in %.0f ms",
                    self._backend.name if self._backend else "?",
                    len(self._fragments),
                    (time.monotonic() - last_sync) * 1000,
                )
                self._ready.set()

    def _rebuild(self, dirty: set[str]) -> dict[str, tuple[Frags, Frags]]:
        """Re-render only the services that changed (called with the lock held).

        Returns service -> (old fragments, new fragments), for backends that apply deltas.
        """
        keep = self.settings.keep_local_endpoints_when_disconnected and self._node_unreachable
        return {key: self._rebuild_one(key, keep) for key in dirty}

    def _stream_all(self, dirty: set[str], session: Any) -> None:
        """Every service, in key order, into a full sync; the changed ones re-rendered."""
        keep = self.settings.keep_local_endpoints_when_disconnected and self._node_unreachable
        for key in sorted(self._fragments.keys() | dirty):
            frags = self._rebuild_one(key, keep)[1] if key in dirty else self._fragments[key]
            if frags:
                session.add(frags)

    def _rebuild_one(self, key: str, keep: bool) -> tuple[Frags, Frags]:
        assert self._backend is not None
        old = self._fragments.get(key, ())
        svc = self._cache.services.get(key)
        if svc is None:
            self._fragments.pop(key, None)
            self._track_udp(key, set())
            return old, ()
        ports = build_service(svc, self._cache.slices_of(key), self.node_name, keep)
        # A tuple: a thousand one-element lists would each keep room to grow.
        new = self._fragments[key] = tuple([self._backend.fragment(sp) for sp in ports])
        self._track_udp(key, udp_endpoints(ports))
        return old, new

    def _track_udp(self, key: str, now: set[Endpoint]) -> None:
        before = self._udp.pop(key, set())
        if now:
            self._udp[key] = now
        self._stale_udp |= before - now
