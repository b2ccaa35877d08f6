"""Agent memory with a realistic worker's share of a cluster: 110 pods on the node, 1,000
Services and 1,000 EndpointSlices of 10 endpoints (10,000 endpoints), synced over TLS from
the test API server (a separate process).

The agent runs exactly as the systemd unit runs it (AGENT_CMD, AGENT_ENV below): the
zipapp built from this checkout, `python3 -I -S`, no other environment. Two
configurations are measured:
- `no proxy`: informers, store and local API only;
- `deployed`: as roles/edgesite_agent deploys it, with kube-proxy-lite enabled
  (backend auto, keep_local_endpoints_when_disconnected). The benchmark re-runs itself
  in a network namespace of its own (`unshare --net`, loopback up; gone when it exits), so
  the test API server, the agent and its rules live there, never on the host, and the
  proxy programs its own namespace as on a node (no `proxy.netns` runner prefix, so the
  nft commit reports are heard, docs/proxy.md). Needs root (CAP_NET_ADMIN) and nft or
  iptables.

Phases (VmRSS of the agent process): `started` (local API answering, informers starting),
`synced` (/readyz 200, object counts complete, rules applied, 2 s of settling), `served`
(every object read back through the local API: all 10,000 endpoints must be there),
`watched` (five local watchers open on the local API, as node-local clients hold them:
pods twice, services, endpointslices, nodes; plus the pods listed as the Table `kubectl get
pods` asks for; they stay open through the next phase),
`churned` (deployed only: 50 EndpointSlices lose an endpoint in one batch, the proxy's
incremental path applies it; done when none of the removed addresses is left in the rules),
`peak` (VmHWM over the whole run). The last line `agent_rss_mib: X` is max(synced, served,
watched, churned) of the deployed configuration (target <= 24); with --runs N each
configuration runs N times (a fresh agent each) and the medians are printed.

    python benchmarks/agent_footprint.py [--watch-list] [--config both|deployed|no-proxy]
                                         [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

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


def endpoint_slice(s: int, count: int = EPS_PER_SLICE) -> dict[str, object]:
    """The EndpointSlice of service `s` with its first `count` endpoints."""
    ns = f"ns{s % 10}"
    return {
        "metadata": {"name": f"svc-{s}-x1", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": f"svc-{s}"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip(s * EPS_PER_SLICE + e)],
                       "conditions": {"ready": True, "serving": True, "terminating": False},
                       "nodeName": f"edge-{e % 3 + 1}",
                       "targetRef": {"kind": "Pod", "name": f"pod-{e}", "namespace": ns}}
                      for e in range(count)],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}  # fmt: skip


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
        ops.append({"op": "upsert", "resource": "endpointslices", "object": endpoint_slice(s)})
    return ops


CHURNED = 50  # slices changed in the churn phase: fewer than a full sync's threshold


# The role's proxy settings (roles/edgesite_agent/defaults/main.yml: edgesite_agent_proxy).
DEPLOYED_PROXY = {
    "enabled": True, "backend": "auto", "keep_local_endpoints_when_disconnected": True}  # fmt: skip


def write_config(workdir: Path, api_url: str, watch_list: bool, port: int,
                 proxy: bool) -> Path:  # fmt: skip
    from tests.kubeapi import certs

    pki = workdir / "pki"
    kc = certs.write_kubeconfig(workdir / "kubelet.kubeconfig", api_url, pki / "ca.crt",
                                certs.node_cert(pki, NODE))  # fmt: skip
    pc = certs.write_kubeconfig(workdir / "kubeproxy.kubeconfig", api_url, pki / "ca.crt",
                                certs.proxy_cert(pki))  # fmt: skip
    cfg = workdir / "agent.json"
    raw: dict[str, Any] = {
        "node_name": NODE, "kubeconfig": str(kc), "proxy_kubeconfig": str(pc),
        "store_path": str(workdir / "store.db"), "listen_port": port,
        "watch_list": watch_list, "log_level": "WARNING"}  # fmt: skip
    if proxy:
        raw["proxy"] = dict(DEPLOYED_PROXY)
    cfg.write_text(json.dumps(raw))
    return cfg


# How the systemd unit starts the agent (docs/agent.md): -I ignores PYTHON* variables, the
# user site and the working directory; -S skips site-packages, which a stdlib-only zipapp
# never needs (and whose .pth hooks can cost several MiB).
AGENT_FLAGS = ("-I", "-S")
AGENT_ENV: dict[str, str] = {}  # the unit sets no environment of its own
# Edge nodes run the distribution's python3 (Debian 12: 3.11); fall back to this interpreter.
AGENT_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def zipapp(workdir: Path) -> Path:
    from edgesite_agent.build_zipapp import build

    out = workdir / "edgesite-agent.pyz"
    return out if out.exists() else build(out)


def spawn_agent(cfg: Path) -> subprocess.Popen[bytes]:
    pyz = zipapp(cfg.parent)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **AGENT_ENV}
    return subprocess.Popen(
        [AGENT_PYTHON, *AGENT_FLAGS, str(pyz), "run", "--config", str(cfg)],
        cwd="/", env=env,
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


def local_list(port: int, path: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as r:
        items: list[dict[str, Any]] = json.load(r)["items"]
    return items


def verify_served(port: int) -> int:
    """Every object must be readable from the agent's local API; returns endpoints seen."""
    pods = local_list(port, "/api/v1/pods")
    svcs = local_list(port, "/api/v1/services")
    slices = local_list(port, "/apis/discovery.k8s.io/v1/endpointslices")
    nodes = local_list(port, "/api/v1/nodes")
    endpoints = sum(len(s["endpoints"]) for s in slices)
    got = (len(pods), len(svcs), len(slices), len(nodes), endpoints)
    want = (PODS, SERVICES, SERVICES, 1, SERVICES * EPS_PER_SLICE)
    if got != want:
        raise SystemExit(f"local API serves {got} (pods, services, slices, nodes, endpoints), "
                         f"want {want}")  # fmt: skip
    return endpoints


