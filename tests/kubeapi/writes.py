"""Create, update, patch, delete and the pods/eviction subresource, as kube-apiserver does them.

Each behaviour names the Kubernetes source it follows:
- create: 409 AlreadyExists for an existing name (staging/src/k8s.io/apiserver/pkg/registry/
  generic/registry/store.go Create; apimachinery/pkg/api/errors NewAlreadyExists);
- update (PUT): a stale metadata.resourceVersion is a 409 Conflict, an empty one an
  unconditional update (store.go Update, storage/errors.go NewConflict message);
- patch: application/merge-patch+json (RFC 7386) and application/strategic-merge-patch+json
  (endpoints/handlers/patch.go). Strategic merge differs from JSON merge only for lists with a
  patchMergeKey and for `$` directives: this double replaces lists and ignores
  `$setElementOrder/` (ordering only); any other directive is refused with 415 rather than
  applied wrongly. JSON patch and server-side apply are refused with 415 (not modelled);
- delete: the object is gone at once (no finalizers, no graceful deletion: as if the kubelet
  confirmed at once);
- pods/eviction: pkg/registry/core/pod/storage/eviction.go EvictionREST.Create: a terminal or
  pending pod is deleted without a budget check (canIgnorePDB); more than one matching
  PodDisruptionBudget is a 500; a budget whose status is not observed yet, or with
  disruptionsAllowed 0, refuses with 429 TooManyRequests and a DisruptionBudget cause;
  otherwise disruptionsAllowed is decremented and the pod deleted (201 Success).
Only system:masters may write (the test API has no RBAC beyond its node rules).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.kubeapi.selectors import label_selector_matches
from tests.kubeapi.state import RESOURCES, ApiStatusError, Resource, State

Obj = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


def qualified(res: Resource) -> str:
    """The resource as apimachinery's errors name it: `nodes`, `poddisruptionbudgets.policy`."""
    group = res.api_version.rpartition("/")[0]
    return f"{res.plural}.{group}" if group else res.plural


def not_found(res: Resource, name: str) -> ApiStatusError:
    return ApiStatusError(404, "NotFound", f'{qualified(res)} "{name}" not found')


def _check_body(res: Resource, ns: str | None, name: str | None, body: Obj) -> Obj:
    if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
        raise ApiStatusError(400, "BadRequest", "the request body is not a Kubernetes object")
    meta = body["metadata"]
    if name is not None and meta.get("name") not in (None, name):
        raise ApiStatusError(
            400, "BadRequest", f"the name of the object ({meta.get('name')}) does not match "
            f"the name on the URL ({name})",
        )  # fmt: skip
    if res.namespaced and ns is not None and meta.get("namespace") not in (None, "", ns):
        raise ApiStatusError(
            400, "BadRequest", "the namespace of the provided object does not match the "
            "namespace sent on the request",
        )  # fmt: skip
    body = copy.deepcopy(body)
    if name is not None:
        body["metadata"]["name"] = name
    if not body["metadata"].get("name"):
        raise ApiStatusError(
            422, "Invalid", f"{res.kind} is invalid: metadata.name: Required value"
        )
    if res.namespaced:
        body["metadata"]["namespace"] = ns or body["metadata"].get("namespace") or "default"
    return body


def create(state: State, res: Resource, ns: str | None, body: Obj) -> Obj:
    obj = _check_body(res, ns, None, body)
    with state.cond:
        if _current(state, res, obj) is not None:
            raise ApiStatusError(
                409, "AlreadyExists", f'{qualified(res)} "{obj["metadata"]["name"]}" already exists'
            )
        obj["metadata"].pop("resourceVersion", None)
        return state.upsert(res.plural, obj)


def update(state: State, res: Resource, ns: str | None, name: str, body: Obj) -> Obj:
    obj = _check_body(res, ns, name, body)
    with state.cond:
        current = _current(state, res, obj)
        if current is None:
            raise not_found(res, name)
        wanted_rv = obj["metadata"].get("resourceVersion")
        _require_version(res, name, current, wanted_rv)
        return state.upsert(res.plural, obj)


