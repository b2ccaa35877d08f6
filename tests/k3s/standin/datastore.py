"""TEST STAND-IN: the test API's objects kept in the site's etcd, shared by every server.

kube-apiserver keeps every object in etcd under /registry/<resource>/[<namespace>/]<name>
and serves lists and watches from a cache fed by an etcd watch, with the etcd revision as
resourceVersion (k8s.io/apiserver/pkg/storage/etcd3/store.go, storage/cacher). EtcdState does
the same for the test API: a write is put to etcd and returns once this server's watch has
applied it; every server of the site sees every write, deletions included. Objects are stored
as JSON (kube-apiserver stores protobuf), so nothing but the stand-in reads these keys.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import sys
import threading
import time
import urllib.request
from typing import Any

from tests.kubeapi.state import RESOURCES, ApiStatusError, Event, Key, Obj, State

PREFIX = "/registry/"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def storage_key(resource: str, namespace: str, name: str) -> str:
    """store.go's key layout: namespaced objects under their namespace."""
    return f"{PREFIX}{resource}/{namespace}/{name}" if namespace else f"{PREFIX}{resource}/{name}"


def _parse_key(key: str) -> Key | None:
    parts = key[len(PREFIX) :].split("/")
    if parts[0] not in RESOURCES:
        return None
    if RESOURCES[parts[0]].namespaced and len(parts) == 3:
        return (parts[0], parts[1], parts[2])
    if not RESOURCES[parts[0]].namespaced and len(parts) == 2:
        return (parts[0], "", parts[1])
    return None


class EtcdState(State):
    """State whose writes go through etcd and whose reads come from a watch-fed cache."""

    def __init__(self, gateway: str, context: ssl.SSLContext) -> None:
        super().__init__()
        self.gateway, self.context = gateway.rstrip("/"), context

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.gateway + path, data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
            return json.loads(response.read())

    def start(self) -> None:
        """Load what etcd holds, then follow it."""
        found = self._call("/v3/kv/range", {"key": _b64(PREFIX), "range_end": _b64("/registry0")})
        revision = int(found["header"]["revision"])
        with self.cond:
            for kv in found.get("kvs", []):
                self._apply_put(kv, record=False)
            self.rv = max(self.rv, revision)
        threading.Thread(target=self._follow, args=(revision + 1,), daemon=True).start()

    def _follow(self, start: int) -> None:
        while True:
            body = {"create_request": {"key": _b64(PREFIX), "range_end": _b64("/registry0"),
                                       "start_revision": str(start)}}  # fmt: skip
            request = urllib.request.Request(self.gateway + "/v3/watch",
                                             data=json.dumps(body).encode())  # fmt: skip
            try:
                with urllib.request.urlopen(request, context=self.context) as stream:
                    for line in stream:  # the gateway streams one JSON message per line
                        result = json.loads(line).get("result") or {}
                        for event in result.get("events") or []:
                            start = max(start, int(event["kv"]["mod_revision"]) + 1)
                            with self.cond:
                                if event.get("type") == "DELETE":
                                    self._apply_delete(event["kv"])
                                else:
                                    self._apply_put(event["kv"], record=True)
            except (OSError, ValueError) as err:
                print(f"standin: datastore watch: {err}", file=sys.stderr, flush=True)
                time.sleep(1)

    # Both run under self.cond.
    def _apply_put(self, kv: dict[str, Any], record: bool) -> None:
        key = _parse_key(base64.b64decode(kv["key"]).decode())
        if key is None:
            return
        revision = int(kv["mod_revision"])
        obj = json.loads(base64.b64decode(kv.get("value", "")))
        obj["metadata"]["resourceVersion"] = str(revision)
        old = self.objects.get(key)
        self.objects[key] = obj
        self.rv = max(self.rv, revision)
        if record:
            self.history.append(Event(revision, key[0], "MODIFIED" if old else "ADDED", obj))
        self.cond.notify_all()

    def _apply_delete(self, kv: dict[str, Any]) -> None:
        key = _parse_key(base64.b64decode(kv["key"]).decode())
        revision = int(kv["mod_revision"])
        old = self.objects.pop(key, None) if key else None
        self.rv = max(self.rv, revision)
        if key and old is not None:
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(revision)
            self.history.append(Event(revision, key[0], "DELETED", gone))
        self.cond.notify_all()

    def _await(self, revision: int) -> None:
        deadline = time.monotonic() + 10
        with self.cond:
            while self.rv < revision:
                if not self.cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise ApiStatusError(504, "Timeout", "the datastore did not confirm the write")

    # --- writes -------------------------------------------------------------------------
    def upsert(self, resource: str, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        with self.cond:
            key = self._key(resource, obj)
            old = self.objects.get(key)
        meta = self.stamp(resource, obj, key, old)
        meta.pop("resourceVersion", None)  # etcd's revision becomes it, set by the watch
        done = self._call("/v3/kv/put", {"key": _b64(storage_key(*key)),
                                         "value": _b64(json.dumps(obj))})  # fmt: skip
        revision = int(done["header"]["revision"])
        self._await(revision)
        with self.cond:
            return self.objects.get(key) or obj | {
                "metadata": meta | {"resourceVersion": str(revision)}
            }

    def delete(self, resource: str, namespace: str, name: str) -> Obj:
        ns = namespace if RESOURCES[resource].namespaced else ""
        with self.cond:
            old = self.objects.get((resource, ns, name))
        if old is None:
            raise ApiStatusError(404, "NotFound", f'{resource} "{name}" not found')
        done = self._call("/v3/kv/deleterange", {"key": _b64(storage_key(resource, ns, name))})
        revision = int(done["header"]["revision"])
        self._await(revision)
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(revision)
        return gone
