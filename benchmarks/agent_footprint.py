"""Agent memory with a realistic worker's share of a cluster: 110 pods on the node, 1,000
Services and 1,000 EndpointSlices of 10 endpoints (10,000 endpoints), synced over TLS from
the test API server (a separate process). Prints RSS now and peak; last line
`agent_rss_mib: X` (steady-state VmRSS after sync; target <= 24).

    python benchmarks/agent_footprint.py [--watch-list]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NODE = "edge-1"
PODS, SERVICES, EPS_PER_SLICE = 110, 1000, 10


def start_api(workdir: Path) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.kubeapi", "--port", "0", "--tls-dir", str(workdir / "pki"),
         "--node", NODE, "--bookmark-interval", "5"],
        cwd=str(REPO), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line and line[0] == "READY", line
    return proc, line[1], line[2]


def admin(url: str, path: str, body: object | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def ip(n: int) -> str:
    return f"10.42.{n // 250 % 250}.{n % 250 + 2}"


def dataset() -> list[dict[str, object]]:
    ops: list[dict[str, object]] = [{"op": "upsert", "resource": "nodes",
                                     "object": {"metadata": {"name": NODE}}}]  # fmt: skip
    for i in range(PODS):
        ops.append({"op": "upsert", "resource": "pods", "object": {
            "metadata": {"name": f"pod-{i}", "namespace": f"ns{i % 10}",
                         "labels": {"app": f"app-{i % 50}"}},
            "spec": {"nodeName": NODE, "containers": [
                {"name": "app", "image": "registry.local/app:1.0",
                 "ports": [{"containerPort": 8080}],
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
            "status": {"phase": "Running", "podIP": ip(i)}}})  # fmt: skip
    for s in range(SERVICES):
        ns = f"ns{s % 10}"
        ops.append({"op": "upsert", "resource": "services", "object": {
            "metadata": {"name": f"svc-{s}", "namespace": ns},
            "spec": {"type": "ClusterIP", "clusterIP": f"10.43.{s // 250}.{s % 250 + 1}",
                     "selector": {"app": f"app-{s % 50}"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                "protocol": "TCP"}]}}})  # fmt: skip
        ops.append({"op": "upsert", "resource": "endpointslices", "object": {
            "metadata": {"name": f"svc-{s}-x1", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": f"svc-{s}"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip(s * EPS_PER_SLICE + e)],
                           "conditions": {"ready": True, "serving": True, "terminating": False},
                           "nodeName": f"edge-{e % 3 + 1}",
                           "targetRef": {"kind": "Pod", "name": f"pod-{e}", "namespace": ns}}
                          for e in range(EPS_PER_SLICE)],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}})  # fmt: skip
    return ops


def write_config(workdir: Path, api_url: str, watch_list: bool, port: int) -> Path:
    from tests.kubeapi import certs

    pki = workdir / "pki"
    kc = certs.write_kubeconfig(workdir / "kubelet.kubeconfig", api_url, pki / "ca.crt",
                                certs.node_cert(pki, NODE))  # fmt: skip
    pc = certs.write_kubeconfig(workdir / "kubeproxy.kubeconfig", api_url, pki / "ca.crt",
                                certs.proxy_cert(pki))  # fmt: skip
    cfg = workdir / "agent.json"
    cfg.write_text(json.dumps({
        "node_name": NODE, "kubeconfig": str(kc), "proxy_kubeconfig": str(pc),
        "store_path": str(workdir / "store.db"), "listen_port": port,
        "watch_list": watch_list, "log_level": "WARNING"}))  # fmt: skip
    return cfg


def spawn_agent(cfg: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgesite_agent", "run", "--config", str(cfg)],
        cwd=str(REPO), env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def rss(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    kib = lambda k: int(fields[k].split()[0]) / 1024  # noqa: E731
    return kib("VmRSS"), kib("VmHWM")


def synced_agent(workdir: Path, api_admin: str, api_url: str, watch_list: bool,
                 port: int) -> tuple[subprocess.Popen[bytes], Path, float]:  # fmt: skip
    cfg = write_config(workdir, api_url, watch_list, port)
    t0 = time.monotonic()
    agent = spawn_agent(cfg)
    want = (f'edgesite_agent_objects{{kind="EndpointSlice"}} {SERVICES}',
            f'edgesite_agent_objects{{kind="Pod"}} {PODS}')  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if ready(port) and all(w in metrics(port) for w in want):
            break
        time.sleep(0.1)
    else:
        agent.kill()
        raise SystemExit("agent did not sync within 300 s")
    return agent, cfg, time.monotonic() - t0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--watch-list", action="store_true")
    args = p.parse_args()
    from tests.kubeapi import free_port

    with tempfile.TemporaryDirectory() as d:
        workdir = Path(d)
        api, api_url, admin_url = start_api(workdir)
        try:
            admin(admin_url, "/batch", {"ops": dataset()})
            port = free_port()
            agent, _, took = synced_agent(workdir, admin_url, api_url, args.watch_list, port)
            time.sleep(2)  # let the post-sync garbage settle
            now, peak = rss(agent.pid)
            size = Path(workdir / "store.db").stat().st_size / 2**20
            agent.terminate()
            agent.wait(20)
        finally:
            api.terminate()
            api.wait(20)
    print(f"objects: {PODS} pods, {SERVICES} services, {SERVICES} endpointslices "
          f"({SERVICES * EPS_PER_SLICE} endpoints); watch_list={args.watch_list}")  # fmt: skip
    print(f"sync_s: {took:.2f}")
    print(f"store_mib: {size:.2f}")
    print(f"agent_peak_rss_mib: {peak:.1f}")
    print(f"agent_rss_mib: {now:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
