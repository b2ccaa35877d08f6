"""Day-2 playbooks on podman test hosts: rotate_certs, rotate_token, remove_node, add_node.

One master (SQLite) and one worker with the real edge agent. The hosts' `k3s` is the TEST
STAND-IN (tests/k3s/standin): it serves the test Kubernetes API on the master and records the
k3s commands it is given; no Kubernetes runs. What is checked is what the playbooks are
responsible for: order, token handling, what is left on a removed node, and that a converged
site stays converged. Tests in this module run in order against one set of hosts.
"""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from k3s.site_hosts import changed_tasks, recap, sh, stand_up, standin_records, tear_down

VERSION = "v1.36.4+k3s1"
NEW_TOKEN = "day2-rotated-token-8Rk2Wq7Xz4"

pytestmark = [pytest.mark.podman, pytest.mark.root]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("day2")
    site = stand_up(
        "day2", 1, 1, tmp, VERSION,
        edgesite_site="day2-site", edgesite_datastore="sqlite",
        k3s_server_kubeconfig_dir=str(tmp / "kube"),
        k3s_server_health_delay=1, k3s_agent_health_delay=1,
    )  # fmt: skip
    yield site
    tear_down(site)


def master(site) -> str:
    return site.masters[0]


def worker(site) -> str:
    return site.workers[0]


def node_ready(site, node: str) -> str:
    """The Node's Ready status as real kubectl prints it, or kubectl's error."""
    jsonpath = 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'
    result = sh(
        master(site),
        f"/usr/local/bin/k3s kubectl get node {node} -o {shlex.quote(jsonpath)}",
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else result.stderr.strip()


def admin(host: str, method: str, path: str, body: dict | None = None) -> None:
    """A test control on the master's test API (its loopback admin interface)."""
    script = (
        "import json, sys, urllib.request as u; "
        "r = u.Request('http://127.0.0.1:6080' + sys.argv[1], method=sys.argv[2], "
        "data=sys.argv[3].encode() or None, headers={'Content-Type': 'application/json'}); "
        "u.urlopen(r, timeout=5).read()"
    )
    data = json.dumps(body) if body is not None else ""
    args = " ".join(shlex.quote(a) for a in (script, path, method, data))
    sh(host, f"python3 -c {args}")


def pod(name: str, node: str, labels: dict, owner: str = "") -> dict:
    meta: dict = {"name": name, "namespace": "default", "labels": labels}
    if owner:
        ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "controller": True}
        meta["ownerReferences"] = [ref | {"uid": f"uid-{owner}"}]
    return {"metadata": meta, "spec": {"nodeName": node}, "status": {"phase": "Running"}}


def budget(allowed: int) -> dict:
    return {
        "metadata": {"name": "web", "namespace": "default", "generation": 1},
        "spec": {"selector": {"matchLabels": {"app": "web"}}},
        "status": {"observedGeneration": 1, "disruptionsAllowed": allowed,
                   "desiredHealthy": 1, "currentHealthy": 1},
    }  # fmt: skip


def test_site_converges_with_the_edge_agent(site, run_playbook):
    result = run_playbook("site.yml", site.inventory)
    assert result.rc == 0, result.output[-5000:]
    assert node_ready(site, worker(site)) == "True"
    assert sh(worker(site), "systemctl is-active edgesite-agent").stdout.strip() == "active"


def test_rotate_certs_servers_first_and_restarts_each(site, run_playbook):
    before = {h: len(standin_records(h, "starts.jsonl")) for h in (master(site), worker(site))}
    result = run_playbook("playbooks/rotate_certs.yml", site.inventory)
    assert result.rc == 0, result.output[-5000:]
    rotations = {
        h: [r for r in standin_records(h, "commands.jsonl") if r["command"] == "certificate"]
        for h in (master(site), worker(site))
    }
    assert all(len(r) == 1 and r[0]["args"] == ["rotate"] for r in rotations.values()), rotations
    assert rotations[master(site)][0]["at_ns"] < rotations[worker(site)][0]["at_ns"]
    # k3s regenerates certificates on start: each node was started again after its rotation.
    for host, count in before.items():
        starts = standin_records(host, "starts.jsonl")[count:]
        assert len(starts) == 1 and starts[0]["started_ns"] > rotations[host][0]["at_ns"], host


