#!/usr/bin/env python3
"""Controller run time of site.yml on a simulated fleet: our ansible.cfg vs Ansible defaults.

Builds a fleet of podman test hosts reached over SSH (default: 5 sites x (1 master + 1 worker),
SQLite datastore). site.yml runs on fresh hosts once per configuration; then, on the last
fleet, idempotent re-runs of ours and of the defaults alternate for --rounds pairs (the fastest
of each counts: other work on a shared machine only ever slows a run down). Prints per-host
seconds (wall time / hosts) of every run, and as its last line `fleet_rerun_ratio: X`
(ours / defaults, idempotent re-run; target <= 0.5).

Edge sites sit behind WAN links, and a controller's run time over them is mostly round trips
(what pipelining, ControlPersist and forks save). This kernel has no netem, so by default the
controller reaches every host through a userspace relay with a fixed round trip
(benchmarks/wan_link.py, --rtt-ms, default 50: an LTE or long DSL link). The re-runs are also
timed over loopback, with that ratio printed before the last line; --rtt-ms 0 times loopback
only. The test hosts share this machine's CPUs with the controller, which a real fleet does not.

k3s here is the project's test stand-in (no k3s binary can be had on this machine), installed
through the air-gapped artifact path, and the edge agent play is skipped (the stand-in serves
no Kubernetes API). The figures measure the controller and the roles, not k3s.

With --variants-only, one fleet is converged and then timed for one idempotent re-run per
variant of our ansible.cfg (one setting changed each, facts cache warmed first) and for the
defaults with and without pipelining, to show which settings matter. A variant config is a
copy of ansible.cfg under a temporary directory with its relative paths made absolute.

Needs root, podman and the dev venv:  .venv/bin/python benchmarks/fleet_run.py [--sites 5]
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from k3s.artifacts import add_version  # noqa: E402  (test helper: builds the stand-in release)
from wan_link import WanLink  # noqa: E402

K3S_VERSION = "v1.36.4+k3s1"
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
    return hosts, len(inventory_hosts(inventory))


def inventory_hosts(inventory: dict) -> list[dict]:
    """Every host entry of a testhosts inventory, whose hosts sit in its groups."""
    return [
        host for group in inventory["all"]["children"].values() for host in group["hosts"].values()
    ]


def defaults_config(workdir: Path) -> Path:
    # Ansible's defaults, plus only what it needs to find this repo's roles and collections.
    path = workdir / "ansible-defaults.cfg"
    path.write_text(
        f"[defaults]\nroles_path = {REPO / 'roles'}\ncollections_path = {REPO / 'collections'}\n"
    )
    return path


# Our ansible.cfg with one setting changed: (section, key, value); value None removes the key.
VARIANTS: dict[str, list[tuple[str, str, str | None]]] = {
    "edgesite": [],
    "edgesite, pipelining off": [("ssh_connection", "pipelining", "false")],
    "edgesite, forks 5": [("defaults", "forks", "5")],
    "edgesite, no fact cache": [
        ("defaults", "gathering", None),
        ("defaults", "fact_caching", None),
    ],
    "edgesite, no profile_tasks": [
        ("defaults", "callbacks_enabled", "edgesite.fleet.site_recap"),
    ],
    "edgesite, facts injected as vars": [("defaults", "inject_facts_as_vars", "true")],
}
# Keys of ansible.cfg that hold paths relative to the file (Ansible resolves them so).
PATH_KEYS = ("inventory", "roles_path", "collections_path", "fact_caching_connection")


def variant_config(workdir: Path, label: str, changes: list[tuple[str, str, str | None]]) -> Path:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "ansible.cfg")
    for key in PATH_KEYS:
        if parser.has_option("defaults", key):
            parser.set("defaults", key, str(REPO / parser.get("defaults", key)))
    for section, key, value in changes:
        if value is None:
            parser.remove_option(section, key)
        else:
            parser.set(section, key, value)
    path = workdir / ("variant-" + "".join(c if c.isalnum() else "-" for c in label) + ".cfg")
    with path.open("w") as f:
        parser.write(f)
    return path


def run_site(
    inventory: Path, config: Path, workdir: Path, label: str, facts: str | None = None
) -> float:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(config),
        ANSIBLE_CACHE_PLUGIN_CONNECTION=str(workdir / f"facts-{facts or label}"),
        ANSIBLE_NOCOLOR="1",
    )
    start = time.monotonic()
    proc = subprocess.run(
        [bin_path("ansible-playbook"), "-i", str(inventory), str(REPO / "site.yml"),
         "--skip-tags", "edge_agent"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    # Kept next to the other run files: the per-task timings (profile_tasks) explain a figure.
    log = workdir / ("run-" + "".join(c if c.isalnum() else "-" for c in label) + ".log")
    with log.open("a") as f:
        f.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
        raise SystemExit(f"fleet_run: site.yml failed ({label})")
    return elapsed


def changed_tasks(workdir: Path, label: str) -> int:
    """changed= summed over the hosts of the last run logged for label (0: idempotent)."""
    log = workdir / ("run-" + "".join(c if c.isalnum() else "-" for c in label) + ".log")
    recaps = log.read_text().split("PLAY RECAP")
    return sum(int(n) for n in re.findall(r" changed=(\d+)", recaps[-1]))


def time_variants(inventory: Path, hosts: int, workdir: Path) -> None:
    """Idempotent re-runs of the current (converged) fleet, one per variant of our config,
    plus Ansible's defaults with and without pipelining, all on the same hosts."""
    # Fills the shared facts cache, so cached variants start warm as a real re-run would.
    run_site(inventory, variant_config(workdir, "warm", []), workdir, "warm", facts="variants")
    configs = {label: variant_config(workdir, label, c) for label, c in VARIANTS.items()}
    configs["ansible-defaults"] = defaults_config(workdir)
    piped = workdir / "ansible-defaults-pipelining.cfg"
    pipelining = "[ssh_connection]\npipelining = true\n"
    piped.write_text(configs["ansible-defaults"].read_text() + pipelining)
    configs["ansible-defaults, pipelining on"] = piped
    for label, config in configs.items():
        rerun = run_site(inventory, config, workdir, label, facts="variants")
        print(f"variant {label}: re-run per-host seconds {rerun / hosts:.2f}", flush=True)


