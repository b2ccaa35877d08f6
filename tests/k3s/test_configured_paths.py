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

import yaml

REPO = Path(__file__).resolve().parents[2]

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


def _worker_play_of_upgrade(tmp_path: Path) -> Path:
    """upgrade.yml's worker play as written, its roles skipped (when: false; their defaults
    still load, as in the real play), behind a play that marks the masters upgraded and
    healthy the way role k3s_server does, so the worker gate lets the worker through."""
    plays = yaml.safe_load((REPO / "playbooks" / "upgrade.yml").read_text())
    (worker_play,) = [p for p in plays if str(p.get("name", "")).startswith("Upgrade | workers")]
    worker_play["roles"] = [
        {**(r if isinstance(r, dict) else {"role": r}), "when": False} for r in worker_play["roles"]
    ]
    masters_done = {
        "name": "Masters passed their gate (what role k3s_server leaves behind)",
        "hosts": "edgesite_masters",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Mark",
                "ansible.builtin.set_fact": {
                    "__k3s_server_site_token": "t",
                    "__k3s_server_healthy": True,
                    "k3s_server_address": "10.0.0.11",
                },
            }
        ],
    }
    path = tmp_path / "upgrade_workers.yml"
    path.write_text(yaml.safe_dump([masters_done, worker_play], sort_keys=False))
    return path


def test_upgrade_reads_and_drains_each_worker_through_the_configured_binaries(
    tmp_path, run_playbook
):
    # Master and worker each get their own non-default bin dir (k3s_artifacts_bin_dir, which the
    # k3s_server_binary / k3s_agent_binary role defaults follow), as an inventory would set it.
    log = tmp_path / "k3s-calls.log"
    binaries = {}
    for host in ("m1", "w1"):
        bin_dir = tmp_path / host / "k3s-bin"
        bin_dir.mkdir(parents=True)
        binaries[host] = bin_dir / "k3s"
        binaries[host].write_text(
            f'#!/bin/sh\nprintf \'%s\\n\' "$(printf \'%s\\037\' "$0" "$@")" >> {log}\n'
            # An older release than the pinned one: the worker is upgraded, so it is drained.
            "[ \"$1\" = --version ] && echo 'k3s version v1.36.3+k3s1 (fake)'\nexit 0\n"
        )
        binaries[host].chmod(0o755)
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "ansible_become": False,
            },
            "children": {
                "edgesite_masters": {
                    "hosts": {
                        "m1": {
                            "edgesite_node_ip": "10.0.0.11",
                            "k3s_artifacts_bin_dir": str(binaries["m1"].parent),
                        }
                    }
                },
                "edgesite_workers": {
                    "hosts": {
                        "w1": {
                            "edgesite_node_ip": "10.0.0.21",
                            "k3s_artifacts_bin_dir": str(binaries["w1"].parent),
                        }
                    }
                },
            },
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(json.dumps(inventory))
    result = run_playbook(str(_worker_play_of_upgrade(tmp_path)), path)
    made = calls(log)
    # The worker's own binary tells what it runs ...
    assert [str(binaries["w1"]), "--version"] in made, result.output
    # ... and kubectl runs on the first master through the master's binary.
    drains = [c for c in made if c[1:3] == ["kubectl", "drain"]]
    assert [c[:4] for c in drains] == [[str(binaries["m1"]), "kubectl", "drain", "w1"]], (
        result.output
    )
    assert [str(binaries["m1"]), "kubectl", "uncordon", "w1"] in made, result.output
    assert result.rc == 0, result.output


def agent_config(tmp_path: Path, run_playbook, **host_vars) -> dict:
    """The edge agent's agent.json as role edgesite_agent would write it for a worker with these
    inventory variables (the role's defaults and vars rendered; its tasks skipped)."""
    return role_value(
        tmp_path, run_playbook, "edgesite_agent", "__edgesite_agent_config", **host_vars
    )


def role_value(tmp_path: Path, run_playbook, role: str, variable: str, **host_vars):
    """A variable of `role` as it renders for worker w1 (defaults loaded, tasks skipped)."""
    out = tmp_path / f"{role}.json"
    playbook = tmp_path / "render_agent_config.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "w1",
                    "gather_facts": False,
                    "roles": [{"role": role, "when": False}],
                    "tasks": [
                        {
                            "name": "Render",
                            "ansible.builtin.copy": {
                                "content": "{{ " + variable + " | to_json }}",
                                "dest": str(out),
                                "mode": "0600",
                            },
                        }
                    ],
                }
            ]
        )
    )
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "ansible_become": False,
            },
            "children": {
                "edgesite_workers": {
                    "hosts": {"w1": {"edgesite_node_ip": "10.0.0.21", **host_vars}}
                }
            },
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(json.dumps(inventory))
    result = run_playbook(str(playbook), path)
    assert result.rc == 0, result.output
    return json.loads(out.read_text())


def test_edge_agent_reads_the_kubeconfigs_under_the_k3s_agents_data_dir(tmp_path, run_playbook):
    # k3s's agent writes its kubeconfigs under the data-dir it runs with.
    config = agent_config(tmp_path, run_playbook, k3s_agent_extra_config={"data-dir": "/srv/k3s"})
    assert config["kubeconfig"] == "/srv/k3s/agent/kubelet.kubeconfig"
    assert config["proxy_kubeconfig"] == "/srv/k3s/agent/kubeproxy.kubeconfig"


def test_edge_agent_kubeconfigs_default_to_k3s_default_data_dir(tmp_path, run_playbook):
    config = agent_config(tmp_path, run_playbook)
    assert config["kubeconfig"] == "/var/lib/rancher/k3s/agent/kubelet.kubeconfig"
    assert config["proxy_kubeconfig"] == "/var/lib/rancher/k3s/agent/kubeproxy.kubeconfig"
    # The alias k3s also accepts as a config key.
    config = agent_config(tmp_path, run_playbook, k3s_agent_extra_config={"d": "/data/k3s"})
    assert config["kubeconfig"] == "/data/k3s/agent/kubelet.kubeconfig"


def test_air_gap_images_land_where_the_agents_k3s_imports_them(tmp_path, run_playbook):
    # k3s imports images only from <its data-dir>/agent/images.
    images = role_value(tmp_path, run_playbook, "k3s_artifacts", "k3s_artifacts_images_dir",
                        k3s_agent_extra_config={"data-dir": "/srv/k3s"})  # fmt: skip
    assert images == "/srv/k3s/agent/images"
    default = role_value(tmp_path, run_playbook, "k3s_artifacts", "k3s_artifacts_images_dir")
    assert default == "/var/lib/rancher/k3s/agent/images"