def test_rotate_token_never_prints_it_and_every_node_gets_it(site, run_playbook):
    old = sh(master(site), "cat /etc/rancher/k3s/token").stdout.strip()
    result = run_playbook(
        "playbooks/rotate_token.yml", site.inventory, "-e", f"edgesite_k3s_token_new={NEW_TOKEN}"
    )
    assert result.rc == 0, result.output[-5000:]
    assert NEW_TOKEN not in result.output and old not in result.output
    rotate = [r for r in standin_records(master(site), "commands.jsonl") if r["command"] == "token"]
    assert rotate and rotate[-1]["args"][0] == "rotate"
    for host in (master(site), worker(site)):
        assert sh(host, "cat /etc/rancher/k3s/token").stdout.strip() == NEW_TOKEN
        assert sh(host, "stat -c %a:%U /etc/rancher/k3s/token").stdout.strip() == "600:root"


def test_token_too_short_is_refused_before_any_change(site, run_playbook):
    result = run_playbook(
        "playbooks/rotate_token.yml", site.inventory, "-e", "edgesite_k3s_token_new=short"
    )
    assert result.rc != 0
    assert "edgesite_k3s_token_new" in result.output
    assert sh(master(site), "cat /etc/rancher/k3s/token").stdout.strip() == NEW_TOKEN


def test_site_after_rotations_changes_nothing(site, run_playbook):
    result = run_playbook("site.yml", site.inventory)
    assert result.rc == 0, result.output[-5000:]
    stats = recap(result.output)
    assert set(stats) == {master(site), worker(site)}
    assert all(s["changed"] == 0 for s in stats.values()), changed_tasks(result.output)


def node_json(site, node: str) -> dict:
    result = sh(master(site), f"/usr/local/bin/k3s kubectl get node {node} -o json")
    return json.loads(result.stdout)


def node_taints(site, node: str) -> list:
    return [{k: v for k, v in t.items() if k != "timeAdded"}
            for t in node_json(site, node)["spec"].get("taints", [])]  # fmt: skip


def test_labels_and_taints_changed_after_registration_reach_the_node(site, run_playbook):
    """Defect 6: k3s applies node-taint only at registration and never removes a node-label,
    and the kubelet refuses to register with a role label: EdgeSite sets them via the API."""
    labels = {"example.com/zone": "shelf-2", "node-role.kubernetes.io/camera": ""}
    taints = ["dedicated=camera:NoSchedule"]
    wanted = ("-e", json.dumps({"edgesite_node_labels": labels, "edgesite_node_taints": taints}))
    result = run_playbook("site.yml", site.inventory, *wanted)
    assert result.rc == 0, result.output[-5000:]
    for host in (master(site), worker(site)):
        assert labels.items() <= node_json(site, host)["metadata"]["labels"].items(), host
        assert node_taints(site, host) == [
            {"key": "dedicated", "value": "camera", "effect": "NoSchedule"}], host  # fmt: skip
    # The role label never reaches the kubelet's flags (it would refuse to start).
    config = yaml.safe_load(sh(worker(site), "cat /etc/rancher/k3s/config.yaml").stdout)
    assert config["node-label"] == ["example.com/zone=shelf-2"], config

    again = run_playbook("site.yml", site.inventory, *wanted)
    assert again.rc == 0, again.output[-5000:]
    assert all(s["changed"] == 0 for s in recap(again.output).values()), changed_tasks(
        again.output)  # fmt: skip

    # Back to the inventory's own (none): check mode predicts it and changes nothing ...
    before = node_json(site, worker(site))
    check = run_playbook("site.yml", site.inventory, "--check")
    assert check.rc == 0, check.output[-5000:]
    assert any("Set the labels and taints of" in t for t in changed_tasks(check.output))
    assert node_json(site, worker(site))["metadata"]["labels"] == before["metadata"]["labels"]
    # ... and the real run removes what EdgeSite set, nothing else.
    result = run_playbook("site.yml", site.inventory)
    assert result.rc == 0, result.output[-5000:]
    for host in (master(site), worker(site)):
        found = node_json(site, host)
        assert not set(labels) & set(found["metadata"]["labels"]), host
        assert found["metadata"]["labels"]["kubernetes.io/hostname"] == host
        assert node_taints(site, host) == [], host


REMOVED_NODE_LEFTOVERS = [
    "/usr/local/bin/k3s",
    "/etc/rancher",
    "/var/lib/rancher",
    "/etc/systemd/system/k3s-agent.service",
    "/etc/systemd/system/edgesite-agent.service",
    "/etc/edgesite",
    "/usr/local/lib/edgesite",
    "/var/lib/edgesite-agent",
]


