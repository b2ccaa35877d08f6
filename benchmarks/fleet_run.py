#!/usr/bin/env python3
"""Controller run time of site.yml on a simulated fleet: our ansible.cfg vs Ansible defaults.

Builds a fleet of podman test hosts reached over SSH (default: 5 sites x (1 master + 1 worker),
SQLite datastore), then for each configuration: site.yml on fresh hosts, and an idempotent
re-run. Prints per-host seconds (wall time / hosts) of every run, and as its last line
`fleet_rerun_ratio: X` (ours / defaults, idempotent re-run; target <= 0.5).

k3s here is the project's test stand-in (no k3s binary can be had on this machine), installed
through the air-gapped artifact path, and the edge agent play is skipped (the stand-in serves
no Kubernetes API). The figures measure the controller and the roles, not k3s.

Needs root, podman and the dev venv:  .venv/bin/python benchmarks/fleet_run.py [--sites 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from k3s.artifacts import add_version  # noqa: E402  (test helper: builds the stand-in release)

K3S_VERSION = "v1.31.4+k3s1"
TESTHOSTS = [sys.executable, str(REPO / "tools" / "testhosts.py")]


def bin_path(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def fresh_fleet(name: str, sites: int, workdir: Path, artifacts: Path) -> tuple[Path, int]:
    subprocess.run([*TESTHOSTS, "down", "--name", name], check=True, capture_output=True)
    hosts = workdir / f"{name}.yml"
    subprocess.run(
        [*TESTHOSTS, "up", "--name", name, "--sites", str(sites), "--masters", "1",
         "--workers", "1", "--connection", "ssh", "--inventory", str(hosts)],
        check=True, capture_output=True,
    )  # fmt: skip
    text = hosts.read_text()
    inventory = json.loads(text[text.index("{") :])
    inventory["all"]["vars"].update(
        edgesite_datastore="sqlite",
        edgesite_artifacts_dir=str(artifacts),
        prereq_time_sync_required=False,
        k3s_server_service_limits={},
        k3s_agent_service_limits={},
        k3s_server_kubeconfig_dir=str(workdir / "kube" / name),
    )
    hosts.write_text(json.dumps(inventory))
    count = sum(len(g["hosts"]) for g in inventory["all"]["children"].values())
    return hosts, count


def defaults_config(workdir: Path) -> Path:
    # Ansible's defaults, plus only what it needs to find this repo's roles and collections.
    path = workdir / "ansible-defaults.cfg"
    path.write_text(
        f"[defaults]\nroles_path = {REPO / 'roles'}\ncollections_path = {REPO / 'collections'}\n"
    )
    return path


def run_site(inventory: Path, config: Path, workdir: Path, label: str) -> float:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(config),
        ANSIBLE_CACHE_PLUGIN_CONNECTION=str(workdir / f"facts-{label}"),
        ANSIBLE_NOCOLOR="1",
    )
    start = time.monotonic()
    proc = subprocess.run(
        [bin_path("ansible-playbook"), "-i", str(inventory), str(REPO / "site.yml"),
         "--skip-tags", "edge_agent"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
        raise SystemExit(f"fleet_run: site.yml failed ({label})")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="leave the hosts running")
    args = parser.parse_args()
    subprocess.run([*TESTHOSTS, "image"], check=True, capture_output=True)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="fleet-run-") as tmp:
        workdir = Path(tmp)
        artifacts = workdir / "artifacts"
        add_version(artifacts, K3S_VERSION)
        configs = {"edgesite": REPO / "ansible.cfg", "ansible-defaults": defaults_config(workdir)}
        try:
            for label, config in configs.items():
                inventory, hosts = fresh_fleet("fleetbench", args.sites, workdir, artifacts)
                first = run_site(inventory, config, workdir, label)
                rerun = run_site(inventory, config, workdir, label)
                results[label] = {"first": first / hosts, "rerun": rerun / hosts}
                print(
                    f"{label}: {hosts} hosts in {args.sites} sites; per-host seconds: "
                    f"site.yml {first / hosts:.2f}, idempotent re-run {rerun / hosts:.2f}",
                    flush=True,
                )
        finally:
            if not args.keep:
                subprocess.run([*TESTHOSTS, "down", "--name", "fleetbench"], capture_output=True)
    ours, defaults = results["edgesite"], results["ansible-defaults"]
    print(f"fleet_first_run_ratio: {ours['first'] / defaults['first']:.2f}")
    print(f"fleet_rerun_ratio: {ours['rerun'] / defaults['rerun']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
