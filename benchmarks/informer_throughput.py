"""Informer throughput against the test API server (a separate process, TLS):
- relist_10k_s: a full list of 10,000 pods into an empty store (diff + one transaction each);
- informer_events_per_s: 20,000 queued watch events (updates) parsed and applied to the store.
Last line `informer_events_per_s: X` (target >= 5,000); a line `relist_10k_s: X` (<= 2).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agent_footprint as fp

N_PODS, N_EVENTS = 10_000, 20_000


def pod(i: int, gen: int) -> dict[str, object]:
    meta = {"name": f"p{i}", "namespace": "default", "labels": {"gen": str(gen)}}
    spec = {"nodeName": fp.NODE, "containers": [{"name": "c", "image": "img"}]}
    return {"metadata": meta, "spec": spec}


def main() -> int:
    from edgesite_agent.client import KubeClient
    from edgesite_agent.dispatch import Dispatcher
    from edgesite_agent.informer import Reflector, ResourceSpec
    from edgesite_agent.kubeconfig import load_kubeconfig
    from edgesite_agent.status import Status
    from edgesite_agent.store import Store
    from edgesite_agent.versions import Versions

    log = logging.getLogger("bench")
    with tempfile.TemporaryDirectory() as d:
        workdir = Path(d)
        api, api_url, admin_url = fp.start_api(workdir)
        try:
            ops = [{"op": "upsert", "resource": "pods", "object": pod(i, 0)} for i in range(N_PODS)]
            fp.admin(admin_url, "/batch", {"ops": ops})
            cfg = fp.write_config(workdir, api_url, False, 0, False)
            client = KubeClient(load_kubeconfig(workdir / "kubelet.kubeconfig"), read_timeout=60)
            store = Store(workdir / "bench.db", log)
            status = Status()
            stop = threading.Event()
            spec = ResourceSpec(
                "Pod", "v1", "/api/v1/pods", field_selector=f"spec.nodeName={fp.NODE}"
            )
            disp = Dispatcher(store, status, log)
            r = Reflector(spec, client, disp, Versions(), status, log, stop, idle_timeout=60)
            t0 = time.monotonic()
            r._list()
            relist = time.monotonic() - t0
            assert len(r.known) == N_PODS
            start_rv = int(r.rv)
            ops = [{"op": "upsert", "resource": "pods", "object": pod(i % N_PODS, 1 + i // N_PODS)}
                   for i in range(N_EVENTS)]  # fmt: skip
            final = fp.admin(admin_url, "/batch", {"ops": ops})["resourceVersion"]
            t0 = time.monotonic()
            th = threading.Thread(target=lambda: _watch(r), daemon=True)
            th.start()
            while int(r.rv or 0) < final:
                time.sleep(0.001)
            took = time.monotonic() - t0
            stop.set()
            r.close()
            applied = final - start_rv
            del cfg
        finally:
            api.terminate()
            api.wait(20)
    print(f"relist_10k_s: {relist:.3f}")
    print(f"events: {applied} in {took:.3f}s")
    print(f"informer_events_per_s: {applied / took:.0f}")
    return 0


def _watch(r: object) -> None:
    # The benchmark closes the stream when done; that ends the watch with an error.
    with contextlib.suppress(Exception):
        r._watch(initial=False)  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