def patch(
    state: State, res: Resource, ns: str | None, name: str, content_type: str, raw: bytes
) -> Obj:
    kind = content_type.split(";")[0].strip()
    if kind not in (MERGE_PATCH, STRATEGIC_PATCH):
        raise ApiStatusError(
            415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
            f'accepted media types by this test API: {MERGE_PATCH}, {STRATEGIC_PATCH} '
            f'("{kind}" is not modelled)',
        )  # fmt: skip
    try:
        doc = json.loads(raw or b"null")
    except ValueError as err:
        raise ApiStatusError(400, "BadRequest", f"error decoding patch: {err}") from err
    if not isinstance(doc, dict):
        raise ApiStatusError(400, "BadRequest", "a merge patch must be a JSON object")
    if kind == STRATEGIC_PATCH:
        doc = _without_ordering_directives(doc)
    with state.cond:
        if not _exists(state, res, ns, name):
            raise not_found(res, name)
        current = state.get(res.plural, ns or "", name)
        merged = merge_patch(current, doc)
        wanted_rv = (doc.get("metadata") or {}).get("resourceVersion")
        _require_version(res, name, current, wanted_rv)
        merged["metadata"]["name"] = name
        return state.upsert(res.plural, merged)


def _require_version(res: Resource, name: str, current: Obj, wanted_rv: str | None) -> None:
    """A stale resourceVersion precondition is a 409 Conflict (storage/errors.go NewConflict)."""
    if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
        raise ApiStatusError(
            409, "Conflict", f'Operation cannot be fulfilled on {qualified(res)} "{name}": '
            "the object has been modified; please apply your changes to the latest version "
            "and try again",
        )  # fmt: skip


def delete(state: State, res: Resource, ns: str | None, name: str) -> Obj:
    if not _exists(state, res, ns, name):
        raise not_found(res, name)
    return state.delete(res.plural, ns or "", name)


def evict(state: State, ns: str, name: str, body: Obj) -> Obj:
    pods = RESOURCES["pods"]
    if (body or {}).get("metadata", {}).get("name") not in (None, name):
        raise ApiStatusError(
            400, "BadRequest", "name in URL does not match name in Eviction object"
        )
    with state.cond:
        if not _exists(state, pods, ns, name):
            raise not_found(pods, name)
        pod = state.get("pods", ns, name)
        phase = (pod.get("status") or {}).get("phase", "Running")
        if phase not in ("Succeeded", "Failed", "Pending"):
            _spend_budget(state, ns, pod)
        state.delete("pods", ns, name)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}


def _spend_budget(state: State, ns: str, pod: Obj) -> None:
    labels = pod["metadata"].get("labels") or {}
    budgets = [
        b for b in state.items("poddisruptionbudgets", ns)
        if label_selector_matches((b.get("spec") or {}).get("selector"), labels)
    ]  # fmt: skip
    if not budgets:
        return
    if len(budgets) > 1:
        raise ApiStatusError(
            500, "InternalError", "This pod has more than one PodDisruptionBudget, which the "
            "eviction subresource does not support.",
        )  # fmt: skip
    budget = copy.deepcopy(budgets[0])
    status = budget.setdefault("status", {})
    bname = budget["metadata"]["name"]
    if status.get("observedGeneration", 0) < budget["metadata"].get("generation", 1):
        raise _too_many(f"The disruption budget {bname} is still being processed by the server.")
    allowed = int(status.get("disruptionsAllowed", 0))
    if allowed < 0:
        raise ApiStatusError(403, "Forbidden", "pdb disruptions allowed is negative")
    if allowed == 0:
        raise _too_many(
            f"The disruption budget {bname} needs {status.get('desiredHealthy', 0)} healthy "
            f"pods and has {status.get('currentHealthy', 0)} currently"
        )
    status["disruptionsAllowed"] = allowed - 1
    state.upsert("poddisruptionbudgets", budget)


def _too_many(cause: str) -> ApiStatusError:
    err = ApiStatusError(
        429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget."
    )
    err.details = {"causes": [{"reason": "DisruptionBudget", "message": cause}]}
    return err


def merge_patch(target: Any, patch_doc: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch_doc, dict):
        return copy.deepcopy(patch_doc)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch_doc.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _without_ordering_directives(doc: Any) -> Any:
    if not isinstance(doc, dict):
        return doc
    out = {}
    for key, value in doc.items():
        if key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$"):
            raise ApiStatusError(
                415, "UnsupportedMediaType", f"strategic merge directive {key} is not modelled "
                "by the test API",
            )  # fmt: skip
        out[key] = _without_ordering_directives(value)
    return out


def _current(state: State, res: Resource, obj: Obj) -> Obj | None:
    meta = obj["metadata"]
    ns = meta.get("namespace", "") if res.namespaced else ""
    return state.objects.get((res.plural, ns, meta["name"]))


def _exists(state: State, res: Resource, ns: str | None, name: str) -> bool:
    key = (res.plural, (ns or "") if res.namespaced else "", name)
    return key in state.objects
