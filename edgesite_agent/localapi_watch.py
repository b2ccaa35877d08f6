"""WATCH on the local API: the API server's resourceVersion semantics over the agent's
recent changes (`watchcache`).

- `resourceVersion` unset or "0": ADDED for every current object (matching the selectors),
  then changes; a given version: only changes after it; older than the ring can replay: a
  200 stream whose only event is an ERROR with a 410 Expired Status (cacher.go Watch ->
  newErrWatcher; apimachinery api/errors NewResourceExpired "too old resource version").
- `sendInitialEvents=true` (with `resourceVersionMatch=NotOlderThan` and
  `allowWatchBookmarks=true`, as apimachinery/pkg/apis/meta/internalversion/validation
  ValidateListOptions demands): the initial ADDED events end with a BOOKMARK annotated
  `k8s.io/initial-events-end: "true"` (cacher.go, KEP-3157).
- `allowWatchBookmarks`: a BOOKMARK with the kind's version once it moved past the last
  event sent (upstream bookmarks, list ends), at most every BOOKMARK_EVERY_S.
- selectors: a change that enters the selection is ADDED, one that leaves it DELETED with
  the previous object at the change's version (cacher/cache_watcher.go convertToWatchEvent).
- `timeoutSeconds`: the stream ends cleanly then; unset: 30-60 min (apiserver's
  MinRequestTimeout of 1800 s times 1-2, handlers/watch.go).
- The stream stays open through an upstream outage: it only waits on the cache, which the
  informers fill again when the API server is back.
- Table answers (kubectl get -w): each event's object is a one-row Table, headers in the
  first one only (handlers/watch.go with a Table target).
"""

from __future__ import annotations

import json
import random
import time

from edgesite_agent.localapi import RESOURCES, ApiFailure, status_obj
from edgesite_agent.localapi_read import ROWS_BATCH, selector, wants_table
from edgesite_agent.watchcache import Gone, rv_int

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from typing import Any

    from edgesite_agent.selectors import Selector
    from edgesite_agent.watchcache import Entry

BOOKMARK_EVERY_S = 1.0
POLL_S = 1.0  # how often an idle watch checks its client and the clock
MIN_REQUEST_TIMEOUT_S = 1800.0
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


class _Stream:
    """One open watch: writes events as chunks of newline-delimited JSON."""

    def __init__(self, h: Any, kind: str, api_version: str, ns: str | None, sel: Selector,
                 table: bool, include: str) -> None:  # fmt: skip
        self.h, self.kind, self.api_version, self.ns, self.sel = h, kind, api_version, ns, sel
        self.table, self.include = table, include
        self.headers_sent = False
        self.sent_rv = 0

    def event(self, etype: str, text: str) -> None:
        if self.table:
            from edgesite_agent import tables

            obj = json.loads(text)
            doc = tables.table_head(self.kind, (obj.get("metadata") or {}).get(
                "resourceVersion", ""), "", headers=not self.headers_sent)  # fmt: skip
            doc["rows"] = [tables.row(self.kind, obj, self.include)]
            self.headers_sent = True
            text = json.dumps(doc, separators=(",", ":"))
        self.h.chunk(f'{{"type":"{etype}","object":{text}}}\n')

    def bookmark(self, rv: int, end_of_initial: bool = False) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if end_of_initial:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        obj = {"kind": self.kind, "apiVersion": self.api_version, "metadata": meta}
        self.h.chunk(json.dumps({"type": "BOOKMARK", "object": obj}, separators=(",", ":"))
                     + "\n")  # fmt: skip
        self.sent_rv = max(self.sent_rv, rv)

    def change(self, e: Entry) -> None:
        """One ring entry, as this watch's selection sees it (convertToWatchEvent)."""
        if self.ns is not None and e.namespace != self.ns:
            return
        self.sent_rv = max(self.sent_rv, e.rv)
        if self.sel.everything:
            return self.event(e.etype, e.text)
        now = self.sel.matches(json.loads(e.text))
        if e.etype != "MODIFIED":
            if now:
                self.event(e.etype, e.text)
            return
        before = None if e.prev is None else self.sel.matches(json.loads(e.prev))
        if now:
            self.event("ADDED" if before is False else "MODIFIED", e.text)
        elif before and e.prev is not None:
            old = json.loads(e.prev)
            old.setdefault("metadata", {})["resourceVersion"] = str(e.rv)
            self.event("DELETED", json.dumps(old, separators=(",", ":")))


