"""Preflight stops a site whose inputs real k3s or the kubelet would refuse, before any host is
contacted: extra-config keys that are not k3s flags, labels the kubelet may not set on itself,
malformed taints, a site name that cannot name files and groups.

Same harness as test_preflight_inventory: hosts point at a closed loopback port, so a run that
got past preflight would show 'Gathering Facts' / UNREACHABLE.
"""

from __future__ import annotations

import copy

import pytest
from test_preflight_inventory import set_all, set_host, valid_inventory, write_inventory


def bad_site_name(inv):
    inv["all"]["vars"]["edgesite_site"] = "Store_42"


BAD_INPUTS = {
    "agent extra config key k3s agent does not know": (
        set_host("edgesite_workers", "w1", "k3s_agent_extra_config", {"kubelet-args": ["a=b"]}),
        [
            "host 'w1': k3s_agent_extra_config key 'kubelet-args' is not a k3s agent flag",
            "flag provided but not defined: -kubelet-args",
            "did you mean 'kubelet-arg'?",
        ],
    ),
    "server extra config key k3s server would skip": (
        set_all("k3s_server_extra_config", {"flannel-backnd": "host-gw"}),
        [
            "host 'm1': k3s_server_extra_config key 'flannel-backnd' is not a k3s server flag",
            "Unknown flag --flannel-backnd found in config.yaml, skipping",
            "did you mean 'flannel-backend'?",
        ],
    ),
    "extra config value of the wrong type": (
        set_all("k3s_server_extra_config", {"secrets-encryption": "yes"}),
        ["k3s_server_extra_config key 'secrets-encryption' is a bool flag"],
    ),
    "extra config key EdgeSite manages": (
        set_all("k3s_server_extra_config", {"node-name": "x"}),
        ["k3s_server_extra_config sets 'node-name'", "set edgesite_node_name instead"],
    ),
    "label the kubelet refuses": (
        set_all("edgesite_node_labels", {"kubernetes.io/role": "camera"}),
        [
            "edgesite_node_labels label 'kubernetes.io/role': the kubelet refuses to start",
            "e.g. 'example.com/role'",
        ],
    ),
    "bad taint": (
        set_all("edgesite_node_taints", ["dedicated=camera:NoSchedul"]),
        [
            "edgesite_node_taints taint 'dedicated=camera:NoSchedul' is not valid",
            "the effect 'NoSchedul' is not one of NoSchedule, PreferNoSchedule, NoExecute",
        ],
    ),
    "bad site name": (
        bad_site_name,
        [
            "Site 'Store_42' is not valid",
            "edgesite_site 'Store_42' is not a valid site name",
            "Use e.g. 'store-42'",
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_input_k3s_would_refuse_stops_preflight(case, tmp_path, run_playbook, artifacts_dir):
    change, expected = BAD_INPUTS[case]
    inventory = copy.deepcopy(valid_inventory())
    change(inventory)
    result = run_playbook("site.yml", write_inventory(tmp_path, inventory, artifacts_dir))
    assert result.rc != 0, result.output
    for text in expected:
        assert text in result.output, result.output
    assert "Gathering Facts" not in result.output, result.output
    assert "UNREACHABLE" not in result.output, result.output


def good_inputs(inv):
    inv["all"]["vars"].update(
        edgesite_site="store-0042",
        edgesite_node_labels={"topology.kubernetes.io/zone": "shelf-2", "example.com/cam": "yes"},
        edgesite_node_taints=["dedicated=camera:NoSchedule"],
        k3s_server_extra_config={
            "secrets-encryption": True,
            "etcd-s3-timeout": "5m",
            "kube-apiserver-arg+": ["audit-log-maxage=30"],
            # A secret in a string flag: checked, never copied into the preflight record.
            "etcd-s3-secret-key": "do-not-print-me",
        },
        k3s_agent_extra_config={"kubelet-arg": ["max-pods=50"]},
        preflight_show_records=True,
    )


def test_inputs_k3s_accepts_pass_preflight(tmp_path, run_playbook, artifacts_dir):
    inventory = copy.deepcopy(valid_inventory())
    good_inputs(inventory)
    result = run_playbook(
        "playbooks/preflight.yml", write_inventory(tmp_path, inventory, artifacts_dir)
    )
    assert result.rc == 0, result.output
    # preflight_show_records printed every record: the labels are there, the secret is not.
    assert "shelf-2" in result.output, result.output
    assert "do-not-print-me" not in result.output, result.output
