"""GET and LIST of the local API with the API server's semantics for the objects it holds.

- Selectors: `selectors.Selector` (labels/selector.go, fields/selector.go and each
  registry's selectable fields); one the server cannot evaluate is a 400 BadRequest Status
  that says so (apiserver pkg/endpoints/handlers/get.go ListResource), never ignored.
- resourceVersion: a list carries the kind's version (the last upstream version the agent
  applied); objects keep the version the API server gave them. `resourceVersion` unset,
  "0" or older than the agent's: the current state, as the watch cache serves
  NotOlderThan; newer: wait up to 3 s for it, then 504 "Too large resource version"
  (cacher.go waitUntilFreshAndBlock, storage/errors.go NewTooLargeResourceVersionError);
  `resourceVersionMatch=Exact` of another version: 410, the agent keeps no old snapshots.
- limit/continue: pages in (namespace, name) order; the token holds the first page's
  version and the last key (apiserver storage/continue.go EncodeContinue: base64 JSON
  {"v","rv","start"}). Pages read the current state after that key, not a snapshot: an
  object changed between pages shows its newer version, and a watch from the list's
  version then delivers that change too (never a lost one).
- Table answers when asked (`tables`).
"""

from __future__ import annotations

import json

from edgesite_agent.localapi import RESOURCES, ApiFailure
from edgesite_agent.watchcache import rv_int

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from typing import Any

    from edgesite_agent.selectors import Selector

FRESH_WAIT_S = 3.0  # cacher.go: how long a list waits for a newer resourceVersion
# A list streams rows as they come: a few small batches from SQLite and ~32 KiB chunks on
# the wire keep its transient heap small (200-row batches and 100-item chunks of 1.5 KiB
# EndpointSlices left ~0.3 MiB of glibc heap behind each big list or watch start).
ROWS_BATCH = 32  # rows per SQLite query
FLUSH_CHARS = 32 * 1024  # characters per written chunk


def wants_table(accept: str) -> bool:
    """Accept names meta.k8s.io Table first among what the client takes (kubectl get)."""
    first = accept.split(",")[0].replace(" ", "")
    return "as=Table" in first and "g=meta.k8s.io" in first


class _Everything:
    """No selector given: the `selectors` module (and its regexes) is not even imported."""

    everything = True

    def matches(self, obj: Any) -> bool:
        return True


EVERYTHING = _Everything()


def selector(kind: str, q: dict[str, str], ns: str | None) -> Selector:
    if not (q.get("labelSelector", "").strip() or q.get("fieldSelector", "").strip()):
        return EVERYTHING  # type: ignore[return-value]
    from edgesite_agent.selectors import Selector, SelectorError

    try:
        return Selector(kind, q.get("labelSelector", ""), q.get("fieldSelector", ""))
    except SelectorError as exc:
        raise ApiFailure(400, "BadRequest", str(exc)) from None


def check_version(h: Any, kind: str, q: dict[str, str]) -> None:
    rv, match = q.get("resourceVersion", ""), q.get("resourceVersionMatch", "")
    if match and not rv:
        raise ApiFailure(400, "BadRequest", "resourceVersionMatch is forbidden unless "
                         "resourceVersion is provided")  # fmt: skip
    if match not in ("", "NotOlderThan", "Exact"):
        raise ApiFailure(400, "BadRequest", f"unsupported resourceVersionMatch {match!r}")
    if rv in ("", "0"):
        return
    want = rv_int(rv)
    if not rv.isdigit():
        raise ApiFailure(400, "BadRequest", f"invalid resource version: {rv}")
    cache = h.server.api.watch
    if not cache.wait_for(kind, want, FRESH_WAIT_S):
        raise ApiFailure(504, "Timeout", f"Too large resource version: {want}, current: "
                         f"{cache.current(kind)}", {"causes": [{
                             "reason": "ResourceVersionTooLarge",
                             "message": "Too large resource version"}],
                             "retryAfterSeconds": 1})  # fmt: skip
    if match == "Exact" and want != cache.current(kind):
        raise ApiFailure(410, "Expired", f"too old resource version: {want} "
                         f"({cache.current(kind)})")  # fmt: skip


