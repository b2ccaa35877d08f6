"""Node labels and taints kept as the inventory says after registration (issue 16, defect 6).

k3s gives node-taint to the kubelet only when the Node is created, never removes a node-label,
and the kubelet may not set role labels on itself (see module_utils/node_metadata.py). The
filter's patches are applied here with the REAL kubectl against the test API, as the role
applies them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ansible_collections.edgesite.fleet.plugins.module_utils.node_metadata import (
    MANAGED_LABELS,
    MANAGED_TAINTS,
    kubelet_node_labels,
    node_metadata_patch,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.kubeapi.kubectl import serve


def node(labels=None, taints=None, annotations=None, rv="7"):
    meta = {"name": "w1", "resourceVersion": rv, "labels": labels or {}}
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": {"taints": taints} if taints else {}}


def test_role_labels_are_kept_from_the_kubelet_the_rest_register_with_it():
    wanted = {"node-role.kubernetes.io/worker": "", "example.com/zone": "shelf-2",
              "topology.kubernetes.io/zone": "z1"}  # fmt: skip
    assert kubelet_node_labels(wanted) == [
        "example.com/zone=shelf-2",
        "topology.kubernetes.io/zone=z1",
    ]


def test_a_node_that_carries_everything_needs_no_patch():
    current = node(
        labels={"kubernetes.io/hostname": "w1", "a": "1"},
        taints=[{"key": "d", "value": "cam", "effect": "NoSchedule", "timeAdded": "x"}],
        annotations={MANAGED_LABELS: "a", MANAGED_TAINTS: "d:NoSchedule"},
    )
    assert node_metadata_patch(current, {"a": "1"}, ["d=cam:NoSchedule"]) == {}


def test_changed_and_removed_labels_and_taints_others_left_alone():
    current = node(
        labels={"kubernetes.io/hostname": "w1", "a": "1", "gone": "x", "theirs": "y"},
        taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
                {"key": "d", "value": "cam", "effect": "NoSchedule"},
                {"key": "old", "effect": "NoSchedule"}],
        annotations={MANAGED_LABELS: "a,gone", MANAGED_TAINTS: "d:NoSchedule,old:NoSchedule"},
    )  # fmt: skip
    patch = node_metadata_patch(
        current,
        {"a": "2", "node-role.kubernetes.io/worker": ""},
        ["d=nvr:NoSchedule", "new:NoExecute"],
    )
    assert patch["metadata"]["resourceVersion"] == "7"
    assert patch["metadata"]["labels"] == {"a": "2", "node-role.kubernetes.io/worker": "",
                                           "gone": None}  # fmt: skip
    assert patch["spec"]["taints"] == [
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
        {"key": "d", "value": "nvr", "effect": "NoSchedule"},
        {"key": "new", "effect": "NoExecute"},
    ]
    assert patch["metadata"]["annotations"] == {
        MANAGED_LABELS: "a,node-role.kubernetes.io/worker",
        MANAGED_TAINTS: "d:NoSchedule,new:NoExecute",
    }


def test_emptying_the_inventory_removes_only_what_edgesite_set():
    current = node(
        labels={"a": "1", "theirs": "y"},
        taints=[{"key": "d", "effect": "NoSchedule"}],
        annotations={MANAGED_LABELS: "a", MANAGED_TAINTS: "d:NoSchedule"},
    )
    patch = node_metadata_patch(current, {}, [])
    assert patch["metadata"]["labels"] == {"a": None}
    assert patch["spec"] == {"taints": None}
    assert patch["metadata"]["annotations"] == {MANAGED_LABELS: None, MANAGED_TAINTS: None}


@pytest.fixture
def api_and_kubectl(tmp_path):
    api, kubectl = serve(tmp_path)
    yield api, kubectl
    api.stop()


def reconcile(kubectl, labels, taints, *extra):
    """What roles/edgesite/tasks/node_metadata.yml does: read, compute, patch."""
    read = json.loads(kubectl("get", "node", "w1", "-o", "json").stdout)
    patch = node_metadata_patch(read, labels, taints)
    if patch:
        done = kubectl("patch", "node", "w1", "--type", "merge", "-p", json.dumps(patch), *extra)
        assert done.returncode == 0, done.stderr
    return patch


def test_real_kubectl_applies_the_patch_and_a_second_pass_finds_nothing(api_and_kubectl):
    api, kubectl = api_and_kubectl
    # As k3s registered it: node-label and node-taint from the first inventory.
    api.upsert("nodes", {"metadata": {"name": "w1", "labels": {"a": "1"}},
                         "spec": {"taints": [{"key": "d", "effect": "NoSchedule"}]}})  # fmt: skip
    assert reconcile(kubectl, {"a": "1", "node-role.kubernetes.io/worker": ""},
                     ["d:NoSchedule"])  # fmt: skip
    assert reconcile(kubectl, {"a": "1", "node-role.kubernetes.io/worker": ""},
                     ["d:NoSchedule"]) == {}  # fmt: skip
    # The inventory changes after registration: k3s alone would never bring this to the Node.
    assert reconcile(kubectl, {"b": "2"}, ["e=x:NoExecute"])
    found = api.state.get("nodes", "", "w1")
    assert found["metadata"]["labels"] == {"b": "2"}
    assert found["spec"]["taints"] == [{"key": "e", "value": "x", "effect": "NoExecute"}]
    assert reconcile(kubectl, {"b": "2"}, ["e=x:NoExecute"]) == {}


def test_check_mode_dry_run_changes_nothing(api_and_kubectl):
    api, kubectl = api_and_kubectl
    api.upsert("nodes", {"metadata": {"name": "w1", "labels": {}}, "spec": {}})
    assert reconcile(kubectl, {"a": "1"}, ["d:NoSchedule"], "--dry-run=client")
    assert api.state.get("nodes", "", "w1")["metadata"].get("labels") in ({}, None)


def test_a_node_changed_after_the_read_is_a_conflict_not_a_lost_taint(api_and_kubectl):
    api, kubectl = api_and_kubectl
    api.upsert("nodes", {"metadata": {"name": "w1", "labels": {}}, "spec": {}})
    read = json.loads(kubectl("get", "node", "w1", "-o", "json").stdout)
    # Meanwhile the node controller taints the node.
    api.upsert("nodes", api.state.get("nodes", "", "w1") | {"spec": {"taints": [
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}})  # fmt: skip
    patch = node_metadata_patch(read, {}, ["d:NoSchedule"])
    done = kubectl("patch", "node", "w1", "--type", "merge", "-p", json.dumps(patch))
    assert done.returncode != 0 and "the object has been modified" in done.stderr
    assert api.state.get("nodes", "", "w1")["spec"]["taints"][0]["key"] == (
        "node.kubernetes.io/unreachable")  # fmt: skip
