"""Local API shapes, metrics names, CLI (run/status/dump, bad configs), kubeconfig parsing,
and the zipapp build."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edgesite_agent.config import ConfigError, load_config
from edgesite_agent.kubeconfig import KubeconfigError, in_cluster, load_kubeconfig, parse_yaml
from tests.agent.conftest import (
    NODE,
    REPO,
    agent_process,
    populate,
    running_agent,
    wait_until,
)
from tests.kubeapi import KubeAPIServer


def _get(url: str) -> tuple[int, Any, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = r.read().decode()
            code, ctype = r.status, r.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        body, code, ctype = e.read().decode(), e.code, e.headers["Content-Type"]
    return code, (json.loads(body) if "json" in ctype else body), ctype


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgesite_agent", *args],
        capture_output=True, text=True, cwd=str(REPO), timeout=60,
    )  # fmt: skip


def test_local_api_shapes_and_metrics(api: KubeAPIServer, make_config: Any) -> None:
    populate(api)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready, what="synced")
        base = agent.localapi.url
        code, pods, _ = _get(base + "/api/v1/namespaces/default/pods")
        assert code == 200 and pods["kind"] == "PodList" and pods["apiVersion"] == "v1"
        assert pods["metadata"]["resourceVersion"]
        assert sorted(p["metadata"]["name"] for p in pods["items"]) == ["p0", "p1", "p2"]
        assert all(p["kind"] == "Pod" for p in pods["items"])
        code, one, _ = _get(base + "/api/v1/namespaces/default/pods/p1")
        assert code == 200 and one["spec"]["nodeName"] == NODE
        code, sl, _ = _get(base + "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices")
        assert sl["kind"] == "EndpointSliceList" and len(sl["items"]) == 3
        code, n, _ = _get(base + f"/api/v1/nodes/{NODE}")
        assert code == 200 and n["kind"] == "Node"
        code, sel, _ = _get(base + "/api/v1/pods?labelSelector=app%3Dp2")
        assert [p["metadata"]["name"] for p in sel["items"]] == ["p2"]
        wait_until(lambda: _get(base + "/api/v1/namespaces/default/configmaps/cm0")[0] == 200)
        code, missing, _ = _get(base + "/api/v1/namespaces/default/pods/nope")
        assert code == 404 and missing["kind"] == "Status" and missing["reason"] == "NotFound"
        code, sec, _ = _get(base + "/api/v1/namespaces/default/secrets")
        assert code == 403 and sec["reason"] == "Forbidden"
        req = urllib.request.Request(base + "/api/v1/namespaces/default/pods", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 405
        assert _get(base + "/healthz")[:2] == (200, "ok")
        assert _get(base + "/readyz")[:2] == (200, "ok")
        code, metrics, ctype = _get(base + "/metrics")
        assert ctype.startswith("text/plain")
        for name in (
            'edgesite_agent_objects{kind="Pod"} 3',
            'edgesite_agent_events_applied_total{kind="Pod",type="ADDED"}',
            'edgesite_agent_relists_total{kind="Pod"} 1',
            "edgesite_agent_seconds_since_api_contact ",
            "edgesite_agent_store_bytes ",
            'edgesite_agent_synced{kind="Service"} 1',
            "edgesite_agent_ready 1",
            "# TYPE edgesite_agent_watch_restarts_total counter",
        ):
            if "watch_restarts" in name:
                continue  # only present once a watch was restarted
            assert name in metrics, name


def test_cli_run_status_dump(api: KubeAPIServer, make_config: Any, tmp_path: Path) -> None:
    from tests.kubeapi import free_port

    populate(api)
    port = free_port()
    cfg = make_config(listen_port=port, log_level="INFO")
    with agent_process(cfg, tmp_path / "agent.log"):
        wait_until(lambda: _cli("status", "--config", str(cfg)).returncode == 0, timeout=30)
        out = _cli("status", "--url", f"http://127.0.0.1:{port}").stdout
        assert out.startswith("ready: yes") and 'objects{kind="Pod"} 3' in out
    dump = _cli("dump", "pods", "--config", str(cfg))
    assert dump.returncode == 0, dump.stderr
    doc = json.loads(dump.stdout)
    assert doc["kind"] == "PodList" and len(doc["items"]) == 3
    assert _cli("dump", "gizmos", "--config", str(cfg)).returncode == 2
    assert _cli("status", "--url", "http://127.0.0.1:1").returncode == 1


def _unix_get(path: str, target: str) -> tuple[int, bytes]:
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():  # de-chunk
        out, rest = b"", body
        while True:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2 :]
        body = out
    return int(head.split()[1]), body


def test_local_api_on_a_private_unix_socket(api: KubeAPIServer, make_config: Any) -> None:
    import os
    import shutil
    import tempfile

    populate(api)
    # A short directory of its own: sun_path holds 108 bytes, pytest's tmp_path can be longer.
    run_dir = tempfile.mkdtemp(prefix="es-sock-", dir="/tmp")
    try:
        _unix_socket_checks(make_config, os.path.join(run_dir, "agent.sock"))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _unix_socket_checks(make_config: Any, sock_path: str) -> None:
    import os
    import socket
    import stat

    stale = socket.socket(socket.AF_UNIX)  # what a killed agent leaves behind
    stale.bind(sock_path)
    stale.close()
    cfg = make_config(listen_unix=sock_path)
    with running_agent(cfg) as agent:
        assert agent.localapi.url == f"unix:{sock_path}"
        mode = os.stat(sock_path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        wait_until(lambda: _unix_get(sock_path, "/readyz")[0] == 200, what="ready on the socket")
        code, body = _unix_get(sock_path, "/api/v1/namespaces/default/pods")
        assert code == 200
        assert {p["metadata"]["name"] for p in json.loads(body)["items"]} == {"p0", "p1", "p2"}
        out = _cli("status", "--config", str(cfg))
        assert out.returncode == 0 and out.stdout.startswith("ready: yes"), out.stderr
        assert _cli("status", "--url", f"unix:{sock_path}").returncode == 0
    assert not os.path.exists(sock_path)  # removed on a clean stop
    assert sorted(os.listdir(os.path.dirname(sock_path))) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "<file>:"),
        ('{"store_path": "/x", "kubeconfig": "KC"}', "node_name: required key is missing"),
        ('{"node_name": "n", "store_path": "/x", "kubeconfig": "KC", "tyop": 1}',
         "tyop: unknown key"),
        ('{"node_name": "n", "store_path": "/x", "kubeconfig": "KC", "listen_port": "80"}',
         "listen_port: must be an integer"),
        ('{"node_name": "n", "store_path": "/x", "kubeconfig": "KC", "listen_port": true}',
         "listen_port: must be an integer"),
        ('{"node_name": "n", "store_path": "/x", "kubeconfig": "KC",'
         ' "listen_address": "0.0.0.0"}', "listen_address: must be a loopback address"),
        ('{"node_name": "n", "store_path": "/x", "kubeconfig": "KC",'
         ' "listen_address": "::"}', "listen_address: must be a loopback address"),
        ('{"node_name": "n", "store_path": "/x", "kubeconfig": "KC",'
         ' "listen_address": "localhost"}', "listen_address: not an IP address"),
        ('{"node_name": "n", "store_path": "/x", "kubeconfig": "KC",'
         ' "listen_unix": "agent.sock"}', "listen_unix: must be an absolute path"),
        ('{"node_name": "n", "store_path": "/x", "kubeconfig": "/nonexistent"}',
         "kubeconfig: file /nonexistent does not exist"),
        ('{"node_name": "n", "store_path": "/x"}', "kubeconfig: required unless in_cluster"),
        ('{"node_name": "n", "store_path": "/x", "kubeconfig": "KC", "cache_secrets": "yes"}',
         "cache_secrets: must be true/false"),
        ('{"node_name": "n", "store_path": "/x", "kubeconfig": "KC",'
         ' "proxy": {"enabled": 1}}', "proxy.enabled: must be true/false"),
    ],
)  # fmt: skip
def test_bad_config_names_key_and_problem(tmp_path: Path, content: str, message: str) -> None:
    kc = tmp_path / "kc"
    kc.write_text("x")
    path = tmp_path / "agent.json"
    path.write_text(content.replace('"KC"', json.dumps(str(kc))))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)
    proc = _cli("run", "--config", str(path))
    assert proc.returncode == 2
    assert message in proc.stderr


@pytest.mark.parametrize("address", ["127.0.0.1", "127.3.2.1", "::1"])
def test_loopback_listen_addresses_are_accepted(tmp_path: Path, address: str) -> None:
    kc = tmp_path / "kc"
    kc.write_text("x")
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"node_name": "n", "store_path": "/x", "kubeconfig": str(kc),
                                "listen_address": address}))  # fmt: skip
    assert load_config(path).listen_address == address


def test_kubeconfig_k3s_yaml_json_embedded_and_in_cluster(tmp_path: Path) -> None:
    k3s = tmp_path / "kubelet.kubeconfig"
    k3s.write_text(
        "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6444\n"
        "    certificate-authority: /var/lib/rancher/k3s/agent/server-ca.crt\n  name: local\n"
        "contexts:\n- context:\n    cluster: local\n    namespace: default\n    user: user\n"
        "  name: local\ncurrent-context: local\nkind: Config\npreferences: {}\nusers:\n"
        "- name: user\n  user:\n    client-certificate: client-kubelet.crt\n"
        '    client-key: "client-kubelet.key"  # relative paths resolve next to the file\n'
    )
    c = load_kubeconfig(k3s)
    assert c.server == "https://127.0.0.1:6444"
    assert c.ca_file == "/var/lib/rancher/k3s/agent/server-ca.crt"
    assert c.cert_file == str(tmp_path / "client-kubelet.crt")
    assert c.key_file == str(tmp_path / "client-kubelet.key")
    assert "key" not in repr(c).lower().replace("cert_file", "")
    embedded = tmp_path / "embedded.json"
    embedded.write_text(json.dumps({
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://10.0.0.1:6443",
                      "certificate-authority-data": base64.b64encode(b"CA").decode()}}],
        "users": [{"name": "u", "user": {"token": "s3cret"}}],
    }))  # fmt: skip
    e = load_kubeconfig(embedded)
    assert e.ca_data == b"CA" and e.bearer() == "s3cret" and "s3cret" not in repr(e)
    assert parse_yaml("a:\n  - x\n  - 'y'\nb: {}\n") == {"a": ["x", "y"], "b": {}}
    plain = tmp_path / "plain"
    plain.write_text("current-context: c\ncontexts: []\n")
    with pytest.raises(KubeconfigError):
        load_kubeconfig(plain)
    ic = in_cluster({"KUBERNETES_SERVICE_HOST": "10.43.0.1", "KUBERNETES_SERVICE_PORT": "443"})
    assert ic.server == "https://10.43.0.1:443" and ic.token_file.endswith("/token")
    with pytest.raises(KubeconfigError):
        in_cluster({})


def test_zipapp_builds_reproducibly_and_runs(tmp_path: Path) -> None:
    out1, out2 = tmp_path / "a" / "edgesite-agent.pyz", tmp_path / "b" / "edgesite-agent.pyz"
    for out in (out1, out2):
        proc = _cli_build(out)
        assert proc.returncode == 0, proc.stderr
    assert hashlib.sha256(out1.read_bytes()).digest() == hashlib.sha256(out2.read_bytes()).digest()
    from edgesite_agent import __version__

    # Run from an empty directory with a clean path: nothing but the zipapp.
    env = {"PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-I", str(out1), "--version"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0 and __version__ in run.stdout
    helped = subprocess.run(
        [sys.executable, "-I", str(out1), "status", "--help"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )  # fmt: skip
    assert helped.returncode == 0 and "--config" in helped.stdout


def _cli_build(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgesite_agent.build_zipapp", str(out)],
        capture_output=True, text=True, cwd=str(REPO), timeout=60,
    )  # fmt: skip


def test_stop_ends_every_agent_thread(api: KubeAPIServer, make_config: Any) -> None:
    # A long refresh period: the referenced-objects loop must be woken, not waited for.
    with running_agent(make_config(refs_refresh_s=300)) as agent:
        wait_until(agent.status.ready, what="synced")
    alive = [t.name for t in agent.threads if t.is_alive()]
    assert not alive, f"still running after stop(): {alive}"
