"""Agent health and metrics, rendered in the Prometheus text exposition format.

Metric names (all prefixed `edgesite_agent_`):
  objects{kind}                     gauge   objects in the local store
  events_applied_total{kind,type}   counter events applied to the store
  relists_total{kind}               counter full relists (first list, 410 Gone, ...)
  watch_restarts_total{kind}        counter watch streams (re)opened after the first
  errors_total{kind}                counter failed list/watch/get attempts
  seconds_since_api_contact         gauge   since the last successful answer (-1: never)
  store_bytes                       gauge   store file + WAL size
  synced{kind}                      gauge   1 once a complete state of `kind` is known
  ready                             gauge   1 when /readyz answers 200
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

PREFIX = "edgesite_agent_"

_HELP = {
    "objects": ("gauge", "Objects in the local store, per kind."),
    "events_applied_total": ("counter", "Events applied to the local store."),
    "relists_total": ("counter", "Full relists from the API, per kind."),
    "watch_restarts_total": ("counter", "Watch streams reopened after the first, per kind."),
    "errors_total": ("counter", "Failed requests to the API, per kind."),
    "seconds_since_api_contact": ("gauge", "Seconds since the last successful API answer."),
    "store_bytes": ("gauge", "Size of the store file and its WAL."),
    "synced": ("gauge", "1 once a complete state of the kind is known."),
    "ready": ("gauge", "1 when the agent serves a complete state (synced or loaded)."),
}


class Status:
    """Shared, thread-safe agent state. One instance per agent (no module globals)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.last_contact: float | None = None
        self.synced: set[str] = set()
        self.loaded_from_store = False
        self.expected_kinds: set[str] = set()
        # e.g. the proxy's "rules are programmed"; /readyz waits for it too.
        self.extra_ready: Callable[[], bool] | None = None

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + amount

    def counter(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._counters.get((name, tuple(sorted(labels.items()))), 0)

    def contact(self) -> None:
        self.last_contact = self._clock()

    def seconds_since_contact(self) -> float:
        last = self.last_contact
        return -1.0 if last is None else self._clock() - last

    def mark_synced(self, kind: str) -> None:
        with self._lock:
            self.synced.add(kind)

    def ready(self) -> bool:
        """Ready once every kind is synced from the API, or the store was loaded (offline)."""
        with self._lock:
            state_ok = self.loaded_from_store or (
                bool(self.expected_kinds) and self.expected_kinds <= self.synced
            )
        extra = self.extra_ready
        return state_ok and (extra is None or bool(extra()))

    def render(self, object_counts: dict[str, int], store_bytes: int) -> str:
        samples: list[tuple[str, dict[str, str], float]] = []
        for kind in sorted(set(object_counts) | self.expected_kinds):
            samples.append(("objects", {"kind": kind}, object_counts.get(kind, 0)))
        with self._lock:
            for (name, labels), value in sorted(self._counters.items()):
                samples.append((name, dict(labels), value))
            synced = set(self.synced)
        for kind in sorted(self.expected_kinds):
            samples.append(("synced", {"kind": kind}, 1 if kind in synced else 0))
        samples.append(("seconds_since_api_contact", {}, round(self.seconds_since_contact(), 3)))
        samples.append(("store_bytes", {}, store_bytes))
        samples.append(("ready", {}, 1 if self.ready() else 0))
        out: list[str] = []
        seen: set[str] = set()
        for name, labels, value in sorted(samples, key=lambda s: s[0]):
            if name not in seen:
                seen.add(name)
                mtype, text = _HELP.get(name, ("untyped", name))
                out.append(f"# HELP {PREFIX}{name} {text}")
                out.append(f"# TYPE {PREFIX}{name} {mtype}")
            lbl = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(labels.items()))
            num = int(value) if float(value).is_integer() else value
            out.append(f"{PREFIX}{name}{{{lbl}}} {num}" if lbl else f"{PREFIX}{name} {num}")
        return "\n".join(out) + "\n"


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
