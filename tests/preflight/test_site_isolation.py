"""One broken site never holds back the others, and the run's recap names it and why."""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent


def two_sites(b_worker_ip: str = "10.0.0.2") -> dict:
    return {
        "all": {
            "vars": {
                # Nothing listens on the discard port: a contacted host fails fast.
                "ansible_connection": "ssh",
                "ansible_host": "127.0.0.1",
                "ansible_port": 9,
                "preflight_verify_k3s_artifacts": False,
            },
            "children": {
                "site_a": {
                    "vars": {"edgesite_site": "a"},
                    "hosts": {
                        "a-m1": {"edgesite_node_ip": "10.0.0.1"},
                        "a-w1": {"edgesite_node_ip": "10.0.0.2"},
                    },
                },
                "site_b": {
                    "vars": {"edgesite_site": "b"},
                    "hosts": {
                        "b-m1": {"edgesite_node_ip": "10.0.0.1"},
                        "b-w1": {"edgesite_node_ip": b_worker_ip},
                    },
                },
                "edgesite_masters": {"hosts": {"a-m1": {}, "b-m1": {}}},
                "edgesite_workers": {"hosts": {"a-w1": {}, "b-w1": {}}},
            },
        }
    }


def recap_counts(output: str, host: str) -> dict[str, int]:
    line = re.search(rf"^{re.escape(host)}\s+:(.*)$", output, re.M)
    assert line, output
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.group(1))}


def test_broken_site_fails_alone_and_the_recap_names_it(tmp_path, run_playbook):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps(two_sites(b_worker_ip="10.0.0.1")))
    result = run_playbook("playbooks/preflight.yml", inventory)
    assert result.rc != 0, result.output
    for host in ("a-m1", "a-w1"):
        assert recap_counts(result.output, host)["failed"] == 0, result.output
    for host in ("b-m1", "b-w1"):
        assert recap_counts(result.output, host)["failed"] == 1, result.output
    recap = result.output[result.output.index("EDGESITE SITE RECAP") :]
    assert "site b: FAILED (2 of 2 hosts)" in recap
    assert "site a: ok (2 hosts)" in recap
    assert "sites: 1 ok, 1 failed (b)" in recap
    assert "b-w1: failed at 'preflight : Check this host's site'" in recap
    # The broken site is listed first, so a long fleet recap starts with what needs attention.
    assert recap.index("site b:") < recap.index("site a:")


def test_a_site_whose_host_fails_holds_back_its_other_hosts(tmp_path, run_playbook):
    inventory_data = two_sites()
    inventory_data["all"]["children"]["site_b"]["hosts"]["b-w1"]["edgesite_node_labels"] = "x"
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps(inventory_data))
    result = run_playbook("playbooks/preflight.yml", inventory)
    assert recap_counts(result.output, "b-m1")["failed"] == 1, result.output
    assert "site 'b': b-w1 failed the checks above, so the whole site is held back" in (
        result.output
    )
    assert recap_counts(result.output, "a-m1")["failed"] == 0, result.output


def test_unreachable_host_is_named_with_its_site(tmp_path, run_playbook):
    inventory_data = two_sites()
    # Site a is this machine itself (read-only ping); site b's hosts cannot be reached.
    inventory_data["all"]["children"]["site_a"]["vars"].update(
        ansible_connection="local", ansible_python_interpreter="{{ ansible_playbook_python }}"
    )
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps(inventory_data))
    result = run_playbook(str(HERE / "playbooks" / "reach.yml"), inventory)
    recap = result.output[result.output.index("EDGESITE SITE RECAP") :]
    assert "site b: FAILED (2 of 2 hosts)" in recap, result.output
    assert "b-m1: unreachable at 'Ping'" in recap
    assert "site a: ok (2 hosts)" in recap
