"""Two masters on k3s's embedded etcd: the witness cannot help (issue 17, defect 2).

k3s runs its embedded etcd only inside `k3s server`; EdgeSite's witness host runs `k3s agent`, so
on embedded etcd it is never an etcd voter. Two masters are then two voters: quorum (2 of 2) is
lost when either master stops. Preflight refuses such a site, witness or not, unless the operator
accepts the risk with edgesite_etcd_two_member_risk_acknowledged; the message names the site, the
cause and the fixes. External etcd with a witness (role etcd makes it the third member) stays
accepted.
"""

from __future__ import annotations

import copy
import json

import pytest
from ansible_collections.edgesite.fleet.plugins.module_utils.site_model import (
    site_problems_by_site,
)

GROUPS = ["edgesite_masters", "edgesite_workers"]
CAUSE = "an embedded-etcd witness would be a k3s agent, not an etcd voter"
FIXES = (
    "add a third master",
    "edgesite_datastore: external with edgesite_etcd_witness",
    "edgesite_etcd_two_member_risk_acknowledged: true",
)


def record(host, master=True, **settings):
    base = {
        "host": host,
        "site": "store-7",
        "is_master": master,
        "is_worker": not master,
        "node_name": host,
        "node_ip": {"m1": "10.0.0.11", "m2": "10.0.0.12", "m3": "10.0.0.13"}.get(host, "10.0.0.21"),
        "datastore": "embedded",
        "k3s_version": "v1.36.4+k3s1",
        "etcd_witness": "",
        "etcd_two_member_risk_acknowledged": False,
        "site_vip": "",
        "tls_san": [],
    }
    return base | settings


def problems(masters=("m1", "m2"), **settings):
    records = [record(m, **settings) for m in masters] + [record("w1", False, **settings)]
    return site_problems_by_site(records, GROUPS).get("store-7", [])


def assert_explained(found):
    assert len(found) == 1, found
    message = found[0]
    assert message.startswith("site 'store-7' has 2 masters"), message
    assert CAUSE in message
    assert "two voters" in message and "either master stops" in message
    for fix in FIXES:
        assert fix in message, (fix, message)


def test_embedded_two_masters_with_a_witness_is_refused():
    assert_explained(problems(etcd_witness="w1"))


def test_embedded_two_masters_without_a_witness_is_refused_with_the_embedded_fixes():
    found = problems()
    assert_explained(found)
    assert "no etcd witness" in found[0]


def test_embedded_two_masters_accepted_when_the_risk_is_acknowledged():
    assert problems(etcd_two_member_risk_acknowledged=True) == []
    assert problems(etcd_two_member_risk_acknowledged=True, etcd_witness="w1") == []


def test_external_two_masters_with_a_witness_is_accepted():
    assert problems(datastore="external", etcd_witness="w1") == []


def test_external_two_masters_without_a_witness_keeps_its_own_message():
    found = problems(datastore="external")
    assert len(found) == 1 and "has 2 masters and no etcd witness" in found[0]
    assert CAUSE not in found[0]


def test_three_embedded_masters_are_accepted():
    assert problems(masters=("m1", "m2", "m3")) == []


# --- the same rule stops preflight.yml before any host is contacted ------------------------


def inventory(artifacts_dir, **site_vars):
    hosts = {"m1": "10.0.0.11", "m2": "10.0.0.12", "w1": "10.0.0.21"}
    entry = {h: {"edgesite_node_ip": ip} for h, ip in hosts.items()}
    return {
        "all": {
            "vars": {
                # Nothing listens on the discard port: any connection attempt fails fast.
                "ansible_host": "127.0.0.1",
                "ansible_port": 9,
                "ansible_connection": "ssh",
                "prereq_time_sync_required": False,
                "edgesite_site": "store-7",
                "edgesite_artifacts_dir": str(artifacts_dir),
                **site_vars,
            },
            "children": {
                "edgesite_masters": {"hosts": {h: entry[h] for h in ("m1", "m2")}},
                "edgesite_workers": {"hosts": {"w1": entry["w1"]}},
            },
        }
    }


@pytest.mark.parametrize(
    ("site_vars", "refused"),
    [
        ({"edgesite_datastore": "embedded", "edgesite_etcd_witness": "w1"}, True),
        (
            {
                "edgesite_datastore": "embedded",
                "edgesite_etcd_witness": "w1",
                "edgesite_etcd_two_member_risk_acknowledged": True,
            },
            False,
        ),
        ({"edgesite_datastore": "external", "edgesite_etcd_witness": "w1"}, False),
    ],
    ids=["embedded-witness", "embedded-acknowledged", "external-witness"],
)
def test_preflight_playbook(site_vars, refused, tmp_path, run_playbook, artifacts_dir):
    path = tmp_path / "hosts.yml"
    path.write_text(json.dumps(copy.deepcopy(inventory(artifacts_dir, **site_vars))))
    result = run_playbook("playbooks/preflight.yml", path)
    if not refused:
        assert result.rc == 0, result.output[-4000:]
        return
    assert result.rc != 0
    assert CAUSE in result.output, result.output[-4000:]
    assert "site 'store-7' has 2 masters on embedded etcd" in result.output
    assert "UNREACHABLE" not in result.output
