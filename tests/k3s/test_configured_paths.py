"""Day-2 playbooks use the configured k3s binary and data dir, never a bare `k3s` or k3s's
default /var/lib/rancher/k3s (issue 16, defect 7).

A bare `k3s` fails under sudo's secure_path on RHEL-like hosts (no /usr/local/bin in it); here
the binary lives at a path that is on no PATH at all, so a bare `k3s` fails the same way. The
hosts are local-connection inventory hosts; the "k3s" is a script that records its arguments
(and answers `kubectl get nodes -o json`), and the data and config dirs are under tmp_path.
Runs that could change this machine run in check mode.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FAKE_K3S = """#!/bin/sh
printf '%s\\n' "$(printf '%s\\037' "$0" "$@")" >> {log}
if [ "$1 $2 $3" = "kubectl get nodes" ]; then
  cat <<'EOF'
{{"apiVersion": "v1", "kind": "List", "items": [{{"metadata": {{"name": "m1"}},
 "status": {{"conditions": [{{"type": "Ready", "status": "True"}}]}}}}]}}
EOF
fi
"""


def setup(tmp_path: Path, **host_vars) -> tuple[Path, Path, dict]:
    bin_dir = tmp_path / "opt" / "k3s-bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "k3s-calls.log"
    binary = bin_dir / "k3s"
    binary.write_text(FAKE_K3S.format(log=log))
    binary.chmod(0o755)
    paths = {
        "k3s_server_binary": str(binary),
        "k3s_server_data_dir": str(tmp_path / "data" / "k3s"),
        "k3s_server_config_dir": str(tmp_path / "etc" / "k3s"),
    }
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "ansible_become": False,
                "edgesite_datastore": "embedded",
                "prereq_time_sync_required": False,
                "preflight_verify_k3s_artifacts": False,
                **paths,
            },
            "children": {
                "edgesite_masters": {
                    "hosts": {"m1": {"edgesite_node_ip": "10.0.0.11", **host_vars}}
                },
                "edgesite_workers": {"hosts": {}},
            },
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(json.dumps(inventory))
    return path, log, paths


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [line.split("\x1f")[:-1] for line in log.read_text().splitlines()]


def test_embedded_backup_runs_the_configured_binary_with_config_and_data_dir(
    tmp_path, run_playbook
):
    inventory, log, paths = setup(tmp_path)
    result = run_playbook("playbooks/etcd_backup.yml", inventory)
    assert result.rc == 0, result.output
    config = paths["k3s_server_config_dir"] + "/config.yaml"
    data = paths["k3s_server_data_dir"]
    flags = ["--config", config, "--data-dir", data]
    assert calls(log) == [
        [paths["k3s_server_binary"], "etcd-snapshot", "save", *flags, "--name", "etcd-snapshot"],
        [
            paths["k3s_server_binary"], "etcd-snapshot", "prune", *flags,
            "--name", "etcd-snapshot", "--snapshot-retention", "7",
        ],
    ], result.output  # fmt: skip


def test_verify_asks_the_first_master_through_the_configured_binary(tmp_path, run_playbook):
    inventory, log, paths = setup(tmp_path, edgesite_verify_retries=1, edgesite_verify_delay=0)
    result = run_playbook("playbooks/verify.yml", inventory)
    assert [paths["k3s_server_binary"], "kubectl", "get", "nodes", "-o", "json"] in calls(log), (
        result.output
    )
    assert result.rc == 0, result.output


def test_reset_removes_the_configured_data_dir(tmp_path, run_playbook):
    inventory, _log, paths = setup(tmp_path)
    data = Path(paths["k3s_server_data_dir"])
    (data / "server" / "db").mkdir(parents=True)
    result = run_playbook(
        "playbooks/reset.yml", inventory, "--check", "-e", "edgesite_reset_confirm=default"
    )
    assert result.rc == 0, result.output
    # Check mode: the file task reports what it would remove.
    assert f"changed: [m1] => (item={data})" in result.output, result.output
