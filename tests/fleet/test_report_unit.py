"""Unit tests of the report model: per-node and per-agent problems, site building, sorting,
and HTML escaping. Plain dicts in, plain dicts out: no servers."""

from __future__ import annotations

from ansible_collections.edgesite.fleet.plugins.module_utils import report, site_info

from .conftest import K3S, k8s_node

INVENTORY = [
    {"host": "m1", "node_name": "m1", "is_master": True, "is_worker": False},
    {"host": "w1", "node_name": "w1", "is_master": False, "is_worker": True},
]
GOOD_METRICS = "# TYPE edgesite_agent_seconds_since_api_contact gauge\n" + (
    "edgesite_agent_seconds_since_api_contact 3.5\nedgesite_agent_ready 1\n"
)


def api_with(*nodes: dict) -> dict:
    return {"url": "https://x:6443", "reachable": True, "nodes": list(nodes),
            "readyz_status": 200, "readyz": {"etcd": True}, "metrics": {}}  # fmt: skip


def agent(node: str = "w1", **kw: object) -> dict:
    raw = {"host": node, "node": node, "readyz_status": 200, "metrics": GOOD_METRICS,
           "version": "edgesite-agent 0.1.0"}  # fmt: skip
    raw.update(kw)
    return raw


def site(name: str, api: dict, agents: list[dict]) -> dict:
    ds = site_info.datastore_for("embedded", api)
    return site_info.build_site(name, INVENTORY, api, ds, agents, K3S, 120)


def test_healthy_site_has_no_problems() -> None:
    s = site("s", api_with(k8s_node("m1", ("control-plane", "etcd")), k8s_node("w1")), [agent()])
    assert s["healthy"] and s["problem_count"] == 0, s
    w1 = next(r for r in s["nodes"] if r["node"] == "w1")
    assert (w1["agent_version"], w1["agent_ready"], w1["seconds_since_api_contact"]) == (
        "0.1.0",
        True,
        3.5,
    )


def test_node_problems_not_ready_wrong_version_missing_and_unknown() -> None:
    api = api_with(
        k8s_node("m1", ("control-plane", "etcd"), version="v1.35.9+k3s1"),
        k8s_node("stray", ready=False),
    )
    s = site("s", api, [agent()])
    rows = {r["node"]: r for r in s["nodes"]}
    assert rows["m1"]["problems"] == [f"runs k3s v1.35.9+k3s1, the site pins {K3S}"]
    assert "not registered in the Kubernetes API" in rows["w1"]["problems"]
    assert rows["stray"]["problems"][0] == "registered in the API but not in the inventory"
    assert any(p.startswith("NotReady (NodeStatusUnknown") for p in rows["stray"]["problems"])
    assert not s["healthy"]


def test_agent_problems() -> None:
    stale = agent(metrics="edgesite_agent_seconds_since_api_contact 600\n")
    never = agent(metrics="edgesite_agent_seconds_since_api_contact -1\n")
    cases = {
        "stale": (stale, "agent last reached the API 600 s ago (more than 120 s)"),
        "never": (never, "agent has never reached the API since it started"),
        "not ready": (agent(readyz_status=503), "agent /readyz answers 503 (not ready)"),
        "down": (agent(readyz_status=-1, error="refused"), "agent not answering"),
        "host": (agent(unreachable="True", error="ssh"), "Ansible could not reach the host"),
    }
    for what, (raw, expected) in cases.items():
        got = site_info.summarize_agent(raw, 120)["problems"]
        assert any(expected in p for p in got), (what, got)
    assert site_info.summarize_agent(agent(disabled=True), 120)["problems"] == []


def test_embedded_member_count_must_match_masters() -> None:
    s = site("s", api_with(k8s_node("m1", ("control-plane",)), k8s_node("w1")), [agent()])
    assert s["problems"] == [
        "datastore: 0 etcd member node(s) in the API, the inventory has 1 master(s)"
    ]


def test_api_failing_etcd_check_is_a_site_problem() -> None:
    api = api_with(k8s_node("m1", ("control-plane", "etcd")), k8s_node("w1"))
    api.update(readyz_status=500, readyz={"etcd": False, "ping": True})
    s = site("s", api, [agent()])
    assert "API server not ready (failing checks: etcd)" in s["problems"]
    assert "datastore: API server reports its datastore check failing" in s["problems"]


