"""Offline cold start: the agent starts with the API unreachable and a store holding 110
pods, 1,000 Services and 1,000 EndpointSlices (10,000 endpoints). Measures process spawn ->
/readyz 200 (store loaded and replayed; in the deployed configuration, with kube-proxy-lite
enabled, also the rules applied from the store; the benchmark then runs in a network
namespace of its own, as agent_footprint does, which needs root). Last line
`offline_ready_s: X` (target <= 1), deployed configuration.

    python benchmarks/cold_start.py [--config deployed|no-proxy]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agent_footprint as fp


def main() -> int:
    from tests.kubeapi import free_port

    p = argparse.ArgumentParser()
    p.add_argument("--config", choices=("deployed", "no-proxy"), default="deployed")
    p.add_argument("--in-own-netns", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    proxy = args.config == "deployed"
    if proxy and not args.in_own_netns:
        return fp.rerun_in_own_netns(__file__)
    runs = run(proxy, free_port())
    print(f"config: {args.config}")
    print(f"runs_s: {' '.join(f'{r:.3f}' for r in runs)}")
    print(f"offline_ready_s: {min(runs):.3f}")
    return 0


def run(proxy: bool, port: int) -> list[float]:
    with tempfile.TemporaryDirectory() as d:
        workdir = Path(d)
        api, api_url, admin_url = fp.start_api(workdir)
        try:
            fp.admin(admin_url, "/batch", {"ops": fp.dataset()})
            cfg = fp.write_config(workdir, api_url, False, port, proxy)
            agent = fp.spawn_agent(cfg)
            fp.wait_synced(agent, port)
            agent.terminate()
            agent.wait(20)
        finally:
            api.terminate()  # the API is now unreachable (connection refused)
            api.wait(20)
        runs = []
        for _ in range(3):
            if proxy:
                # A cold start is a reboot: no rules left over from the previous run.
                fp.sh("nft", "flush", "ruleset")
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
    return runs


if __name__ == "__main__":
    sys.exit(main())
