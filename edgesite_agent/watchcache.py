"""Recent changes per kind, for the local API's watches: a bounded ring, as in the API
server's watch cache (staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go:
a cyclic buffer of events; getAllEventsSinceLocked answers a watch from a resourceVersion
with the events after it, or 410 "too old resource version" when that version was already
evicted; cacher.go: a watcher that falls behind the buffer is terminated, and reconnects).

resourceVersions are the upstream's (etcd revisions, decimal): an object's version is the
one the API server gave it, a list's version is the last one the agent applied or was told
by a bookmark. Events of a relist (after a 410 upstream) carry their objects' versions,
which all lie between the previous and the new list version; deletions found by the relist
carry the new list version. When nobody watches a kind, a relist's events are not kept:
the ring's floor moves up instead, and a client resuming from before it gets 410 and
relists, as client-go's reflector does.

Only JSON texts are kept (the store already made them), bounded in count and bytes per
kind: the agent's memory target leaves no room for an unbounded history.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from collections.abc import Callable

    from edgesite_agent.events import KubeObject

MAX_ENTRIES = 512  # per kind
MAX_BYTES = 64 * 1024  # per kind: JSON text held for replay
MIN_ENTRIES = 8  # kept whatever their size
SELECTIVE_HOLD_S = 60.0  # keep previous objects this long after a filtered watch was seen


def rv_int(rv: str | int | None) -> int:
    try:
        return int(rv or 0)
    except (TypeError, ValueError):
        return 0


class Gone(Exception):
    """The watch's resourceVersion is older than what the ring can replay (HTTP 410)."""

    def __init__(self, rv: int, floor: int) -> None:
        super().__init__(f"too old resource version: {rv} ({floor})")
        self.rv, self.floor = rv, floor


class Entry:
    __slots__ = ("etype", "namespace", "prev", "rv", "seq", "text")

    def __init__(self, seq: int, rv: int, etype: str, namespace: str, text: str,
                 prev: str | None) -> None:  # fmt: skip
        self.seq, self.rv, self.etype, self.namespace = seq, rv, etype, namespace
        self.text, self.prev = text, prev


class _Ring:
    __slots__ = ("bytes", "current", "entries", "floor", "selective_seen", "seq", "watchers")

    def __init__(self, rv: int) -> None:
        self.entries: deque[Entry] = deque()
        self.seq = 0  # the last entry's sequence number
        self.current = rv  # the kind's resourceVersion as the agent knows it
        self.floor = rv  # every event after this version is in `entries`
        self.bytes = 0
        self.watchers = 0
        self.selective_seen = -1e9


