"""cluster-init or the server to join for masters of an embedded-etcd site (issue 17, defect 1).

k3s starts a member with etcd data as it is, joins an empty one to its server URL, and starts a
NEW cluster for an empty one without (pkg/etcd/etcd.go ETCD.Start).
"""

from __future__ import annotations

from ansible_collections.edgesite.fleet.plugins.module_utils.embedded_join import embedded_join


def site(*states):
    return [
        {"host": f"m{i}", "address": f"10.0.0.{i}", "has_etcd": has, "server": server}
        for i, (has, server) in enumerate(states, start=1)
    ]


def test_new_site_first_master_starts_the_cluster_the_others_join_it():
    masters = site((False, ""), (False, ""), (False, ""))
    assert embedded_join(masters, "m1", 6443) == {"cluster_init": True, "server": ""}
    assert embedded_join(masters, "m3", 6443) == {"cluster_init": False,
                                                  "server": "https://10.0.0.1:6443"}  # fmt: skip


def test_rebuilt_first_master_joins_a_master_that_holds_data():
    masters = site((False, ""), (True, "https://10.0.0.1:6443"), (True, "https://10.0.0.1:6443"))
    assert embedded_join(masters, "m1", 6443) == {"cluster_init": False,
                                                  "server": "https://10.0.0.2:6443"}  # fmt: skip


def test_masters_with_data_keep_what_their_config_says():
    masters = site((True, "https://10.0.0.2:6443"), (True, "https://10.0.0.1:6443"), (True, ""))
    assert embedded_join(masters, "m1", 6443)["server"] == "https://10.0.0.2:6443"
    assert embedded_join(masters, "m2", 6443)["server"] == "https://10.0.0.1:6443"
    # The first master of a healthy site: cluster-init as written at creation.
    healthy = site((True, ""), (True, "https://10.0.0.1:6443"))
    assert embedded_join(healthy, "m1", 6443) == {"cluster_init": True, "server": ""}
