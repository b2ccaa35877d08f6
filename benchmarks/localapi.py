"""The agent's local API as node-local clients see it (issue 20): list latency, watch event
delivery from an upstream change to local watchers, 100 concurrent clients, and how fast a
cut upstream watch catches up.

Setup as in agent_footprint.py: the test API server in its own process with 110 pods on the
node, 1,000 Services and 1,000 EndpointSlices of 10 endpoints (10,000 endpoints); the agent
as the systemd unit runs it (the zipapp, `python3 -I -S`), without the proxy.

Figures:
- `list_pods_ms` / `list_pods_table_ms` / `list_endpointslices_ms`: GET of 110 pods (JSON, and
  the Table kubectl asks for) and of every EndpointSlice (10,000 endpoints), p50 and p99;
- `concurrent_100_p50_ms` / `_p99_ms`: 100 clients at once, each listing the pods 5 times;
- `watch_p50_ms` / `watch_p99_ms`: an upstream change (a pod's annotation written through the
  test API's admin port, timed from just before the write) until each of 5 local watchers
  (plain HTTP watches of pods) has read its event; `--changes` changes 20 ms apart;
- `reconnect_s`: 10 upstream stream cuts 1 s apart (half an event, then the connection
  dies), each followed by a change: seconds from the cut to the change reaching a local
  watcher.
Last line: `localapi_watch_p99_ms: X` (target <= 50).

    python benchmarks/localapi.py [--changes N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.agent_footprint import (  # noqa: E402
    NODE,
    admin,
    dataset,
    spawn_agent,
    start_api,
    wait_synced,
    write_config,
)
from tests.kubeapi import free_port  # noqa: E402

WATCHERS = 5
CLIENTS = 100
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def get(port: int, path: str, accept: str = "application/json") -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"Accept": accept})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise SystemExit(f"GET {path}: {resp.status} {body[:200]!r}")
        return body
    finally:
        conn.close()


def timed(port: int, path: str, n: int, accept: str = "application/json") -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        get(port, path, accept)
        out.append((time.perf_counter() - t) * 1000)
    return out


class Watcher(threading.Thread):
    """A plain HTTP watch of the node's pods; records when each pod's change arrived."""

    def __init__(self, port: int, rv: str) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.conn.request("GET", f"/api/v1/pods?watch=true&resourceVersion={rv}"
                          "&allowWatchBookmarks=true")  # fmt: skip
        self.resp = self.conn.getresponse()
        self.seen: dict[str, float] = {}  # "pod-name/mark" -> arrival (perf_counter)

    def run(self) -> None:
        try:
            for line in self.resp:
                now = time.perf_counter()
                ev = json.loads(line)
                meta = ev["object"]["metadata"]
                mark = (meta.get("annotations") or {}).get("bench/mark")
                if mark:
                    self.seen[mark] = now
        except (OSError, ValueError, http.client.HTTPException):
            return

    def close(self) -> None:
        self.conn.close()


def pod(i: int, mark: str) -> dict[str, Any]:
    return {"metadata": {"name": f"pod-{i}", "namespace": f"ns{i % 10}",
                         "labels": {"app": f"app-{i % 50}"},
                         "annotations": {"bench/mark": mark}},
            "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "app:1"}]},
            "status": {"phase": "Running"}}  # fmt: skip


def wait_mark(watchers: list[Watcher], mark: str, timeout: float = 30) -> list[float]:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if all(mark in w.seen for w in watchers):
            return [w.seen[mark] for w in watchers]
        time.sleep(0.0005)
    raise SystemExit(f"change {mark} did not reach every watcher within {timeout} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--changes", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="localapi-bench-") as tmp:
        workdir = Path(tmp)
        api, api_url, admin_url = start_api(workdir)
        agent = None
        try:
            admin(admin_url, "/batch", {"ops": dataset()})
            port = free_port()
            agent = spawn_agent(write_config(workdir, api_url, False, port, proxy=False))
            wait_synced(agent, port)
            figures: dict[str, float] = {}
            for name, path, accept in (
                ("list_pods", "/api/v1/pods", "application/json"),
                ("list_pods_table", "/api/v1/pods", TABLE),
                ("list_endpointslices", "/apis/discovery.k8s.io/v1/endpointslices",
                 "application/json"),
            ):  # fmt: skip
                ms = timed(port, path, 30, accept)
                figures[f"{name}_p50_ms"], figures[f"{name}_p99_ms"] = pct(ms, 50), pct(ms, 99)

            lat: list[float] = []
            lock = threading.Lock()

            def client() -> None:
                got = timed(port, "/api/v1/pods", 5)
                with lock:
                    lat.extend(got)

            threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            figures["concurrent_100_s"] = time.perf_counter() - t0
            figures["concurrent_100_p50_ms"] = pct(lat, 50)
            figures["concurrent_100_p99_ms"] = pct(lat, 99)

            rv = json.loads(get(port, "/api/v1/pods?limit=1"))["metadata"]["resourceVersion"]
            watchers = [Watcher(port, rv) for _ in range(WATCHERS)]
            for w in watchers:
                w.start()
            delays: list[float] = []
            for i in range(args.changes):
                mark = f"c{i}"
                t = time.perf_counter()
                admin(admin_url, "/objects/pods", pod(i % 110, mark))
                delays += [(at - t) * 1000 for at in wait_mark(watchers, mark)]
                time.sleep(0.02)
            figures["watch_p50_ms"], figures["watch_p99_ms"] = pct(delays, 50), pct(delays, 99)

            catch_up: list[float] = []
            for i in range(10):
                cut = time.perf_counter()
                admin(admin_url, "/drop-streams", {"mid_event": True})
                mark = f"cut{i}"
                admin(admin_url, "/objects/pods", pod(i, mark))
                catch_up.append(wait_mark(watchers[:1], mark)[0] - cut)
                time.sleep(max(0.0, cut + 1.0 - time.perf_counter()))
            for w in watchers:
                w.close()
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(10)
            api.terminate()
            api.wait(10)
    for name, value in figures.items():
        print(f"{name}: {value:.2f}")
    print("reconnect_s (10 cuts 1 s apart):", " ".join(f"{d:.3f}" for d in catch_up))
    print(f"reconnect_max_s: {max(catch_up):.3f}")
    print(f"reconnect_median_s: {statistics.median(catch_up):.3f}")
    print(f"localapi_watch_p99_ms: {figures['watch_p99_ms']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
