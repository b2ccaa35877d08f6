"""The object database of the test API server: objects, a global resourceVersion, an event
history that can be compacted, and continue tokens that can expire.

Objects are never mutated once stored (updates store a new dict), so list snapshots and
watch events can share them without copying.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (resource, namespace, name)


@dataclass(frozen=True)
class Resource:
    plural: str
    kind: str
    api_version: str
    namespaced: bool

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"


RESOURCES: dict[str, Resource] = {
    r.plural: r
    for r in (
        Resource("pods", "Pod", "v1", True),
        Resource("nodes", "Node", "v1", False),
        Resource("configmaps", "ConfigMap", "v1", True),
        Resource("secrets", "Secret", "v1", True),
        Resource("services", "Service", "v1", True),
        Resource("endpointslices", "EndpointSlice", "discovery.k8s.io/v1", True),
        # For kubectl's drain: the namespaces of pods, the DaemonSets it skips pods of, and
        # the PodDisruptionBudgets evictions are checked against.
        Resource("namespaces", "Namespace", "v1", False),
        Resource("daemonsets", "DaemonSet", "apps/v1", True),
        Resource("poddisruptionbudgets", "PodDisruptionBudget", "policy/v1", True),
    )
}
BY_KIND = {r.kind: r for r in RESOURCES.values()}


class ApiStatusError(Exception):
    """Becomes a Kubernetes Status object in the HTTP response."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details: Obj | None = None

    def status(self) -> Obj:
        out = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            out["details"] = self.details
        return out


@dataclass
class Event:
    rv: int
    resource: str
    type: str
    obj: Obj


@dataclass
class _Token:
    rv: int
    items: list[Obj]
    created: float


@dataclass
class State:
    """All mutations take the condition's lock and wake watchers."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    objects: dict[Key, Obj] = field(default_factory=dict)
    history: list[Event] = field(default_factory=list)
    rv: int = 1
    compacted_rv: int = 0
    tokens: dict[str, _Token] = field(default_factory=dict)
    token_ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    # --- mutations ---------------------------------------------------------------
    def _key(self, resource: str, obj: Obj) -> Key:
        meta = obj.get("metadata", {})
        ns = meta.get("namespace", "default") if RESOURCES[resource].namespaced else ""
        return (resource, ns, meta["name"])

    def _record(self, resource: str, etype: str, obj: Obj) -> None:
        self.history.append(Event(self.rv, resource, etype, obj))
        self.cond.notify_all()

    @staticmethod
    def stamp(resource: str, obj: Obj, key: Key, old: Obj | None) -> Obj:
        """What the server sets on a stored object: namespace, uid (kept across updates),
        creationTimestamp, kind and apiVersion. The resourceVersion is the store's to set."""
        res = RESOURCES[resource]
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            meta["namespace"] = key[1]
        meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
        meta.setdefault("creationTimestamp", "2025-01-01T00:00:00Z")
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        return meta

    def upsert(self, resource: str, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        with self.cond:
            key = self._key(resource, obj)
            old = self.objects.get(key)
            self.rv += 1
            self.stamp(resource, obj, key, old)["resourceVersion"] = str(self.rv)
            self.objects[key] = obj
            self._record(resource, "MODIFIED" if old else "ADDED", obj)
            return obj

    def delete(self, resource: str, namespace: str, name: str) -> Obj:
        ns = namespace if RESOURCES[resource].namespaced else ""
        with self.cond:
            old = self.objects.pop((resource, ns, name), None)
            if old is None:
                raise ApiStatusError(404, "NotFound", f'{resource} "{name}" not found')
            self.rv += 1
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self._record(resource, "DELETED", gone)
            return gone

    def compact(self, up_to: int | None = None) -> int:
        """Forget history up to `up_to` (default: everything): older watches get 410."""
        with self.cond:
            self.compacted_rv = self.rv if up_to is None else min(up_to, self.rv)
            self.history = [e for e in self.history if e.rv > self.compacted_rv]
            return self.compacted_rv

    def expire_tokens(self) -> None:
        with self.cond:
            self.tokens.clear()

    # --- reads -------------------------------------------------------------------
    def items(self, resource: str, namespace: str | None) -> list[Obj]:
        with self.cond:
            return [
                o
                for (r, ns, _), o in sorted(self.objects.items())
                if r == resource and (namespace is None or ns == namespace)
            ]

    def get(self, resource: str, namespace: str, name: str) -> Obj:
        ns = namespace if RESOURCES[resource].namespaced else ""
        with self.cond:
            obj = self.objects.get((resource, ns, name))
        if obj is None:
            raise ApiStatusError(404, "NotFound", f'{resource} "{name}" not found')
        return obj

    def new_token(self, rv: int, rest: list[Obj]) -> str:
        with self.cond:
            tid = str(next(self.token_ids))
            self.tokens[tid] = _Token(rv, rest, time.monotonic())
            while len(self.tokens) > 256:  # bounded: oldest tokens expire first
                self.tokens.pop(next(iter(self.tokens)))
        raw = json.dumps({"rv": rv, "id": tid}).encode()
        return base64.urlsafe_b64encode(raw).decode()

    def take_token(self, token: str) -> _Token:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            rv, tid = int(data["rv"]), str(data["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiStatusError(400, "BadRequest", "invalid continue token") from exc
        with self.cond:
            tok = self.tokens.pop(tid, None)
            if tok is None or rv <= self.compacted_rv:
                raise ApiStatusError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.",
                )
            return tok

    def snapshot(self) -> dict[str, Any]:
        with self.cond:
            return {
                "resourceVersion": self.rv,
                "compactedResourceVersion": self.compacted_rv,
                "objects": {
                    r: sorted(f"{ns}/{n}" if ns else n for (rr, ns, n) in self.objects if rr == r)
                    for r in RESOURCES
                },
            }
