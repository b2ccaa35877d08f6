"""Discovery and version documents for what the local API serves, shaped as kube-apiserver's.

kubectl and client libraries read /api and /apis before any request (client-go
discovery/discovery_client.go ServerGroupsAndResources). They first ask for the aggregated
format (apidiscovery.k8s.io/v2) in the Accept header; a server that answers plain
`application/json` gets the legacy flow, which is what this module serves:
- /api: APIVersions (apiserver pkg/endpoints/discovery/legacy.go legacyRootAPIHandler);
- /apis: APIGroupList (discovery/root.go rootAPIsHandler);
- /apis/<group>: APIGroup (discovery/group.go APIGroupHandler);
- /api/v1, /apis/<group>/<version>: APIResourceList (discovery/version.go
  APIVersionHandler), with the verbs this read-only API allows (get, list, watch) and the
  short names and categories the real registries declare (pkg/registry/core/*/storage
  ShortNames, Categories), so `kubectl get po` and `kubectl get all` resolve;
- /version: version.Info (pkg/routes/version.go).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from typing import Any

    Obj = dict[str, Any]

# The Kubernetes release this API speaks for (the pinned k3s line); gitVersion stays semver
# so kubectl's version-skew check can read it.
SERVED_VERSION = ("1", "36", "v1.36.4+edgesite")
VERBS = ["get", "list", "watch"]

# plural -> (kind, group, version, namespaced, shortNames, categories)
RESOURCES: dict[str, tuple[str, str, str, bool, list[str], list[str]]] = {
    "pods": ("Pod", "", "v1", True, ["po"], ["all"]),
    "nodes": ("Node", "", "v1", False, ["no"], []),
    "configmaps": ("ConfigMap", "", "v1", True, ["cm"], []),
    "secrets": ("Secret", "", "v1", True, [], []),
    "services": ("Service", "", "v1", True, ["svc"], ["all"]),
    "endpointslices": ("EndpointSlice", "discovery.k8s.io", "v1", True, [], []),
}


def version_info() -> Obj:
    major, minor, git = SERVED_VERSION
    import sys

    return {"major": major, "minor": minor, "gitVersion": git, "gitCommit": "",
            "gitTreeState": "", "buildDate": "", "goVersion": "",
            "compiler": "", "platform": f"{sys.platform}/{_arch()}"}  # fmt: skip


def _arch() -> str:
    import os

    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _group_entry(group: str, version: str) -> Obj:
    gv = {"groupVersion": f"{group}/{version}", "version": version}
    return {"name": group, "versions": [gv], "preferredVersion": gv}


def document(path: str, served: set[str], server_address: str) -> Obj | None:
    """The discovery document at `path` listing the `served` plurals; None: not discovery."""
    parts = [p for p in path.split("/") if p]
    groups = sorted({RESOURCES[p][1] for p in served if RESOURCES[p][1]})
    if parts == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": server_address}]}  # fmt: skip
    if parts == ["apis"]:
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [_group_entry(g, "v1") for g in groups]}  # fmt: skip
    if parts == ["api", "v1"]:
        return _resource_list("", "v1", served)
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups:
        return {"kind": "APIGroup", "apiVersion": "v1"} | _group_entry(parts[1], "v1")
    if len(parts) == 3 and parts[0] == "apis" and parts[1] in groups and parts[2] == "v1":
        return _resource_list(parts[1], "v1", served)
    return None


def _resource_list(group: str, version: str, served: set[str]) -> Obj:
    resources = []
    for plural, (kind, g, v, namespaced, short, categories) in RESOURCES.items():
        if plural not in served or (g, v) != (group, version):
            continue
        item: Obj = {"name": plural, "singularName": kind.lower(), "namespaced": namespaced,
                     "kind": kind, "verbs": VERBS}  # fmt: skip
        if short:
            item["shortNames"] = short
        if categories:
            item["categories"] = categories
        resources.append(item)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}  # fmt: skip
