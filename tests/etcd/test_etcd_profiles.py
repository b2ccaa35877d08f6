"""One etcd profile for both datastore forms: k3s's embedded etcd gets the external etcd's values.

Ansible renders, for each edge/default x lan/wan pair chosen the way a user chooses it
(edgesite_etcd_profile / edgesite_etcd_network on the site), the two real templates with the
real roles' defaults: roles/k3s_server's /etc/rancher/k3s/config.yaml for an embedded site and
roles/etcd's /etc/etcd/etcd.conf.yml. Every `etcd-arg` of the first must be a key of the second
with the same value, and every profile and network key must be passed. Nothing is installed:
the plays run only the roles' check tasks (asserts, set_fact) and write into a temporary
directory on the controller.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PAIRS = [(p, n) for p in ("edge", "default") for n in ("lan", "wan")]
TEMPLATES = {
    "k3s": REPO / "roles/k3s_server/templates/config.yaml.j2",
    "etcd": REPO / "roles/etcd/templates/etcd.conf.yml.j2",
}
MASTERS = {"m1": "10.0.0.11", "m2": "10.0.0.12", "m3": "10.0.0.13"}


def play(profile: str, network: str, out: Path) -> dict:
    return {
        "name": f"Render {profile}/{network}",
        "hosts": "edgesite_masters",
        "gather_facts": False,
        "vars": {
            "edgesite_etcd_profile": profile,
            "edgesite_etcd_network": network,
            "edgesite_datastore": "embedded",
            # Membership facts the etcd role's discovery would set; not profile settings.
            "__etcd_initial_cluster": "m1=https://10.0.0.11:2380",
            "__etcd_initial_cluster_state": "new",
            "__etcd_initial_cluster_token": "test",
        },
        "tasks": [
            {"ansible.builtin.include_role": {"name": "edgesite", "public": True}},
            {
                "ansible.builtin.include_role": {
                    "name": "etcd",
                    "tasks_from": "validate.yml",
                    "public": True,
                },
            },
            {
                "ansible.builtin.include_role": {
                    "name": "k3s_server",
                    "tasks_from": "facts.yml",
                    "public": True,
                },
            },
            {
                "ansible.builtin.set_fact": {
                    "__rendered": {
                        name: f"{{{{ lookup('ansible.builtin.template', '{template}') }}}}"
                        for name, template in TEMPLATES.items()
                    }
                },
            },
            {
                "ansible.builtin.copy": {
                    "dest": f"{out}/{profile}-{network}.json",
                    "content": "{{ dict(ansible_play_hosts | zip(ansible_play_hosts"
                    " | map('extract', hostvars, '__rendered'))) | to_json }}",
                    "mode": "0600",
                },
                "run_once": True,
            },
        ],
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("profiles")
    out = tmp / "out"
    out.mkdir()
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "edgesite_site": "render",
            },
            "children": {
                "edgesite_masters": {
                    "hosts": {h: {"edgesite_node_ip": ip} for h, ip in MASTERS.items()}
                }
            },
        }
    }
    (tmp / "hosts.yml").write_text(json.dumps(inventory))
    (tmp / "render.yml").write_text(json.dumps([play(p, n, out) for p, n in PAIRS]))
    return tmp


def test_embedded_etcd_args_equal_external_etcd_config(rendered, run_playbook):
    result = run_playbook(str(rendered / "render.yml"), rendered / "hosts.yml")
    assert result.rc == 0, result.output[-4000:]
    site = yaml.safe_load((REPO / "roles/edgesite/defaults/main.yml").read_text())
    seen = {}
    for profile, network in PAIRS:
        files = json.loads((rendered / "out" / f"{profile}-{network}.json").read_text())
        assert set(files) == set(MASTERS)
        for host in MASTERS:
            k3s = yaml.safe_load(files[host]["k3s"])
            etcd = yaml.safe_load(files[host]["etcd"])
            args = dict(arg.split("=", 1) for arg in k3s["etcd-arg"])
            # Each etcd-arg carries the value the external etcd's config file has for that key.
            assert args == {key: str(etcd[key]) for key in args}, (profile, network, host)
            # ... and the whole profile and network timing are passed, nothing left out.
            wanted = (
                site["edgesite_etcd_profiles"][profile] | site["edgesite_etcd_networks"][network]
            )
            assert set(args) == set(wanted)
            assert {k: str(v) for k, v in wanted.items()} == args
            # The embedded form keeps k3s's scheduled snapshots; cluster-init on the first only.
            assert k3s["etcd-snapshot-schedule-cron"] == "0 */12 * * *"
            assert k3s["etcd-snapshot-retention"] == 5
            assert k3s.get("cluster-init", False) is (host == "m1")
            seen[profile, network] = args
    # The choice matters: the memory lever follows the profile, raft timing the network.
    assert seen["edge", "lan"]["snapshot-count"] == "2000"
    assert seen["default", "lan"]["snapshot-count"] == "100000"
    assert seen["edge", "lan"]["heartbeat-interval"] == "100"
    assert seen["edge", "wan"]["heartbeat-interval"] == "500"
    assert seen["default", "wan"]["election-timeout"] == "5000"