def over_link(inventory: Path, rtt_ms: float, stack: contextlib.ExitStack) -> Path:
    """The inventory as the controller reaches it: through a WAN link of `rtt_ms` that lives as
    long as `stack` (the inventory itself for 0). Each host keeps its own address as the name
    its SSH host key is checked against."""
    if rtt_ms <= 0:
        return inventory
    data = json.loads(inventory.read_text())  # fresh_fleet wrote it as plain JSON
    hosts = inventory_hosts(data)
    link = stack.enter_context(WanLink([(host["ansible_host"], 22) for host in hosts], rtt_ms))
    for host in hosts:
        address = host["ansible_host"]
        host.update(
            ansible_host="127.0.0.1",
            ansible_port=link.ports[(address, 22)],
            ansible_ssh_extra_args=f"-o HostKeyAlias={address}",
        )
    linked = inventory.with_name(inventory.stem + "-wan.json")
    linked.write_text(json.dumps(data))
    return linked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="leave the hosts running")
    parser.add_argument("--rounds", type=int, default=2, help="re-run pairs (fastest counts)")
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=50.0,
        help="round trip of the simulated WAN link to the hosts (0: loopback only)",
    )
    parser.add_argument("--log-dir", type=Path, help="copy every run's output here")
    parser.add_argument(
        "--variants-only",
        action="store_true",
        help="one fleet: converge it, then time a re-run per config variant (no ratio)",
    )
    args = parser.parse_args()
    subprocess.run([*TESTHOSTS, "image"], check=True, capture_output=True)
    results: dict[str, dict[str, float]] = {}
    link_label = f"{args.rtt_ms:g} ms link" if args.rtt_ms > 0 else "loopback"
    with tempfile.TemporaryDirectory(prefix="fleet-run-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        artifacts = workdir / "artifacts"
        add_version(artifacts, K3S_VERSION)
        configs = {"edgesite": REPO / "ansible.cfg", "ansible-defaults": defaults_config(workdir)}
        try:
            if args.variants_only:
                inventory, hosts = fresh_fleet("fleetbench", args.sites, workdir, artifacts)
                run_site(inventory, configs["edgesite"], workdir, "converge", facts="variants")
                time_variants(over_link(inventory, args.rtt_ms, stack), hosts, workdir)
                return 0
            # site.yml on fresh hosts, once per configuration, over the link.
            for label, config in configs.items():
                inventory, hosts = fresh_fleet("fleetbench", args.sites, workdir, artifacts)
                linked = over_link(inventory, args.rtt_ms, stack)
                first = run_site(linked, config, workdir, label)
                results[label] = {"first": first / hosts}
                print(f"{label}: {hosts} hosts in {args.sites} sites, {link_label}; per-host "
                      f"seconds: site.yml {first / hosts:.2f}", flush=True)  # fmt: skip
            # Idempotent re-runs on the same converged hosts, ours and the defaults back to back,
            # so load from other work on the machine drifts less between the two, over the link
            # and, for comparison, over loopback. Our facts cache is warmed on these hosts first,
            # as on any second run.
            run_site(linked, configs["edgesite"], workdir, "warm", facts="rerun")
            paths = {"rerun": linked}
            if linked != inventory:
                paths["rerun_loopback"] = inventory
            reruns: dict[tuple[str, str], list[float]] = {
                (label, path): [] for label in configs for path in paths
            }
            for _ in range(args.rounds):
                for path, reached in paths.items():
                    for label, config in configs.items():
                        elapsed = run_site(reached, config, workdir, label, facts="rerun")
                        reruns[(label, path)].append(elapsed / hosts)
                        where = link_label if path == "rerun" else "loopback"
                        changed = changed_tasks(workdir, label)
                        print(f"{label}: idempotent re-run per-host seconds {elapsed / hosts:.2f}, "
                              f"{where} (changed {changed})", flush=True)  # fmt: skip
            for (label, path), figures in reruns.items():
                # The fastest round is the least disturbed by other load on the machine.
                results[label][path] = min(figures)
        finally:
            if args.log_dir:
                args.log_dir.mkdir(parents=True, exist_ok=True)
                for log in workdir.glob("run-*.log"):
                    shutil.copy(log, args.log_dir / log.name)
            if not args.keep:
                subprocess.run([*TESTHOSTS, "down", "--name", "fleetbench"], capture_output=True)
    ours, defaults = results["edgesite"], results["ansible-defaults"]
    for label, figures in results.items():
        loopback = ""
        if "rerun_loopback" in figures:
            loopback = f", over loopback {figures['rerun_loopback']:.2f}"
        print(f"{label}: per-host seconds, {link_label}: site.yml {figures['first']:.2f}, "
              f"idempotent re-run {figures['rerun']:.2f}{loopback}")  # fmt: skip
    print(f"fleet_first_run_ratio: {ours['first'] / defaults['first']:.2f}")
    if "rerun_loopback" in ours:
        ratio = ours["rerun_loopback"] / defaults["rerun_loopback"]
        print(f"fleet_rerun_ratio_loopback: {ratio:.2f}")
    print(f"fleet_rerun_ratio: {ours['rerun'] / defaults['rerun']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