class WatchCache:
    """Thread-safe: informers publish, local API watchers wait and read."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.max_entries, self.max_bytes, self._clock = max_entries, max_bytes, clock
        self._cond = threading.Condition()
        self._rings: dict[str, _Ring] = {}

    def _ring(self, kind: str) -> _Ring:
        ring = self._rings.get(kind)
        if ring is None:
            ring = self._rings[kind] = _Ring(0)
        return ring

    # --- informer side -------------------------------------------------------------
    def seed(self, kind: str, rv: str) -> None:
        """The stored version at start: nothing before it can be replayed."""
        with self._cond:
            ring = self._ring(kind)
            ring.current = ring.floor = max(ring.current, rv_int(rv))

    def want_prev(self, kind: str) -> bool:
        """Whether a filtered watch needs the object's previous state (cacher.go's
        watchCacheEvent.PrevObject: a change that leaves a selector is a DELETED for it)."""
        ring = self._rings.get(kind)
        return ring is not None and self._clock() - ring.selective_seen < SELECTIVE_HOLD_S

    def publish(self, kind: str, etype: str, obj: KubeObject, text: str | None, kind_rv: str,
                prev: str | None = None) -> None:  # fmt: skip
        """One applied event. `kind_rv` empty: an event of a list (rv of its object)."""
        meta = obj.get("metadata") or {}
        rv = rv_int(kind_rv) or rv_int(meta.get("resourceVersion"))
        if text is None or (etype == "DELETED" and rv_int(meta.get("resourceVersion")) != rv):
            # A deletion found by a relist carries the old object: give it the version at
            # which it was seen gone, so a client resuming from it misses nothing.
            obj = dict(obj, metadata=dict(meta, resourceVersion=str(rv)))
            text = json.dumps(obj, separators=(",", ":"))
        with self._cond:
            ring = self._ring(kind)
            ring.current = max(ring.current, rv)
            if not kind_rv and ring.watchers == 0:
                ring.floor = max(ring.floor, rv)
            else:
                ring.seq += 1
                ring.entries.append(Entry(ring.seq, rv, etype, meta.get("namespace") or "",
                                          text, prev))  # fmt: skip
                ring.bytes += len(text) + len(prev or "")
                self._evict(ring)
            self._cond.notify_all()

    def _evict(self, ring: _Ring) -> None:
        entries = ring.entries
        while len(entries) > MIN_ENTRIES and (
            len(entries) > self.max_entries or ring.bytes > self.max_bytes
        ):
            old = entries.popleft()
            ring.bytes -= len(old.text) + len(old.prev or "")
            ring.floor = max(ring.floor, old.rv)

    def advance(self, kind: str, rv: str) -> None:
        """The kind's version moved without an object change (list end, bookmark)."""
        n = rv_int(rv)
        with self._cond:
            ring = self._ring(kind)
            if n > ring.current:
                ring.current = n
                self._cond.notify_all()

    # --- watcher side --------------------------------------------------------------
    def current(self, kind: str) -> int:
        with self._cond:
            return self._ring(kind).current

    def wait_for(self, kind: str, rv: int, timeout: float) -> bool:
        """Wait until the kind reaches `rv` (a list asking for a newer version than the
        cache has: cacher.go waitUntilFreshAndBlock, 3 s there)."""
        deadline = self._clock() + timeout
        with self._cond:
            ring = self._ring(kind)
            while ring.current < rv:
                left = deadline - self._clock()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def attach(self, kind: str, selective: bool) -> None:
        with self._cond:
            ring = self._ring(kind)
            ring.watchers += 1
            if selective:
                ring.selective_seen = self._clock()

    def detach(self, kind: str) -> None:
        with self._cond:
            self._ring(kind).watchers -= 1

    def since(self, kind: str, rv: int | None) -> tuple[int, list[Entry]]:
        """(position, events after `rv`) to start a watch; None: from now on. Gone: too old."""
        with self._cond:
            ring = self._ring(kind)
            if rv is None:
                return ring.seq, []
            if rv < ring.floor:
                raise Gone(rv, ring.floor)
            return ring.seq, [e for e in ring.entries if e.rv > rv]

    def next(self, kind: str, after: int, timeout: float,
             selective: bool) -> tuple[list[Entry], int]:  # fmt: skip
        """Events after position `after` (waiting up to `timeout` for one) and the kind's
        current version. Gone when the ring evicted events this watcher did not read."""
        deadline = self._clock() + timeout
        with self._cond:
            ring = self._ring(kind)
            if selective:
                ring.selective_seen = self._clock()
            while ring.seq <= after:
                left = deadline - self._clock()
                if left <= 0:
                    return [], ring.current
                self._cond.wait(left)
            entries = ring.entries
            if not entries or entries[0].seq > after + 1:
                raise Gone(ring.floor, ring.floor)
            first = after + 1 - entries[0].seq
            return [entries[i] for i in range(first, len(entries))], ring.current

    def stats(self) -> dict[str, tuple[int, int, int]]:
        """kind -> (entries, bytes, watchers), for tests and metrics."""
        with self._cond:
            return {k: (len(r.entries), r.bytes, r.watchers) for k, r in self._rings.items()}