KUBECTL_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
WATCHED = ("/api/v1/pods", "/api/v1/pods", "/api/v1/services",
           "/apis/discovery.k8s.io/v1/endpointslices", "/api/v1/nodes")  # fmt: skip


def open_watchers(port: int) -> list[Any]:
    """Five local watches from the current version (they read their events meanwhile), and
    the pods listed as kubectl's Table."""
    import http.client
    import threading

    conns = []
    for path in WATCHED:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        conn.request("GET", f"{path}?watch=true&allowWatchBookmarks=true&resourceVersion=0")
        resp = conn.getresponse()
        threading.Thread(target=lambda r=resp: [None for _ in r], daemon=True).start()
        conns.append(conn)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/pods?limit=500",
                                 headers={"Accept": KUBECTL_ACCEPT})  # fmt: skip
    with urllib.request.urlopen(req, timeout=60) as r:
        table = json.load(r)
    if table.get("kind") != "Table" or len(table["rows"]) != PODS:
        raise SystemExit("the local API did not answer kubectl's Table list of the pods")
    return conns


def rss(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    kib = lambda k: int(fields[k].split()[0]) / 1024  # noqa: E731
    return kib("VmRSS"), kib("VmHWM")


def wait_synced(agent: subprocess.Popen[bytes], port: int) -> None:
    want = (f'edgesite_agent_objects{{kind="EndpointSlice"}} {SERVICES}',
            f'edgesite_agent_objects{{kind="Pod"}} {PODS}')  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise SystemExit(f"agent exited with {agent.returncode}")
        if ready(port) and all(w in metrics(port) for w in want):
            return
        time.sleep(0.1)
    agent.kill()
    raise SystemExit("agent did not sync within 300 s")


def wait_started(agent: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise SystemExit(f"agent exited with {agent.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.02)
    raise SystemExit("agent local API did not answer within 60 s")


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def rules_text() -> str:
    text = sh("nft", "list", "ruleset")
    if "10.43." not in text:  # iptables backend
        text = sh("iptables-save", "-t", "nat")
    return text


def rules_cover_services() -> bool:
    """The proxy really programmed the namespace: every ClusterIP appears in its rules."""
    text = rules_text()
    return all(f"10.43.{s // 250}.{s % 250 + 1}" in text for s in range(SERVICES))


def churn(admin_url: str, restore: bool = False) -> None:
    """CHURNED slices lose their last endpoint (or get it back); waits for the rules."""
    count = EPS_PER_SLICE if restore else EPS_PER_SLICE - 1
    admin(admin_url, "/batch", {"ops": [
        {"op": "upsert", "resource": "endpointslices", "object": endpoint_slice(s, count)}
        for s in range(CHURNED)]})  # fmt: skip
    # " . " ends an endpoint in the nft maps ("10.42.0.11 . 8080"), ":" in iptables rules.
    gone = [ip(s * EPS_PER_SLICE + EPS_PER_SLICE - 1) for s in range(CHURNED)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = rules_text()
        present = [a for a in gone if f"{a} . " in text or f"{a}:" in text]
        if len(present) == (CHURNED if restore else 0):
            return
        time.sleep(0.2)
    raise SystemExit("the proxy did not apply the churned endpoints within 60 s")


def measure(
    workdir: Path, api_url: str, admin_url: str, watch_list: bool, proxy: bool
) -> dict[str, float]:
    """One fresh agent (empty store) through the phases; returns MiB per phase."""
    from tests.kubeapi import free_port

    for f in workdir.glob("store.db*"):
        f.unlink()
    port = free_port()
    cfg = write_config(workdir, api_url, watch_list, port, proxy)
    t0 = time.monotonic()
    agent = spawn_agent(cfg)
    try:
        wait_started(agent, port)
        started, _ = rss(agent.pid)
        wait_synced(agent, port)
        took = time.monotonic() - t0
        time.sleep(2)  # let the post-sync garbage settle (and a proxy apply finish)
        synced, _ = rss(agent.pid)
        if proxy and not rules_cover_services():
            raise SystemExit("the proxy did not program all 1,000 ClusterIPs")
        endpoints = verify_served(port)
        time.sleep(1)
        served, _ = rss(agent.pid)
        watchers = open_watchers(port)
        time.sleep(1)
        watched, _ = rss(agent.pid)
        churned = 0.0
        if proxy:
            churn(admin_url)
            time.sleep(1)
            churned, _ = rss(agent.pid)
            churn(admin_url, restore=True)  # the next run starts from the same data
        _, peak = rss(agent.pid)
        for conn in watchers:
            conn.close()
    finally:
        agent.terminate()
        agent.wait(20)
    store = sum(f.stat().st_size for f in workdir.glob("store.db*")) / 2**20
    return {"sync_s": took, "store_mib": store, "endpoints_served": endpoints,
            "started": started, "synced": synced, "served": served, "watched": watched,
            "churned": churned, "peak": peak,
            "steady": max(synced, served, watched, churned)}  # fmt: skip


def report(name: str, runs: list[dict[str, float]]) -> dict[str, float]:
    """Prints each run and, for several, the medians; returns the medians."""
    for i, m in enumerate(runs, 1):
        tag = f"{name} run {i}" if len(runs) > 1 else name
        churned = f"  churned {m['churned']:.1f}" if m["churned"] else ""
        print(f"[{tag}] sync_s {m['sync_s']:.2f}, store {m['store_mib']:.2f} MiB, local API "
              f"served {int(m['endpoints_served'])} endpoints")  # fmt: skip
        print(f"[{tag}] rss_mib started {m['started']:.1f}  synced {m['synced']:.1f}  "
              f"served {m['served']:.1f}  watched {m['watched']:.1f}{churned}  "
              f"peak {m['peak']:.1f}")  # fmt: skip
    med = {k: statistics.median(m[k] for m in runs) for k in runs[0]}
    if len(runs) > 1:
        churned = f"  churned {med['churned']:.1f}" if med["churned"] else ""
        print(f"[{name} median of {len(runs)}] rss_mib started {med['started']:.1f}  synced "
              f"{med['synced']:.1f}  served {med['served']:.1f}  watched "
              f"{med['watched']:.1f}{churned}  peak "
              f"{med['peak']:.1f}  (steady: {min(m['steady'] for m in runs):.1f}-"
              f"{max(m['steady'] for m in runs):.1f})")  # fmt: skip
    return med


def rerun_in_own_netns(script: str) -> int:
    """Runs `script` with this process's arguments plus --in-own-netns in a new network
    namespace (loopback up); returns its exit code."""
    if os.geteuid() != 0:
        raise SystemExit("the deployed configuration runs kube-proxy-lite: needs root")
    argv = [sys.executable, script, *sys.argv[1:], "--in-own-netns"]
    up = 'ip link set lo up && exec "$@"'
    return subprocess.run(["unshare", "--net", "sh", "-c", up, "sh", *argv]).returncode


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--watch-list", action="store_true")
    p.add_argument("--config", choices=("both", "deployed", "no-proxy"), default="both")
    p.add_argument("--runs", type=int, default=1, help="fresh agents per configuration")
    p.add_argument("--in-own-netns", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.config != "no-proxy" and not args.in_own_netns:
        return rerun_in_own_netns(__file__)
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as d:
        workdir = Path(d)
        api, api_url, admin_url = start_api(workdir)
        try:
            admin(admin_url, "/batch", {"ops": dataset()})
            runs = range(max(1, args.runs))
            for name, proxy in (("no proxy", False), ("deployed", True)):
                if args.config in ("both", name.replace(" ", "-")):
                    results[name] = [
                        measure(workdir, api_url, admin_url, args.watch_list, proxy) for _ in runs
                    ]
        finally:
            api.terminate()
            api.wait(20)
    print(f"objects: {PODS} pods, {SERVICES} services, {SERVICES} endpointslices "
          f"({SERVICES * EPS_PER_SLICE} endpoints); watch_list={args.watch_list}")  # fmt: skip
    print(f"agent command: {AGENT_PYTHON} {' '.join(AGENT_FLAGS)} edgesite-agent.pyz run "
          f"--config FILE (env {AGENT_ENV or 'none'})")  # fmt: skip
    print(f"deployed proxy settings: {json.dumps(DEPLOYED_PROXY)} (in this benchmark's netns)")
    medians = {name: report(name, runs) for name, runs in results.items()}
    # The deployed configuration's figure is the last line, the one the target applies to.
    if "no proxy" in medians:
        print(f"agent_rss_no_proxy_mib: {medians['no proxy']['steady']:.1f}")
    if "deployed" in medians:
        print(f"agent_rss_mib: {medians['deployed']['steady']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
