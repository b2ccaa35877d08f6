# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory's node labels and taints, kept true on the Node after registration.

k3s hands node-label to the kubelet's --node-labels and node-taint to --register-with-taints.
What that leaves undone, read in k3s's and Kubernetes' source:

* taints are applied only when the kubelet creates its Node (pkg/kubelet/kubelet_node_status.go
  initialNode); a taint changed or removed in the inventory later never reaches the Node;
* on each start k3s adds or overwrites its node-label values on the Node (k3s
  pkg/agent/run.go configureNode / updateMutableLabels) but never removes a label: one taken
  out of the inventory stays;
* the kubelet refuses to start with labels in kubernetes.io / k8s.io it may not set on itself
  (node-role.kubernetes.io among them), so a role label can only be set through the API.

So EdgeSite gives the kubelet only the labels it accepts and reconciles the whole set through
the API: one JSON merge patch per node, guarded by the Node's resourceVersion. What EdgeSite
set is recorded in two annotations, so a label or taint removed from the inventory is removed
from the Node while labels and taints set by others (k3s, the node controller, a cordon,
an operator) are left alone.
"""

from __future__ import annotations

from ansible_collections.edgesite.fleet.plugins.module_utils.k3s_inputs import (
    is_kubelet_label,
    is_kubernetes_label,
)

MANAGED_LABELS = "edgesite.io/managed-labels"
MANAGED_TAINTS = "edgesite.io/managed-taints"


def kubelet_node_labels(labels):
    """k3s node-label entries (key=value) for the labels the kubelet may register with.

    cmd/kubelet/app/options/options.go ValidateKubeletFlags refuses kubernetes.io / k8s.io keys
    that IsKubeletLabel does not allow; preflight has refused every such key except role
    labels, which go through the API instead.
    """
    return [
        f"{key}={value}"
        for key, value in sorted((str(k), str(v)) for k, v in (labels or {}).items())
        if not is_kubernetes_label(key) or is_kubelet_label(key)
    ]


def parse_taints(taints):
    """k3s node-taint entries (urfave/cli splits each at commas) as Node spec taints."""
    parsed = []
    for entry in taints or []:
        for spec in str(entry).split(","):
            key_value, _colon, effect = spec.partition(":")
            key, _eq, value = key_value.partition("=")
            taint = {"key": key, "effect": effect}
            if value:
                taint["value"] = value
            parsed.append(taint)
    return parsed


def _taint_id(taint):
    return f"{taint.get('key', '')}:{taint.get('effect', '')}"


def _managed(annotations, name):
    return {item for item in (annotations.get(name) or "").split(",") if item}


def node_metadata_patch(node, labels, taints):
    """A JSON merge patch that makes the Node carry the inventory's labels and taints.

    Empty when the Node already does. The patch carries the Node's resourceVersion, so the API
    server refuses it with a Conflict if the Node changed since it was read (the optimistic
    concurrency of apiserver's registry store.go Update): taints are one list in the Node's
    spec, and a patch built from a stale read would drop a taint set meanwhile.
    """
    metadata = node.get("metadata") or {}
    current_labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    wanted_labels = {str(k): str(v) for k, v in (labels or {}).items()}
    label_patch = {k: v for k, v in wanted_labels.items() if current_labels.get(k) != v}
    for key in _managed(annotations, MANAGED_LABELS) - set(wanted_labels):
        if key in current_labels:
            label_patch[key] = None

    current_taints = (node.get("spec") or {}).get("taints") or []
    wanted = {_taint_id(t): t for t in parse_taints(taints)}
    dropped = _managed(annotations, MANAGED_TAINTS) - set(wanted)
    new_taints = []
    for taint in current_taints:
        taint_id = _taint_id(taint)
        if taint_id in dropped:
            continue
        if taint_id in wanted:
            # Kept as found when only timeAdded differs: no change to report.
            want = wanted.pop(taint_id)
            if taint.get("value", "") != want.get("value", ""):
                taint = {**taint, "value": want.get("value", "")}
                if not taint["value"]:
                    del taint["value"]
        new_taints.append(taint)
    new_taints.extend(wanted.values())

    managed = {
        MANAGED_LABELS: ",".join(sorted(wanted_labels)) or None,
        MANAGED_TAINTS: ",".join(sorted(_taint_id(t) for t in parse_taints(taints))) or None,
    }
    annotation_patch = {k: v for k, v in managed.items() if annotations.get(k) != v}

    patch_metadata = {}
    if label_patch:
        patch_metadata["labels"] = label_patch
    if annotation_patch:
        patch_metadata["annotations"] = annotation_patch
    patch = {}
    if new_taints != current_taints:
        patch["spec"] = {"taints": new_taints or None}
    if patch_metadata:
        patch["metadata"] = patch_metadata
    if patch:
        patch.setdefault("metadata", {})["resourceVersion"] = metadata.get("resourceVersion")
    return patch
