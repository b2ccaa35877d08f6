"""Offline cold start: the agent starts with the API unreachable and a store holding 110
pods, 1,000 Services and 1,000 EndpointSlices (10,000 endpoints). Measures process spawn ->
/readyz 200 (store loaded and replayed). Last line `offline_ready_s: X` (target <= 1).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agent_footprint as fp


def main() -> int:
    from tests.kubeapi import free_port

    with tempfile.TemporaryDirectory() as d:
        workdir = Path(d)
        api, api_url, admin_url = fp.start_api(workdir)
        try:
            fp.admin(admin_url, "/batch", {"ops": fp.dataset()})
            port = free_port()
            agent, cfg, _ = fp.synced_agent(workdir, admin_url, api_url, False, port)
            agent.terminate()
            agent.wait(20)
        finally:
            api.terminate()  # the API is now unreachable (connection refused)
            api.wait(20)
        runs = []
        for _ in range(3):
            t0 = time.monotonic()
            agent = fp.spawn_agent(cfg)
            while not fp.ready(port):
                if time.monotonic() - t0 > 60:
                    agent.kill()
                    raise SystemExit("agent not ready offline within 60 s")
                time.sleep(0.005)
            runs.append(time.monotonic() - t0)
            agent.terminate()
            agent.wait(20)
    print(f"runs_s: {' '.join(f'{r:.3f}' for r in runs)}")
    print(f"offline_ready_s: {min(runs):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
