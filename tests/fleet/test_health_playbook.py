"""playbooks/health.yml end to end: real agents, test API servers over TLS, one broken site."""

from __future__ import annotations

from edgesite_agent import __version__ as AGENT_VERSION

from .conftest import K3S, HealthRun


def _site(run: HealthRun, name: str) -> dict:
    return next(s for s in run.report["sites"] if s["site"] == name)


def _row(site: dict, node: str) -> dict:
    return next(r for r in site["nodes"] if r["node"] == node)


def test_run_finishes_and_broken_site_comes_first(health_run: HealthRun) -> None:
    assert health_run.rc == 0, health_run.output
    assert [s["site"] for s in health_run.report["sites"]] == ["bravo", "alpha", "charlie"]
    assert health_run.report["summary"]["sites_with_problems"] == 1
    assert "1 of 3 sites with problems: bravo" in health_run.output


def test_healthy_site_reports_nodes_versions_and_agents(health_run: HealthRun) -> None:
    alpha = _site(health_run, "alpha")
    assert alpha["healthy"], alpha
    assert alpha["api"]["reachable"] and alpha["api"]["version"] == K3S
    assert [r["node"] for r in alpha["nodes"]] == ["a-m1", "a-w1", "a-w2"]
    for row in alpha["nodes"]:
        assert row["ready"] is True and row["k3s_version"] == K3S and row["problems"] == []
    for worker in ("a-w1", "a-w2"):
        row = _row(alpha, worker)
        assert row["agent_version"] == AGENT_VERSION
        assert row["agent_ready"] is True
        assert 0 <= row["seconds_since_api_contact"] < 120
    ds = alpha["datastore"]
    assert ds["kind"] == "embedded" and ds["healthy"] is True
    assert [m["name"] for m in ds["members"]] == ["a-m1"]
    assert ds["db_size"] == 1 << 20
    # No k3s here: its etcd client certificate is absent, so the API view is kept and says why.
    assert ds["leader"].startswith("not readable on the first master: "), ds


def test_sqlite_site(health_run: HealthRun) -> None:
    charlie = _site(health_run, "charlie")
    assert charlie["healthy"], charlie
    assert charlie["datastore"]["kind"] == "sqlite"
    assert [m["name"] for m in charlie["datastore"]["members"]] == ["c-m1"]


def test_broken_site_names_its_problems(health_run: HealthRun) -> None:
    bravo = _site(health_run, "bravo")
    assert not bravo["healthy"]
    assert any(p.startswith("Kubernetes API not reachable") for p in bravo["problems"])
    worker = _row(bravo, "b-w1")
    assert any("Ansible could not reach the host" in p for p in worker["problems"]), worker
    assert (health_run.report_dir / "report.html").stat().st_size > 0