def serve_read(h: Any, plural: str, ns: str | None, name: str | None, q: dict[str, str]) -> None:
    api = h.server.api
    kind, api_version, _ = RESOURCES[plural]
    table = wants_table(h.headers.get("accept", ""))
    include = q.get("includeObject", "Metadata")
    if name is not None:
        text = api.store.get_json(kind, ns or "", name)
        if text is None:
            raise ApiFailure(404, "NotFound", f'{plural} "{name}" not found',
                             {"name": name, "kind": plural})  # fmt: skip
        if not table:
            return h.send(200, text.encode())
        from edgesite_agent import tables

        obj = json.loads(text)
        doc = tables.table_head(kind, (obj.get("metadata") or {}).get("resourceVersion", ""), "")
        doc["rows"] = [tables.row(kind, obj, include)]
        return h.json(200, doc)
    sel = selector(kind, q, ns)
    check_version(h, kind, q)
    limit = int(q["limit"]) if q.get("limit", "").isdigit() else 0
    rv = str(api.watch.current(kind) or api.store.resource_version(kind))
    start = None
    if q.get("continue"):
        rv, start = _decode_continue(q["continue"])
    _stream_list(h, kind, api_version, ns, sel, rv, limit, start, table, include)


def _decode_continue(token: str) -> tuple[str, tuple[str, str]]:
    import base64

    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        ns, _, name = str(raw["start"]).partition("/")
        return str(raw["rv"]), (ns, name)
    except (ValueError, KeyError, TypeError):
        raise ApiFailure(400, "BadRequest", "continue key is not valid") from None


def _encode_continue(rv: str, ns: str, name: str) -> str:
    import base64

    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv_int(rv), "start": f"{ns}/{name}"})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _stream_list(h: Any, kind: str, api_version: str, ns: str | None, sel: Selector,
                 rv: str, limit: int, start: tuple[str, str] | None, table: bool,
                 include: str) -> None:  # fmt: skip
    api = h.server.api
    rows = api.store.iter_rows(kind, ns, start, ROWS_BATCH)
    if table:
        from edgesite_agent import tables
    # One match past the page tells whether there is more (then a continue token).
    h.head(200, "application/json", None)
    if h.command == "HEAD":
        return h.end_chunks()
    parts: list[str] = [_open(kind, api_version, rv, table)]
    count, last, cont, size = 0, ("", ""), "", 0
    for r_ns, r_name, text in rows:
        obj = None
        if not sel.everything:
            obj = json.loads(text)
            if not sel.matches(obj):
                continue
        if limit and count >= limit:
            cont = _encode_continue(rv, *last)
            break
        if table:
            cell = tables.row(kind, obj if obj is not None else json.loads(text), include)
            text = json.dumps(cell, separators=(",", ":"))
        if count:
            parts.append(",")
        parts.append(text)
        count += 1
        size += len(text)
        last = (r_ns, r_name)
        if size >= FLUSH_CHARS:
            h.chunk("".join(parts))
            parts, size = [], 0
    close: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        close["continue"] = cont
    # metadata after the items: JSON object members have no order, and only here is the
    # continue token known. Clients decode the whole object (client-go, kubectl, Python).
    parts.append('],"metadata":' + json.dumps(close) + "}")
    h.chunk("".join(parts))
    h.end_chunks()
    api.after_list()


def _open(kind: str, api_version: str, rv: str, table: bool) -> str:
    if table:
        from edgesite_agent import tables

        head = tables.table_head(kind, rv, "")
        del head["metadata"]
        return json.dumps(head)[:-1] + ',"rows":['
    return json.dumps({"kind": f"{kind}List", "apiVersion": api_version})[:-1] + ',"items":['
