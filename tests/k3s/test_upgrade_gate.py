"""upgrade.yml refuses what the Kubernetes version skew policy does not support.

The filter (edgesite.fleet.k3s_upgrade_problems) is tested directly; the playbook test runs the
real upgrade.yml against hosts on a local connection whose "k3s" is a script at a non-default
path printing a version (the gate must read it through the configured binary path), in check
mode so that a gate that let the run through could change nothing on this machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ansible_collections.edgesite.fleet.plugins.filter.k3s_upgrade_problems import (
    k3s_upgrade_problems,
)

from k3s.artifacts import add_version


def rec(host, running, role="master", site="s1", **extra):
    return {"host": host, "site": site, "role": role, "running": running, **extra}


def test_one_minor_step_and_patch_steps_pass():
    records = [rec("m1", "v1.36.4+k3s1"), rec("w1", "v1.36.4+k3s1", "worker")]
    assert k3s_upgrade_problems(records, "v1.37.0+k3s1") == []
    assert k3s_upgrade_problems(records, "v1.36.6+k3s2") == []
    assert k3s_upgrade_problems(records, "v1.36.4+k3s1") == []


def test_minor_skip_names_host_versions_and_fix():
    output = "k3s version v1.36.4+k3s1 (0123abcd)\ngo version go1.24.4\n"
    problems = k3s_upgrade_problems([rec("m1", output)], "v1.38.0+k3s1")
    assert len(problems) == 1
    message = problems[0]
    assert message.startswith("site 's1': m1 runs k3s v1.36.4+k3s1 (Kubernetes 1.36)")
    assert "v1.38.0+k3s1 (Kubernetes 1.38) would skip Kubernetes 1.37" in message
    assert "upgrade to v1.37.x first" in message


def test_minor_downgrade_refused_patch_downgrade_not():
    problems = k3s_upgrade_problems([rec("m1", "v1.37.2+k3s1")], "v1.36.6+k3s1")
    assert len(problems) == 1
    assert "would downgrade a Kubernetes minor version" in problems[0]
    assert "m1 runs k3s v1.37.2+k3s1" in problems[0]
    assert k3s_upgrade_problems([rec("m1", "v1.36.6+k3s1")], "v1.36.5+k3s1") == []


def test_major_change_and_unreadable_version_refused():
    assert (
        "changes the major version"
        in k3s_upgrade_problems([rec("m1", "v1.36.4+k3s1")], "v2.0.0+k3s1")[0]
    )
    problems = k3s_upgrade_problems([rec("m1", "k3s version garbage")], "v1.36.4+k3s1")
    assert "not a k3s version this check can read" in problems[0]
    assert "not a k3s release" in k3s_upgrade_problems([rec("m1", "")], "1.36")[0]


def test_new_host_is_an_install_not_an_upgrade():
    records = [rec("m1", "v1.36.4+k3s1"), rec("w9", "", "worker")]
    assert k3s_upgrade_problems(records, "v1.37.1+k3s1") == []


def test_worker_newer_than_master_refused():
    # The worker keeps what it runs (no target: e.g. excluded from this upgrade), the masters
    # would go below it.
    records = [rec("m1", "v1.36.4+k3s1"), rec("w1", "v1.36.6+k3s1", "worker", target="")]
    problems = k3s_upgrade_problems(records, "v1.36.5+k3s1")
    assert problems == [
        "site 's1': worker w1 would run k3s v1.36.6+k3s1, newer than master m1 (v1.36.5+k3s1); "
        "a k3s agent must not be newer than its servers: upgrade the site's masters first "
        "(run upgrade.yml for the whole site)"
    ]
    # Per-host targets: workers pinned newer than their masters.
    records = [
        rec("m1", "v1.36.4+k3s1"),
        rec("w1", "v1.36.4+k3s1", "worker", target="v1.37.0+k3s1"),
    ]
    assert (
        "worker w1 would run k3s v1.37.0+k3s1" in k3s_upgrade_problems(records, "v1.36.5+k3s1")[0]
    )


def test_by_site_keeps_good_sites_out():
    records = [
        rec("a1", "v1.36.4+k3s1", site="a"),
        rec("b1", "v1.35.1+k3s1", site="b"),
        rec("b2", "v1.36.4+k3s1", "worker", site="b"),
    ]
    by_site = k3s_upgrade_problems(records, "v1.37.0+k3s1", by_site=True)
    assert list(by_site) == ["b"]
    assert "b1 runs k3s v1.35.1+k3s1" in by_site["b"][0]


def fake_k3s(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True)
    binary = directory / "k3s"
    binary.write_text(f'#!/bin/sh\necho "k3s version {version} (fake)"\necho "go version go1.24"\n')
    binary.chmod(0o755)
    return directory


def test_upgrade_playbook_refuses_a_minor_skip_before_any_host_changes(tmp_path, run_playbook):
    target = "v1.38.0+k3s1"
    add_version(tmp_path / "art", target)
    hosts = {"edgesite_masters": {"m1": "10.0.0.11"}, "edgesite_workers": {"w1": "10.0.0.21"}}
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "ansible_become": False,
                "edgesite_k3s_version": target,
                "edgesite_artifacts_dir": str(tmp_path / "art"),
                "prereq_time_sync_required": False,
            },
            "children": {
                group: {
                    "hosts": {
                        h: {
                            "edgesite_node_ip": ip,
                            # Not /usr/local/bin: the gate must use the configured binary.
                            "k3s_artifacts_bin_dir": str(
                                fake_k3s(tmp_path / "bin" / h, "v1.36.4+k3s1")
                            ),
                        }
                        for h, ip in members.items()
                    }
                }
                for group, members in hosts.items()
            },
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(json.dumps(inventory))
    result = run_playbook("playbooks/upgrade.yml", path, "--check")
    assert result.rc != 0, result.output
    out = result.output
    assert "Upgrade refused, nothing was changed on site 'default'" in out, out
    for host in ("m1", "w1"):
        assert f"{host} runs k3s v1.36.4+k3s1 (Kubernetes 1.36)" in out, out
    assert "upgrade to v1.37.x first" in out, out
    # Both hosts stopped at the gate: no later play started.
    assert "Upgrade | masters" not in out, out
    assert "Upgrade | workers" not in out, out