def test_etcd_info_result_normalised() -> None:
    m = lambda i, n: {"id": i, "name": n, "is_learner": False, "started": True}  # noqa: E731
    ep = lambda i: {"member_id": i, "leader_id": "a", "healthy": True, "db_size": 4096}  # noqa: E731
    result = {"members": [m("a", "m1"), m("b", "m2")], "endpoints": [ep("a"), ep("b")],
              "alarms": [{"member_id": "b", "alarm": "NOSPACE"}]}  # fmt: skip
    ds = site_info.etcd_result_datastore(result)
    assert ds["leader"] == "m1" and ds["db_size"] == 4096
    assert ds["alarms"] == ["m2: NOSPACE"] and ds["healthy"] is False
    failed = site_info.etcd_result_datastore({"unreachable": True, "msg": "ssh down"})
    assert failed["problems"] == ["etcd cluster not readable: ssh down"]


def test_report_sorts_problem_sites_and_rows_first() -> None:
    good = site("aaa-good", api_with(k8s_node("m1", ("etcd",)), k8s_node("w1")), [agent()])
    one = site("zzz-one", api_with(k8s_node("m1", ("etcd",)), k8s_node("w1")),
               [agent(readyz_status=503)])  # fmt: skip
    down = site("mmm-down", {"url": "", "reachable": False, "error": "refused"}, [agent()])
    rep = report.build_report([good, one, down], "2026-01-01T00:00:00+00:00")
    assert [s["site"] for s in rep["sites"]] == ["mmm-down", "zzz-one", "aaa-good"]
    assert [r["node"] for r in rep["sites"][1]["nodes"]] == ["w1", "m1"]  # problem row first
    assert rep["summary"] == {"sites": 3, "sites_with_problems": 2, "nodes": 6,
                              "nodes_with_problems": 3}  # fmt: skip


def test_html_escapes_remote_text_and_marks_problem_rows() -> None:
    down = site("<b>x</b>", {"url": "", "reachable": False, "error": "<script>x</script>"}, [])
    html = report.render_html(report.build_report([down], "now"))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'data-site="&lt;b&gt;x&lt;/b&gt;"' in html
    assert html.count('<tr class="problem"') == 2


def test_parse_metrics_and_readyz() -> None:
    text = '# HELP a b\nfoo_total{kind="Pod"} 3\nfoo_total{kind="Node"} 2\nbar 1.5\nbad line\n'
    samples = site_info.parse_metrics(text)
    assert site_info.metric_sum(samples, "foo_total") == 5 and samples["bar"] == 1.5
    checks = site_info.readyz_checks("[+]ping ok\n[-]etcd failed: reason withheld\nreadyz failed")
    assert checks == {"ping": True, "etcd": False}


def test_embedded_etcd_not_readable_falls_back_to_the_api_view() -> None:
    api = api_with(k8s_node("m1", ("control-plane", "etcd")), k8s_node("w1"))
    failed = {"changed": False, "failed": False, "msg": "cannot read /x/server-ca.crt\nmore"}
    ds = site_info.datastore_for("embedded", api, etcd_result=failed)
    assert ds["source"] == "kubernetes-api" and [m["name"] for m in ds["members"]] == ["m1"]
    assert ds["leader"] == "not readable on the first master: cannot read /x/server-ca.crt"
    assert ds["problems"] == []  # the API's own etcd check decides health


def test_embedded_etcd_result_counts_members_against_masters() -> None:
    m = lambda i, n: {"id": i, "name": n, "is_learner": False, "started": True}  # noqa: E731
    ep = lambda i: {"member_id": i, "leader_id": "b", "healthy": True, "db_size": 8192}  # noqa: E731
    result = {"members": [m("a", "m1-0a1b2c3d"), m("b", "m2-99aa00ff")],
              "endpoints": [ep("a"), ep("b")], "alarms": []}  # fmt: skip
    api = api_with(k8s_node("m1", ("etcd",)), k8s_node("m2", ("etcd",)), k8s_node("w1"))
    ds = site_info.datastore_for("embedded", api, etcd_result=result)
    inventory = [
        {"host": h, "node_name": h, "is_master": h != "w1", "is_worker": h == "w1"}
        for h in ("m1", "m2", "m3", "w1")
    ]
    s = site_info.build_site("s", inventory, api, ds, [agent()])
    assert s["datastore"]["leader"] == "m2"
    assert [x["name"] for x in s["datastore"]["members"]] == ["m1", "m2"]
    assert "datastore: 2 etcd member(s), the inventory has 3 master(s)" in s["problems"]