def test_drain_refuses_pods_without_controller_and_waits_on_budgets(site, run_playbook):
    """kubectl drain's own rules, bounded and explained; the node stays cordoned and is kept."""
    node = worker(site)
    admin(master(site), "POST", "/objects/pods", pod("lonely", node, {"app": "tool"}))
    admin(master(site), "POST", "/objects/pods", pod("web-1", node, {"app": "web"}, "web"))
    admin(master(site), "POST", "/objects/poddisruptionbudgets", budget(allowed=0))
    remove = ("playbooks/remove_node.yml", site.inventory, "-e", f"edgesite_remove_node={node}",
              "-e", "edgesite_drain_timeout_s=12")  # fmt: skip
    result = run_playbook(*remove)
    assert result.rc != 0
    assert f"Node {node} (site 'day2-site') could not be drained within 12 s" in result.output
    assert "cannot delete Pods that declare no controller" in result.output
    assert node_ready(site, node) == "True"  # the Node is kept, cordoned
    assert sh(node, "systemctl is-active k3s-agent").stdout.strip() == "active"
    # Forced: the pod without a controller goes; the budget still holds web-1 until the timeout.
    result = run_playbook(*remove, "-e", "edgesite_drain_force=true")
    assert result.rc != 0
    assert "disruption budget" in result.output
    assert sh(node, "systemctl is-active k3s-agent").stdout.strip() == "active"
    # The budget allows one disruption now: the removal below goes through.
    admin(master(site), "POST", "/objects/poddisruptionbudgets", budget(allowed=1))


def test_remove_worker_drains_deletes_and_uninstalls(site, run_playbook):
    node = worker(site)
    result = run_playbook(
        "playbooks/remove_node.yml", site.inventory, "-e", f"edgesite_remove_node={node}"
    )
    assert result.rc == 0, result.output[-5000:]
    assert "NotFound" in node_ready(site, node)
    left = [
        p for p in REMOVED_NODE_LEFTOVERS if sh(node, f"test -e {p}", check=False).returncode == 0
    ]
    assert left == []
    # kube-proxy-lite's packet rules went with the agent.
    assert "edgesite" not in sh(node, "nft list tables").stdout
    # The master is untouched.
    assert sh(master(site), "systemctl is-active k3s").stdout.strip() == "active"


def test_remove_node_again_changes_nothing(site, run_playbook):
    result = run_playbook(
        "playbooks/remove_node.yml", site.inventory, "-e", f"edgesite_remove_node={worker(site)}"
    )
    assert result.rc == 0, result.output[-5000:]
    stats = recap(result.output)
    assert all(s["changed"] == 0 for s in stats.values()), changed_tasks(result.output)


def test_first_master_cannot_be_removed(site, run_playbook):
    result = run_playbook(
        "playbooks/remove_node.yml", site.inventory, "-e", f"edgesite_remove_node={master(site)}"
    )
    assert result.rc != 0
    assert "first master" in result.output
    assert sh(master(site), "systemctl is-active k3s").stdout.strip() == "active"


def test_unreachable_server_fails_the_join_in_bounded_time(site, run_playbook):
    """k3s retries a join without end; add_node must stop with a message, not hang."""
    node = worker(site)
    sh(node, "iptables -I OUTPUT -p tcp --dport 6443 -j REJECT")
    try:
        result = run_playbook(
            "playbooks/add_node.yml", site.inventory,
            "-e", "k3s_agent_health_retries=5", "-e", "k3s_agent_health_delay=1",
        )  # fmt: skip
    finally:
        sh(node, "iptables -D OUTPUT -p tcp --dport 6443 -j REJECT")
    assert result.rc != 0
    assert f"{node} did not register Ready on {master(site)} within 5 s" in result.output
    assert "journalctl -u k3s-agent" in result.output


def test_add_node_brings_the_worker_back(site, run_playbook):
    result = run_playbook("playbooks/add_node.yml", site.inventory)
    assert result.rc == 0, result.output[-5000:]
    assert node_ready(site, worker(site)) == "True"
    assert sh(worker(site), "systemctl is-active edgesite-agent").stdout.strip() == "active"
    assert (
        sh(master(site), "cat /etc/rancher/k3s/token").stdout
        == sh(worker(site), "cat /etc/rancher/k3s/token").stdout
    )
