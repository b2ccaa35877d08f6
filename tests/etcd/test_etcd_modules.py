"""edgesite.fleet etcd_* modules run through `ansible` against a real 3-member etcd on loopback."""

from __future__ import annotations

import http.client
import ssl

import pytest

from .ansible_run import run_module
from .cluster import EtcdCluster
from .gateway import Gateway, GatewayError
from .integration import converge_twice


def test_info_reports_three_healthy_voting_members_and_one_leader(cluster3: EtcdCluster) -> None:
    info = run_module("etcd_info", cluster3.conn_args())
    assert not info.get("failed"), info
    assert info["changed"] is False
    assert info["healthy"] is True
    assert sorted(m["name"] for m in info["members"]) == ["m1", "m2", "m3"]
    assert not any(m["is_learner"] for m in info["members"])
    leaders = [e for e in info["endpoints"] if e["is_leader"]]
    assert len(leaders) == 1
    assert info["leader"]["name"] == leaders[0]["name"] == cluster3.leader().name
    assert {e["cluster_id"] for e in info["endpoints"]} == {info["cluster_id"]}
    for entry in info["endpoints"]:
        assert entry["db_size"] > 0
        assert entry["revision"] >= 1
        assert entry["version"].startswith("3.")
    assert info["alarms"] == []


def test_info_fails_with_named_endpoint_when_nothing_answers(cluster3: EtcdCluster) -> None:
    dead = "https://127.0.0.1:9"  # discard port: nothing listens there on loopback
    info = run_module("etcd_info", cluster3.conn_args([dead]))
    assert info.get("failed") is True
    assert dead in info["msg"]


def test_v2_api_is_off(cluster3: EtcdCluster) -> None:
    gw = cluster3.gateway()
    try:
        status, _ = gw.raw(cluster3.endpoints[0], "GET", "/v2/keys")
    finally:
        gw.close()
    assert status == 404


def test_client_without_certificate_is_refused(cluster3: EtcdCluster) -> None:
    # Trusts the server, presents no certificate: the TLS handshake must fail.
    gw = Gateway(str(cluster3.pki.ca), None, None)
    try:
        with pytest.raises(GatewayError):
            gw.post(cluster3.endpoints[0], "/v3/kv/range", {"key": "Zm9v"})
    finally:
        gw.close()


def test_client_with_foreign_ca_certificate_is_refused(cluster3: EtcdCluster) -> None:
    other = cluster3.pki.other_client
    ctx = ssl.create_default_context(cafile=str(cluster3.pki.ca))
    ctx.load_cert_chain(str(other.cert), str(other.key))
    port = cluster3.members[0].client_port
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    try:
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            conn.request("GET", "/health")
            conn.getresponse().read()
    finally:
        conn.close()


def test_member_add_as_learner_promote_and_remove(cluster3: EtcdCluster) -> None:
    new = cluster3.new_member("m4")
    base = cluster3.conn_args()
    add = {**base, "name": "m4", "peer_urls": [new.peer_url], "learner": True}

    added = converge_twice("etcd_member", add)
    assert added["member"]["is_learner"] is True
    assert added["member"]["started"] is False
    assert f"m4={new.peer_url}" in added["initial_cluster"]
    assert new.peer_url not in added["diff"]["before"]
    assert f"{new.peer_url} learner (not started)" in added["diff"]["after"]

    # The member exists before its process starts, which then joins the existing cluster.
    cluster3.start(new, state="existing", initial_cluster=added["initial_cluster"])
    try:
        cluster3.wait_healthy([new])
        promoted = converge_twice("etcd_member", {**base, "name": "m4", "state": "promoted"})
        assert promoted["member"]["is_learner"] is False

        info = run_module("etcd_info", cluster3.conn_args([*cluster3.endpoints, new.client_url]))
        assert info["healthy"] is True, info
        m4 = next(m for m in info["members"] if m["name"] == "m4")
        assert m4["is_learner"] is False and m4["started"] is True

        removed = converge_twice("etcd_member", {**base, "name": "m4", "state": "absent"})
        assert removed["member"] == {}
        assert sorted(m["name"] for m in removed["members"]) == ["m1", "m2", "m3"]
    finally:
        cluster3.stop(new)
    info = run_module("etcd_info", base)
    assert info["healthy"] is True
    assert sorted(m["name"] for m in info["members"]) == ["m1", "m2", "m3"]


