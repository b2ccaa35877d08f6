"""Discovery documents, shaped as kube-apiserver serves them, so real kubectl finds resources.

kubectl (client-go's discovery client) first asks /api and /apis for the aggregated
discovery format (apidiscovery.k8s.io/v2); a server that answers plain `application/json`
gets the legacy flow: APIVersions at /api, APIGroupList at /apis, then an APIResourceList
per group version (k8s.io/client-go/discovery/discovery_client.go, ServerGroupsAndResources
and fetchGroupVersionResources). This double serves the legacy shapes only, like an
aggregator-less kube-apiserver before 1.26 (staging/src/k8s.io/apiserver/pkg/endpoints/
discovery/{legacy,root,group,version}.go).

`kubectl drain` looks for `pods/eviction` with kind Eviction in group `policy` here before it
evicts (k8s.io/kubectl/pkg/drain/drain.go CheckEvictionSupport); without it, it would delete.
"""

from __future__ import annotations

from typing import Any

from tests.kubeapi.state import RESOURCES, Resource

Obj = dict[str, Any]

# Verbs per resource as kube-apiserver lists them for a full REST storage.
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_SHORT_NAMES = {
    "pods": ["po"], "nodes": ["no"], "configmaps": ["cm"], "services": ["svc"],
    "namespaces": ["ns"], "daemonsets": ["ds"], "poddisruptionbudgets": ["pdb"],
}  # fmt: skip
# Subresources this double serves: (parent, subresource, group, version, kind, verbs).
_SUBRESOURCES = [("pods", "eviction", "policy", "v1", "Eviction", ["create"])]


def _split(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def group_versions() -> dict[str, list[Resource]]:
    """apiVersion -> its resources, in a stable order ("v1" first)."""
    out: dict[str, list[Resource]] = {}
    for res in RESOURCES.values():
        out.setdefault(res.api_version, []).append(res)
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "v1", kv[0])))


def document(path: str) -> Obj | None:
    """The discovery document at `path`, or None when `path` is not a discovery path."""
    parts = [p for p in path.split("/") if p]
    if parts == ["api"]:
        # legacy.go: APIVersions with the server's address for every client CIDR.
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": "127.0.0.1:6443"}]}  # fmt: skip
    if parts == ["apis"]:
        groups = [_group(gv) for gv in group_versions() if gv != "v1"]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    if parts == ["api", "v1"]:
        return _resource_list("v1")
    if len(parts) == 2 and parts[0] == "apis":
        for gv in group_versions():
            if _split(gv)[0] == parts[1]:
                return {"kind": "APIGroup", "apiVersion": "v1"} | _group(gv)
        return None
    if len(parts) == 3 and parts[0] == "apis":
        gv = f"{parts[1]}/{parts[2]}"
        if gv in group_versions() or any(s[2] == parts[1] for s in _SUBRESOURCES):
            return _resource_list(gv)
    return None


def _group(gv: str) -> Obj:
    group, version = _split(gv)
    entry = {"groupVersion": gv, "version": version}
    return {"name": group, "versions": [entry], "preferredVersion": entry}


def _resource_list(gv: str) -> Obj:
    resources = []
    for res in group_versions().get(gv, []):
        item: Obj = {"name": res.plural, "singularName": res.kind.lower(),
                     "namespaced": res.namespaced, "kind": res.kind, "verbs": _VERBS}  # fmt: skip
        if res.plural in _SHORT_NAMES:
            item["shortNames"] = _SHORT_NAMES[res.plural]
        resources.append(item)
        for parent, sub, group, version, kind, verbs in _SUBRESOURCES:
            if parent == res.plural:
                # version.go: a subresource of another group names its group and version.
                resources.append({"name": f"{parent}/{sub}", "singularName": "",
                                  "namespaced": res.namespaced, "group": group,
                                  "version": version, "kind": kind, "verbs": verbs})  # fmt: skip
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}  # fmt: skip
