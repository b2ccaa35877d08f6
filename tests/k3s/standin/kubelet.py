"""TEST STAND-IN: what the kubelet and k3s do to a node's own Node object (not a kubelet).

Modelled, each from the source named:

* the kubelet refuses to start with --node-labels in the kubernetes.io / k8s.io namespaces
  that it may not set on itself (cmd/kubelet/app/options/options.go ValidateKubeletFlags with
  staging/src/k8s.io/kubelet/pkg/apis/well_known_labels.go IsKubeletLabel);
* a new Node is created with the default labels, the --node-labels and the
  --register-with-taints (pkg/kubelet/kubelet_node_status.go initialNode); k3s passes its
  node-label and node-taint there (k3s pkg/daemons/agent/agent.go);
* an existing Node keeps its spec (taints, unschedulable) and its labels: the kubelet only
  reasserts its default labels (kubelet_node_status.go updateDefaultLabels), and k3s adds or
  overwrites its node-label values, never removing one (k3s pkg/agent/run.go configureNode,
  updateMutableLabels).

Deliberately written apart from EdgeSite's own validation (collections/.../k3s_inputs.py): a
double that shared the code under test could not catch its mistakes.
"""

from __future__ import annotations

import copy
from typing import Any

# well_known_labels.go kubeletLabels and kubeletLabelNamespaces.
_KUBELET_LABELS = {
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
}
_KUBELET_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _namespace(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key else ""


def _restricted(key: str) -> bool:
    """options.go isKubernetesLabel and not IsKubeletLabel."""
    ns = _namespace(key)
    kubernetes = ns in ("kubernetes.io", "k8s.io") or ns.endswith((".kubernetes.io", ".k8s.io"))
    allowed = key in _KUBELET_LABELS or any(
        ns == a or ns.endswith("." + a) for a in _KUBELET_NAMESPACES
    )
    return kubernetes and not allowed


def node_labels(config: dict[str, Any]) -> dict[str, str]:
    """k3s node-label: a string slice (each entry split at commas), key=value each."""
    entries = config.get("node-label") or []
    labels: dict[str, str] = {}
    for entry in [entries] if isinstance(entries, str) else entries:
        for item in str(entry).split(","):
            key, _eq, value = item.partition("=")
            labels[key] = value
    return labels


def node_taints(config: dict[str, Any]) -> list[dict[str, str]]:
    """k3s node-taint: key[=value]:Effect entries (pkg/util/taints parseTaint)."""
    entries = config.get("node-taint") or []
    taints = []
    for entry in [entries] if isinstance(entries, str) else entries:
        for item in str(entry).split(","):
            key_value, _colon, effect = item.partition(":")
            key, _eq, value = key_value.partition("=")
            taints.append({"key": key, "effect": effect} | ({"value": value} if value else {}))
    return taints


def refusal(labels: dict[str, str]) -> str | None:
    """The kubelet's error for labels it may not set on itself, or None."""
    bad = sorted(k for k in labels if _restricted(k))
    if not bad:
        return None
    return (
        "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: "
        f"[{' '.join(bad)}]\n--node-labels in the 'kubernetes.io' namespace must begin with an "
        f"allowed prefix ({', '.join(_KUBELET_NAMESPACES)}) or be in the specifically allowed "
        f"set ({', '.join(sorted(_KUBELET_LABELS))})"
    )


def default_labels(name: str, role: str) -> dict[str, str]:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    if role == "server":
        # k3s's server sets its role labels itself (pkg/server/server.go
        # setNodeLabelsAndAnnotations).
        labels["node-role.kubernetes.io/control-plane"] = "true"
    return labels


def node_object(
    name: str,
    ip: str,
    role: str,
    version: str,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A new Node as the kubelet registers it (initialNode), Ready."""
    addresses = [{"type": "Hostname", "address": name}]
    if ip:
        addresses.insert(0, {"type": "InternalIP", "address": ip})
    spec: dict[str, Any] = {"taints": list(taints)} if taints else {}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {**(labels or {}), **default_labels(name, role)}},
        "spec": spec,
        "status": {
            "addresses": addresses,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "nodeInfo": {"kubeletVersion": version},
        },
    }


def reregistered(existing: dict[str, Any], fresh: dict[str, Any], labels: dict[str, str]):
    """An existing Node after a restart: spec and labels kept, defaults and node-label merged."""
    node = copy.deepcopy(existing)
    node["status"] = fresh["status"]
    merged = dict(node["metadata"].get("labels") or {})
    merged.update(default_labels(fresh["metadata"]["name"], _role_of(fresh)))
    merged.update(labels)
    node["metadata"]["labels"] = merged
    return node


def _role_of(node: dict[str, Any]) -> str:
    labels = node["metadata"].get("labels") or {}
    return "server" if "node-role.kubernetes.io/control-plane" in labels else "agent"
