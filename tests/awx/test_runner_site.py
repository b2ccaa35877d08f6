"""site.yml run the way AWX runs a job: ansible_runner.run() over an AWX-shaped private data dir.

AWX (and AAP) hand a job to ansible-runner as a private data directory:
    project/            the project checkout (cwd of the run, so its ansible.cfg applies)
    inventory/hosts     the job's inventory
    env/extravars       extra vars: survey answers plus the awx_* job metadata AWX injects
    env/envvars         environment of the run
    env/settings        runner settings (timeouts, output)
    env/cmdline         extra command-line arguments (here: --skip-tags)
and reads back status, rc, per-host stats and the job events under artifacts/<ident>/.

Target: a 1 master + 1 worker site on podman test hosts created here, reached over SSH as AWX
reaches hosts (root, a per-run key, pinned host keys; pipelining and ControlPersist from the
project's ansible.cfg). Its k3s is the TEST
STAND-IN of tests/k3s (not k3s), which serves no Kubernetes API, so the edge agent role is
skipped (`--skip-tags edge_agent`, as tests/k3s/test_k3s_site.py does). The k3s release comes
from extravars only (the artifact dir holds just that release and the inventory names none),
so a run that ignored the survey answer could not succeed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from k3s.artifacts import add_version
from k3s.site_hosts import sh

from awx.tools import REPO

ansible_runner = pytest.importorskip("ansible_runner")

pytestmark = [pytest.mark.podman, pytest.mark.root]

CONF = REPO / "tools" / "containers.conf"
NAME = f"awx{os.getpid()}"
MASTER, WORKER = f"edgesite-{NAME}-m1", f"edgesite-{NAME}-w1"
SITE = "awx-test-site"
# Not the inventory default (roles/edgesite/defaults), so only the survey answer can select it.
VERSION = "v1.36.5+k3s1"
IDENT = "4242"
# What the project checkout needs to run the playbooks (AWX clones the whole repository).
PROJECT_CONTENT = ("ansible.cfg", "site.yml", "playbooks", "roles", "collections", "edgesite_agent")


def make_project(project: Path) -> None:
    project.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "output", "*.pyc")
    for name in PROJECT_CONTENT:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=ignore)
        else:
            shutil.copy2(source, project / name)


def make_inventory(testhosts_inventory: Path, artifacts: Path, tmp: Path) -> str:
    text = testhosts_inventory.read_text()
    inventory = json.loads(text[text.index("{") :])
    inventory["all"]["vars"].update(
        edgesite_site=SITE,
        edgesite_artifacts_dir=str(artifacts),
        prereq_time_sync_required=False,
        # Test containers lack CAP_SYS_RESOURCE: the units cannot raise their limits.
        k3s_server_service_limits={},
        k3s_agent_service_limits={},
        k3s_server_kubeconfig_dir=str(tmp / "kube"),
        k3s_server_health_delay=1,
        k3s_server_health_retries=10,
        k3s_agent_health_delay=1,
    )
    # AWX writes the inventory as JSON; JSON is YAML, which the repo's ansible.cfg enables.
    return json.dumps(inventory)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("awxjob")
    testhosts = [sys.executable, str(REPO / "tools" / "testhosts.py")]
    hosts = tmp / "testhosts.yml"
    try:
        up = subprocess.run(
            [*testhosts, "up", "--name", NAME, "--masters", "1", "--workers", "1",
             "--connection", "ssh", "--inventory", str(hosts)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        artifacts = tmp / "artifacts"
        add_version(artifacts, VERSION)

        pdd = tmp / "private_data_dir"
        pdd.mkdir(mode=0o700)
        make_project(pdd / "project")
        (pdd / "inventory").mkdir()
        (pdd / "inventory" / "hosts").write_text(make_inventory(hosts, artifacts, tmp))
        env = pdd / "env"
        env.mkdir()
        # As AWX sends them: the survey's answers, then the job metadata it always adds.
        extravars = {
            "edgesite_k3s_version": VERSION,
            "awx_job_id": int(IDENT),
            "awx_job_launch_type": "manual",
            "awx_job_template_name": "EdgeSite site",
            "awx_inventory_name": "EdgeSite fleet",
            "awx_project_revision": "0" * 40,
            "awx_user_name": "admin",
            "tower_job_id": int(IDENT),
        }
        (env / "extravars").write_text(json.dumps(extravars))
        envvars = {
            # The execution environment has the toolchain on PATH; here it is the test venv.
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "CONTAINERS_CONF": str(CONF),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
            "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp / "facts"),
        }
        (env / "envvars").write_text(json.dumps(envvars))
        (env / "settings").write_text(
            json.dumps({"job_timeout": 480, "idle_timeout": 300, "suppress_ansible_output": True})
        )
        (env / "cmdline").write_text("--skip-tags edge_agent")

        runner = ansible_runner.run(
            private_data_dir=str(pdd), playbook="site.yml", ident=IDENT, quiet=True
        )
        yield {"runner": runner, "artifacts": pdd / "artifacts" / IDENT}
    finally:
        subprocess.run([*testhosts, "down", "--name", NAME], check=False, capture_output=True)
        # The per-run SSH key testhosts made for these hosts.
        shutil.rmtree(REPO / ".cache" / "testhosts" / NAME, ignore_errors=True)


def output(job) -> str:
    return job["runner"].stdout.read()[-6000:]


def test_job_is_successful(job):
    runner = job["runner"]
    assert runner.status == "successful", output(job)
    assert runner.rc == 0


def test_per_host_stats(job):
    stats = job["runner"].stats
    assert stats is not None
    for host in (MASTER, WORKER):
        assert stats["ok"].get(host, 0) > 0, stats
        # A first run on bare hosts changes every one of them.
        assert stats["changed"].get(host, 0) > 0, stats
        assert stats["failures"].get(host, 0) == 0, stats
        assert stats["dark"].get(host, 0) == 0, stats


def test_job_events_written(job):
    event_files = sorted((job["artifacts"] / "job_events").glob("*.json"))
    assert event_files
    events = [json.loads(path.read_text()) for path in event_files]
    assert all(event["event"] and event["uuid"] for event in events)
    kinds = {event["event"] for event in events}
    assert {"playbook_on_start", "playbook_on_stats"} <= kinds
    ok_hosts = {event["event_data"]["host"] for event in events if event["event"] == "runner_on_ok"}
    assert {MASTER, WORKER} <= ok_hosts
    assert not [event for event in events if event["event"] == "runner_on_failed"]
    start = next(event for event in events if event["event"] == "playbook_on_start")
    assert start["event_data"]["playbook"] == "site.yml"
    # The skip-tags from env/cmdline reached ansible-playbook: no edge agent task ran.
    ok_roles = {
        event["event_data"].get("role") for event in events if event["event"] == "runner_on_ok"
    }
    assert "edgesite_agent" not in ok_roles
    assert (job["artifacts"] / "status").read_text() == "successful"
    assert (job["artifacts"] / "rc").read_text() == "0"


def test_survey_answer_selected_the_release(job):
    # The stand-in records the version it was started as; the release came from extravars.
    for host in (MASTER, WORKER):
        starts = sh(host, "cat /var/lib/rancher/k3s/standin/starts.jsonl").stdout.splitlines()
        assert json.loads(starts[-1])["version"] == VERSION
    assert sh(MASTER, "systemctl is-active k3s").stdout.strip() == "active"
    assert sh(WORKER, "systemctl is-active k3s-agent").stdout.strip() == "active"
