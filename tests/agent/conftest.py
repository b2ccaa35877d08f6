"""Fixtures: a TLS test API server, node/kube-proxy kubeconfigs, agents in-process or as
subprocesses, and small object factories."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `tests.kubeapi` is imported as a package from the repo root
    sys.path.insert(0, str(REPO))

from tests.kubeapi import (  # noqa: E402
    KubeAPIServer,
    Options,
    certs,
)

NODE = "edge-1"


def wait_until(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll for an eventual state; the timeout only bounds a failing test."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    certs.ensure_ca(d)
    certs.server_cert(d)
    certs.node_cert(d, NODE)
    certs.node_cert(d, "edge-2")
    certs.proxy_cert(d)
    certs.admin_cert(d)
    return d


@pytest.fixture
def api(tls_dir: Path) -> Iterator[KubeAPIServer]:
    srv = KubeAPIServer(tls_dir, options=Options(bookmark_interval=0.2))
    srv.start()
    yield srv
    srv.stop()


def kubeconfigs(tls_dir: Path, api: KubeAPIServer, where: Path, node: str = NODE) -> dict[str, str]:
    ca = tls_dir / "ca.crt"
    kc = certs.write_kubeconfig(
        where / f"kubelet-{node}.kubeconfig", api.url, ca, certs.node_cert(tls_dir, node)
    )
    pc = certs.write_kubeconfig(where / "kubeproxy.kubeconfig", api.url, ca,
                                certs.proxy_cert(tls_dir))  # fmt: skip
    return {"kubeconfig": str(kc), "proxy_kubeconfig": str(pc)}


@pytest.fixture
def make_config(tls_dir: Path, api: KubeAPIServer, tmp_path: Path) -> Callable[..., Path]:
    def make(**overrides: Any) -> Path:
        cfg: dict[str, Any] = {
            "node_name": NODE,
            "store_path": str(tmp_path / "state" / "store.db"),
            "listen_address": "127.0.0.1",
            "listen_port": 0,
            "watch_idle_timeout_s": 10,
            "refs_refresh_s": 0.5,
            "log_level": "DEBUG",
            **kubeconfigs(tls_dir, api, tmp_path),
        }
        cfg.update(overrides)
        path = tmp_path / "agent.json"
        path.write_text(json.dumps(cfg, indent=2))
        return path

    return make


@contextmanager
def running_agent(config_path: Path) -> Iterator[Any]:
    from edgesite_agent.agent import Agent
    from edgesite_agent.config import load_config

    agent = Agent(load_config(config_path), logging.getLogger("test-agent"))
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


@contextmanager
def agent_process(config_path: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgesite_agent", "run", "--config", str(config_path)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- object factories -------------------------------------------------------------------
def node(name: str = NODE) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"podCIDR": "10.42.1.0/24"}}  # fmt: skip


def pod(name: str, node_name: str = NODE, ns: str = "default", configmaps: tuple[str, ...] = (),
        secrets: tuple[str, ...] = (), ip: str = "10.42.1.5") -> dict[str, Any]:  # fmt: skip
    vols = [{"name": f"cm-{c}", "configMap": {"name": c}} for c in configmaps]
    vols += [{"name": f"s-{s}", "secret": {"secretName": s}} for s in secrets]
    return {
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"nodeName": node_name, "volumes": vols,
                 "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "podIP": ip},
    }  # fmt: skip


def service(name: str, ns: str = "default", cluster_ip: str = "10.43.0.10",
            labels: dict[str, str] | None = None, port: int = 80) -> dict[str, Any]:  # fmt: skip
    return {
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"clusterIP": cluster_ip, "type": "ClusterIP",
                 "ports": [{"name": "http", "port": port, "protocol": "TCP",
                            "targetPort": 8080}]},
    }  # fmt: skip


def endpointslice(
    svc: str,
    ns: str = "default",
    ips: tuple[str, ...] = ("10.42.1.5",),
    suffix: str = "abc",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{svc}-{suffix}", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc, **(labels or {})}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": NODE}
                      for ip in ips],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }  # fmt: skip


def configmap(name: str, ns: str = "default", data: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "data": data or {"k": "v"}}


def secret(name: str, ns: str = "default") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "type": "Opaque",
            "data": {"password": "c2VjcmV0"}}  # fmt: skip


# --- comparing the store with the API -------------------------------------------------------
KIND_RESOURCE = {"Pod": "pods", "Node": "nodes", "Service": "services",
                 "EndpointSlice": "endpointslices", "ConfigMap": "configmaps",
                 "Secret": "secrets"}  # fmt: skip


def store_state(store_path: Path | str, kind: str) -> dict[tuple[str, str], str]:
    import sqlite3

    db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT namespace, name, resource_version FROM objects WHERE kind=?", (kind,)
        ).fetchall()
    except sqlite3.OperationalError:  # not created yet by the agent
        return {}
    finally:
        db.close()
    return {(ns, n): rv for ns, n, rv in rows}


def api_state(
    api: KubeAPIServer, kind: str, pred: Callable[[dict[str, Any]], bool] = lambda o: True
) -> dict[tuple[str, str], str]:
    out = {}
    for o in api.state.items(KIND_RESOURCE[kind], None):
        if pred(o):
            m = o["metadata"]
            out[(m.get("namespace", ""), m["name"])] = m["resourceVersion"]
    return out


def in_scope(kind: str, node_name: str = NODE) -> Callable[[dict[str, Any]], bool]:
    """What the agent of `node_name` must hold of `kind` (rule 7), for comparisons."""
    proxy_label = "service.kubernetes.io/service-proxy-name"

    def pred(o: dict[str, Any]) -> bool:
        labels = o["metadata"].get("labels") or {}
        if kind == "Pod":
            return o["spec"].get("nodeName") == node_name
        if kind == "Node":
            return o["metadata"]["name"] == node_name
        if kind == "Service":
            return proxy_label not in labels and o["spec"].get("clusterIP") != "None"
        if kind == "EndpointSlice":
            return proxy_label not in labels and "service.kubernetes.io/headless" not in labels
        return True

    return pred


def assert_store_equals_api(api: KubeAPIServer, store_path: Path | str,
                            kinds: tuple[str, ...] = ("Pod", "Node", "Service",
                                                      "EndpointSlice")) -> None:  # fmt: skip
    for kind in kinds:
        assert store_state(store_path, kind) == api_state(api, kind, in_scope(kind)), kind


def store_matches_api(api: KubeAPIServer, store_path: Path | str,
                      kinds: tuple[str, ...] = ("Pod", "Node", "Service",
                                                "EndpointSlice")) -> bool:  # fmt: skip
    return all(store_state(store_path, k) == api_state(api, k, in_scope(k)) for k in kinds)


def populate(api: KubeAPIServer, n_pods: int = 3, n_services: int = 3) -> None:
    api.upsert("nodes", node())
    api.upsert("nodes", node("edge-2"))
    for i in range(n_pods):
        api.upsert("pods", pod(f"p{i}", configmaps=(f"cm{i}",)))
        api.upsert("configmaps", configmap(f"cm{i}"))
        api.upsert("pods", pod(f"other{i}", node_name="edge-2"))
    api.upsert("configmaps", configmap("unreferenced"))
    for i in range(n_services):
        api.upsert("services", service(f"s{i}", cluster_ip=f"10.43.0.{10 + i}"))
        api.upsert("endpointslices", endpointslice(f"s{i}", ips=(f"10.42.1.{10 + i}",)))
