"""Podman test hosts of one site, an artifact directory with the k3s TEST STAND-IN, and the
inventory that points site.yml at both. Shared by the test modules that run whole playbooks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from k3s.artifacts import add_version

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "tools" / "containers.conf"
TESTHOSTS = [sys.executable, str(REPO / "tools" / "testhosts.py")]

# Settings every test site needs on podman test hosts.
TEST_HOST_VARS = {
    "prereq_time_sync_required": False,
    # Test containers lack CAP_SYS_RESOURCE: the units cannot raise their limits.
    "k3s_server_service_limits": {},
    "k3s_agent_service_limits": {},
}


@dataclass
class StandInSite:
    name: str
    inventory: Path
    artifacts: Path
    masters: list[str]
    workers: list[str]


def stand_up(
    name: str, masters: int, workers: int, tmp: Path, version: str, **site_vars: object
) -> StandInSite:
    """Start the hosts and write their inventory; `site_vars` go to all hosts."""
    hosts = tmp / "hosts.yml"
    subprocess.run(
        [*TESTHOSTS, "up", "--name", name, "--masters", str(masters),
         "--workers", str(workers), "--inventory", str(hosts)],
        check=True, capture_output=True,
    )  # fmt: skip
    artifacts = tmp / "artifacts"
    add_version(artifacts, version)
    text = hosts.read_text()
    inventory = json.loads(text[text.index("{") :])
    inventory["all"]["vars"].update(
        edgesite_artifacts_dir=str(artifacts), **TEST_HOST_VARS, **site_vars
    )
    hosts.write_text(json.dumps(inventory))
    children = inventory["all"]["children"]
    return StandInSite(
        name=name,
        inventory=hosts,
        artifacts=artifacts,
        masters=list(children["edgesite_masters"]["hosts"]),
        workers=list(children.get("edgesite_workers", {}).get("hosts", {})),
    )


def tear_down(site: StandInSite) -> None:
    subprocess.run([*TESTHOSTS, "down", "--name", site.name], check=False, capture_output=True)


def sh(host: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", "exec", host, "sh", "-c", script],
        env={**os.environ, "CONTAINERS_CONF": str(CONF)},
        capture_output=True,
        text=True,
        check=check,
    )


def recap(output: str) -> dict[str, dict[str, int]]:
    """Per-host counters of the PLAY RECAP."""
    stats = {}
    for host, rest in re.findall(r"^(\S+)\s+: (ok=.*)$", output, re.M):
        stats[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", rest)}
    return stats


def changed_tasks(output: str) -> list[str]:
    """'TASK name -> host' for every task that reported a change (for assertion messages)."""
    found, task = [], ""
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed: ["):
            found.append(f"{task} -> {line.split('[', 1)[1].split(']', 1)[0]}")
    return found


def standin_records(host: str, name: str) -> list[dict]:
    """What the stand-in recorded on a host (starts.jsonl, commands.jsonl, joined.jsonl)."""
    out = sh(host, f"cat /var/lib/rancher/k3s/standin/{name} 2>/dev/null", check=False)
    return [json.loads(line) for line in out.stdout.splitlines()]