def serve_watch(h: Any, plural: str, ns: str | None, q: dict[str, str]) -> None:
    api = h.server.api
    kind, api_version, _ = RESOURCES[plural]
    sel = selector(kind, q, ns)
    rv_param = q.get("resourceVersion", "")
    bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
    initial_events = q.get("sendInitialEvents") in ("true", "1")
    if initial_events and (not bookmarks or q.get("resourceVersionMatch") != "NotOlderThan"):
        raise ApiFailure(400, "BadRequest", "sendInitialEvents requires allowWatchBookmarks="
                         "true and resourceVersionMatch=NotOlderThan")  # fmt: skip
    if rv_param and not rv_param.isdigit():
        raise ApiFailure(400, "BadRequest", f"invalid resource version: {rv_param}")
    timeout = (float(q["timeoutSeconds"]) if q.get("timeoutSeconds", "").isdigit()
               else MIN_REQUEST_TIMEOUT_S * (1 + random.random()))  # fmt: skip
    table = wants_table(h.headers.get("accept", ""))
    stream = _Stream(h, kind, api_version, ns, sel, table, q.get("includeObject", "Metadata"))
    cache = api.watch
    selective = not sel.everything
    cache.attach(kind, selective)
    try:
        from_list = initial_events or rv_param in ("", "0")
        try:
            pos, backlog = cache.since(kind, None if from_list else rv_int(rv_param))
        except Gone as gone:
            h.head(200, "application/json", None)
            stream.h.chunk(
                json.dumps(
                    {
                        "type": "ERROR",
                        "object": status_obj(
                            410, "Expired", f"too old resource version: {gone.rv} ({gone.floor})"
                        ),
                    }
                )
                + "\n"
            )
            return h.end_chunks()  # fmt: skip
        h.head(200, "application/json", None)
        if from_list:
            snapshot_rv = cache.current(kind)
            for _ns, _name, text in api.store.iter_rows(kind, ns, None, ROWS_BATCH):
                if sel.everything or sel.matches(json.loads(text)):
                    stream.event("ADDED", text)
            stream.sent_rv = snapshot_rv
            if initial_events:
                stream.bookmark(snapshot_rv, end_of_initial=True)
            api.after_list()
        else:
            stream.sent_rv = rv_int(rv_param)
            for e in backlog:
                stream.change(e)
        _follow(h, stream, cache, kind, pos, timeout, bookmarks, selective)
        h.end_chunks()
    except Gone as gone:  # fell behind the ring: the client resumes or relists
        stream.h.chunk(json.dumps({"type": "ERROR", "object": status_obj(
            410, "Expired", f"too old resource version: {gone.rv}")}) + "\n")  # fmt: skip
        h.end_chunks()
    finally:
        cache.detach(kind)


def _follow(h: Any, stream: _Stream, cache: Any, kind: str, pos: int, timeout: float,
            bookmarks: bool, selective: bool) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    last_bookmark = time.monotonic()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        entries, current = cache.next(kind, pos, min(POLL_S, left), selective)
        for e in entries:
            stream.change(e)
            pos = e.seq
        now = time.monotonic()
        if bookmarks and current > stream.sent_rv and now - last_bookmark >= BOOKMARK_EVERY_S:
            stream.bookmark(current)
            last_bookmark = now
        if not entries and h.client_gone():
            return