def test_promote_of_unknown_member_fails_with_the_fix(cluster3: EtcdCluster) -> None:
    result = run_module(
        "etcd_member", {**cluster3.conn_args(), "name": "nope", "state": "promoted"}
    )
    assert result.get("failed") is True
    assert "nope" in result["msg"] and "state=present" in result["msg"]


def test_member_present_without_start_then_absent_by_peer_url(cluster3: EtcdCluster) -> None:
    # A voting member that never starts: etcd accepts it (3 of 4 still form a quorum) and the
    # module must still find it by peer URL although it has no name yet.
    ghost = cluster3.new_member("m5")
    base = cluster3.conn_args()
    added = run_module("etcd_member", {**base, "name": "m5", "peer_urls": [ghost.peer_url]})
    assert added["changed"] is True and added["member"]["is_learner"] is False
    again = run_module("etcd_member", {**base, "name": "m5", "peer_urls": [ghost.peer_url]})
    assert again["changed"] is False
    gone = converge_twice("etcd_member", {**base, "peer_urls": [ghost.peer_url], "state": "absent"})
    assert all(ghost.peer_url not in m["peer_urls"] for m in gone["members"])


def test_compact_and_defragment_one_member_at_a_time(cluster3: EtcdCluster) -> None:
    gw = cluster3.gateway()
    endpoint = cluster3.endpoints[0]
    try:
        # About 4 MiB of values, then deleted: history and free pages to reclaim.
        gw.put_many(endpoint, {f"/defrag/{i:05d}": "x" * 1024 for i in range(4000)})
        gw.delete_prefix(endpoint, "/defrag/")
        gw.put(endpoint, "/defrag-keep", "still here")
    finally:
        gw.close()
    before = run_module("etcd_info", cluster3.conn_args())
    leader_endpoint = next(e["endpoint"] for e in before["endpoints"] if e["is_leader"])

    args = {
        **cluster3.conn_args(),
        "compact": True,
        "compact_retain_revisions": 0,
        "defragment": True,
    }
    done = converge_twice("etcd_maintenance", args)
    assert done["compacted_revision"] == max(e["revision"] for e in before["endpoints"])
    assert sorted(done["defragmented"]) == sorted(cluster3.endpoints)
    # Followers first, the leader last.
    assert done["defragmented"][-1] == leader_endpoint
    sizes_before = {e["endpoint"]: e["db_size"] for e in before["endpoints"]}
    for member in done["members"]:
        assert member["db_size"] < sizes_before[member["endpoint"]]

    gw = cluster3.gateway()
    try:
        _, kept = gw.get_prefix(endpoint, "/defrag-keep")
        assert kept == {"/defrag-keep": "still here"}
        _, gone = gw.get_prefix(endpoint, "/defrag/")
        assert gone == {}
    finally:
        gw.close()


def test_nospace_alarm_is_disarmed_and_writes_resume(cluster3: EtcdCluster) -> None:
    gw = cluster3.gateway()
    endpoint = cluster3.endpoints[1]
    status = gw.status(endpoint)
    # Raise a real NOSPACE alarm through etcd's alarm API (what etcd does itself at the quota).
    gw.post(
        endpoint,
        "/v3/maintenance/alarm",
        {"action": "ACTIVATE", "memberID": status["header"]["member_id"], "alarm": "NOSPACE"},
    )
    try:
        with pytest.raises(GatewayError, match="space"):
            gw.put(endpoint, "/alarm/blocked", "no")
        info = run_module("etcd_info", cluster3.conn_args())
        assert info["healthy"] is False
        assert [a["alarm"] for a in info["alarms"]] == ["NOSPACE"]

        result = converge_twice("etcd_maintenance", {**cluster3.conn_args(), "disarm_alarms": True})
        assert [a["alarm"] for a in result["disarmed"]] == ["NOSPACE"]
        assert any("NOSPACE" in w for w in result.get("warnings", []))

        assert gw.put(endpoint, "/alarm/after", "yes") > 0
        info = run_module("etcd_info", cluster3.conn_args())
        assert info["alarms"] == [] and info["healthy"] is True
    finally:
        # Never leave the shared cluster read-only for the next test, whatever happened above.
        gw.post(
            endpoint,
            "/v3/maintenance/alarm",
            {"action": "DEACTIVATE", "memberID": status["header"]["member_id"], "alarm": "NOSPACE"},
        )
        gw.close()
