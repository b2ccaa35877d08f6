"""The official Python client (`kubernetes`) against the agent's local API: lists with
resourceVersions and paging, watches resumed from a resourceVersion, 410 for a too-old one,
bookmarks and watch-list, a watch that stays open through an upstream outage, and the
bearer token of the TCP listener."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from tests.agent.clients import Kubectl, python_client
from tests.agent.conftest import REPO, configmap, pod, populate, running_agent, wait_until
from tests.kubeapi import KubeAPIServer, certs, free_port


def _events(stream: Any, n: int, into: list[tuple[str, str, str]]) -> None:
    for ev in stream:
        meta = ev["object"].metadata
        into.append((ev["type"], meta.name, meta.resource_version))
        if len(into) >= n:
            return


def test_list_paging_and_resource_versions(api: KubeAPIServer, make_config: Any) -> None:
    populate(api, n_pods=5)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready, what="synced")
        core, disc = python_client(agent.localapi.url)
        full = core.list_namespaced_pod("default")
        assert [p.metadata.name for p in full.items] == [f"p{i}" for i in range(5)]
        assert int(full.metadata.resource_version) >= max(
            int(p.metadata.resource_version) for p in full.items)  # fmt: skip
        page = core.list_namespaced_pod("default", limit=2)
        names = [p.metadata.name for p in page.items]
        while page.metadata._continue:
            page = core.list_namespaced_pod("default", limit=2, _continue=page.metadata._continue)
            names += [p.metadata.name for p in page.items]
        assert names == [f"p{i}" for i in range(5)]
        assert core.read_namespaced_pod("p3", "default").spec.node_name == "edge-1"
        with pytest.raises(ApiException) as err:
            core.read_namespaced_pod("nope", "default")
        assert err.value.status == 404
        with pytest.raises(ApiException) as err:
            core.list_pod_for_all_namespaces(field_selector="spec.hostname=x")
        assert err.value.status == 400 and "field label not supported" in err.value.body
        # A version newer than the agent has: waited for, then 504 (cacher.go).
        with pytest.raises(ApiException) as err:
            core.list_namespaced_pod("default", resource_version="999999999",
                                     resource_version_match="NotOlderThan")  # fmt: skip
        assert err.value.status == 504
        slices = disc.list_namespaced_endpoint_slice("default", label_selector=(
            "kubernetes.io/service-name in (s0,s2)"))  # fmt: skip
        assert sorted(s.metadata.name for s in slices.items) == ["s0-abc", "s2-abc"]


def test_watch_resumes_from_a_resource_version_and_410_when_too_old(
    api: KubeAPIServer, make_config: Any
) -> None:
    populate(api, n_pods=1)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready, what="synced")
        core, _ = python_client(agent.localapi.url)
        listed = core.list_namespaced_pod("default")
        rv0 = listed.metadata.resource_version
        api.upsert("pods", pod("a"))
        api.upsert("pods", pod("b"))
        api.delete("pods", "default", "a")
        wait_until(lambda: agent.store.get_json("Pod", "default", "b"), what="b stored")
        wait_until(lambda: agent.store.get_json("Pod", "default", "a") is None, what="a gone")
        seen: list[tuple[str, str, str]] = []
        w = watch.Watch()
        _events(w.stream(core.list_namespaced_pod, "default", resource_version=rv0,
                         timeout_seconds=5), 3, seen)  # fmt: skip
        w.stop()
        assert [(t, n) for t, n, _ in seen] == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]
        rvs = [int(rv) for _, _, rv in seen]
        assert rvs == sorted(rvs) and rvs[0] > int(rv0)
        # Resume after the second event: only the third comes again.
        again: list[tuple[str, str, str]] = []
        w = watch.Watch()
        _events(w.stream(core.list_namespaced_pod, "default", resource_version=seen[1][2],
                         timeout_seconds=5), 1, again)  # fmt: skip
        w.stop()
        assert again == [seen[2]]
        # A version older than the agent can replay: 410 Gone, which the client raises.
        for i in range(700):  # more changes than the ring keeps for a kind
            api.upsert("configmaps", configmap(f"cm{i % 3}", data={"i": str(i)}))
        for i in range(600):
            changed = pod("b")
            changed["metadata"]["annotations"] = {"i": str(i)}
            api.upsert("pods", changed)
        wait_until(lambda: '"599"' in (agent.store.get_json("Pod", "default", "b") or ""),
                   what="churn applied")  # fmt: skip
        with pytest.raises(ApiException) as err:
            w = watch.Watch()
            for _ in w.stream(core.list_namespaced_pod, "default", resource_version=rv0,
                              timeout_seconds=5):  # fmt: skip
                pass
        assert err.value.status == 410


def test_local_watch_stays_open_through_an_upstream_outage(
    api: KubeAPIServer, make_config: Any
) -> None:
    populate(api, n_pods=3)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready, what="synced")
        core, _ = python_client(agent.localapi.url)
        rv = core.list_namespaced_pod("default").metadata.resource_version
        seen: list[tuple[str, str, str]] = []
        w = watch.Watch()
        stream = w.stream(core.list_namespaced_pod, "default", resource_version=rv,
                          timeout_seconds=60, allow_watch_bookmarks=True)  # fmt: skip
        t = threading.Thread(target=_events, args=(
            (e for e in stream if e["type"] != "BOOKMARK"), 3, seen), daemon=True)  # fmt: skip
        t.start()
        api.stop()
        api.delete("pods", "default", "p1")  # while the node is cut off
        api.upsert("pods", pod("made-offline"))
        # Meanwhile the local API still answers from the store.
        assert len(core.list_namespaced_pod("default").items) == 3
        api.start()
        api.upsert("pods", pod("made-after"))
        t.join(30)
        w.stop()
        assert sorted((t_, n) for t_, n, _ in seen) == [
            ("ADDED", "made-after"), ("ADDED", "made-offline"), ("DELETED", "p1")]  # fmt: skip


def test_watch_list_initial_events_end_with_a_bookmark(
    api: KubeAPIServer, make_config: Any
) -> None:
    populate(api, n_pods=2)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready, what="synced")
        core, _ = python_client(agent.localapi.url)
        w = watch.Watch()
        got = []
        for ev in w.stream(core.list_namespaced_pod, "default", send_initial_events=True,
                           resource_version_match="NotOlderThan", allow_watch_bookmarks=True,
                           timeout_seconds=5):  # fmt: skip
            if ev["type"] == "BOOKMARK":
                anns = ev["raw_object"]["metadata"].get("annotations") or {}
                got.append(("BOOKMARK", anns.get("k8s.io/initial-events-end")))
                break
            got.append((ev["type"], ev["object"].metadata.name))
        w.stop()
        assert got == [("ADDED", "p0"), ("ADDED", "p1"), ("BOOKMARK", "true")]


def test_bearer_token_on_the_tcp_listener(
    api: KubeAPIServer, make_config: Any, tmp_path: Path, tls_dir: Path
) -> None:
    populate(api, n_pods=1)
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    os.chmod(token_file, 0o644)
    from edgesite_agent.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="listen_token_file"):
        load_config(make_config(listen_token_file=str(token_file)))
    os.chmod(token_file, 0o600)
    with running_agent(make_config(listen_token_file=str(token_file))) as agent:
        wait_until(agent.status.ready, what="synced")
        url = agent.localapi.url
        core, _ = python_client(url)
        with pytest.raises(ApiException) as err:
            core.list_namespaced_pod("default")
        assert err.value.status == 401
        core, _ = python_client(url, token="wrong")
        with pytest.raises(ApiException) as err:
            core.list_namespaced_pod("default")
        assert err.value.status == 401
        core, _ = python_client(url, token="s3cret-token")
        assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == ["p0"]
        # kubectl (client-go) sends no token over plain HTTP: it is refused either way.
        plain = Kubectl(url, tmp_path / "k0", token="s3cret-token").run("get", "pods", check=False)
        assert plain.returncode != 0 and "You must be logged in" in plain.stderr
    # Over TLS (the listener's own certificate) kubectl sends it.
    cert = certs.server_cert(tls_dir)
    tls = {"listen_tls_cert_file": str(cert.cert), "listen_tls_key_file": str(cert.key)}
    cfg = make_config(listen_token_file=str(token_file), listen_port=free_port(), **tls)
    with running_agent(cfg) as agent:
        wait_until(agent.status.ready, what="synced")
        url = agent.localapi.url
        assert url.startswith("https://")
        ca = ["--certificate-authority", str(tls_dir / "ca.crt")]
        # Without a token kubectl gets the 401 and asks for a user name (stdin is empty).
        denied = Kubectl(url, tmp_path / "k1").run(*ca, "get", "pods", check=False)
        assert denied.returncode != 0 and "pod/p0" not in denied.stdout
        ok = Kubectl(url, tmp_path / "k2", token="s3cret-token").run(
            *ca, "get", "pods", "-o", "name")  # fmt: skip
        assert ok.stdout.split() == ["pod/p0"]
        # `edgesite-agent status` reads the token and pins the listener's certificate.
        status = subprocess.run(
            [sys.executable, "-m", "edgesite_agent", "status", "--config", str(cfg)],
            capture_output=True, text=True, cwd=str(REPO), timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert "ready: yes" in status.stdout
