"""Fixtures: a three-site fleet on loopback and one run of playbooks/health.yml against it.

- site "alpha" (embedded etcd, 1 master + 2 workers): a test Kubernetes API server with the
  site's Nodes, and the real agent (built zipapp) running for each worker against it;
- site "bravo" (broken): its API port is closed and its worker is unreachable over SSH;
- site "charlie" (sqlite, 1 master): its own healthy test API server.
Hosts use the local connection (bravo's worker: SSH to a closed loopback port), so nothing
leaves the machine. The run happens once per session; tests read its report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.kubeapi import KubeAPIServer, certs  # noqa: E402
from tests.kubeapi.server import free_port  # noqa: E402

K3S = "v1.36.4+k3s1"


def k8s_node(
    name: str, roles: tuple[str, ...] = (), ready: bool = True, version: str = K3S
) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    labels.update({f"node-role.kubernetes.io/{r}": "true" for r in roles})
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"podCIDR": "10.42.1.0/24"},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                    "message": "" if ready else "Kubelet stopped posting node status.",
                },
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "nodeInfo": {"kubeletVersion": version},
        },
    }


def wait_until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except OSError:
        return -1


@dataclass
class HealthRun:
    rc: int
    output: str
    report_dir: Path
    report: dict[str, Any]


def ansible_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
        ANSIBLE_CACHE_PLUGIN_CONNECTION=str(tmp / "facts"),
        ANSIBLE_HOST_KEY_CHECKING="False",
    )
    return env


def ansible_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@pytest.fixture(scope="session")
def fleet_tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fleet-pki")
    certs.ensure_ca(d)
    certs.server_cert(d)
    certs.admin_cert(d)
    certs.proxy_cert(d)
    for node in ("a-w1", "a-w2"):
        certs.node_cert(d, node)
    return d


@pytest.fixture(scope="session")
def health_run(tmp_path_factory: pytest.TempPathFactory, fleet_tls: Path) -> Iterator[HealthRun]:
    tmp = tmp_path_factory.mktemp("fleet")
    kube_dir = tmp / "kube"
    kube_dir.mkdir(mode=0o700)
    ca = fleet_tls / "ca.crt"
    admin = certs.admin_cert(fleet_tls)

    alpha = KubeAPIServer(fleet_tls)
    charlie = KubeAPIServer(fleet_tls)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        alpha.start()
        charlie.start()
        alpha.upsert("nodes", k8s_node("a-m1", ("control-plane", "etcd", "master")))
        alpha.upsert("nodes", k8s_node("a-w1"))
        alpha.upsert("nodes", k8s_node("a-w2"))
        charlie.upsert("nodes", k8s_node("c-m1", ("control-plane", "master")))
        certs.write_kubeconfig(kube_dir / "alpha.yaml", alpha.url, ca, admin)
        certs.write_kubeconfig(kube_dir / "charlie.yaml", charlie.url, ca, admin)
        # bravo's API: a loopback port nothing listens on.
        certs.write_kubeconfig(
            kube_dir / "bravo.yaml", f"https://127.0.0.1:{free_port()}", ca, admin
        )

        # The real agent, as the role ships it: one zipapp, one process per worker.
        install = tmp / "agent"
        zipapp = install / "edgesite-agent.pyz"
        subprocess.run(
            [sys.executable, "-m", "edgesite_agent.build_zipapp", str(zipapp)],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        ports: dict[str, int] = {}
        proxy_kc = certs.write_kubeconfig(
            tmp / "kubeproxy.kubeconfig", alpha.url, ca, certs.proxy_cert(fleet_tls)
        )
        for node in ("a-w1", "a-w2"):
            ports[node] = free_port()
            kc = certs.write_kubeconfig(
                tmp / f"{node}.kubeconfig", alpha.url, ca, certs.node_cert(fleet_tls, node)
            )
            cfg = tmp / f"{node}.json"
            cfg.write_text(
                json.dumps(
                    {
                        "node_name": node,
                        "kubeconfig": str(kc),
                        "proxy_kubeconfig": str(proxy_kc),
                        "store_path": str(tmp / f"{node}-state" / "store.db"),
                        "listen_address": "127.0.0.1",
                        "listen_port": ports[node],
                        "watch_idle_timeout_s": 10,
                    }
                )
            )
            with (tmp / f"{node}.log").open("ab") as log:  # the child keeps its own fd
                cmd = [sys.executable, str(zipapp), "run", "--config", str(cfg)]
                procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        for node, port in ports.items():
            wait_until(
                lambda p=port: http_status(f"http://127.0.0.1:{p}/readyz") == 200,
                30,
                f"agent of {node} ready",
            )

        inventory = tmp / "hosts.yml"
        inventory.write_text(_inventory(install, ports, free_port(), sys.executable))
        report_dir = tmp / "report"
        proc = subprocess.run(
            [
                ansible_bin("ansible-playbook"),
                "-i",
                str(inventory),
                str(REPO / "playbooks" / "health.yml"),
                "-e",
                f"health_kubeconfig_dir={kube_dir}",
                "-e",
                f"health_report_dir={report_dir}",
            ],
            cwd=REPO,
            env=ansible_env(tmp),
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = proc.stdout + proc.stderr
        report_file = report_dir / "report.json"
        assert report_file.exists(), output
        yield HealthRun(proc.returncode, output, report_dir, json.loads(report_file.read_text()))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        alpha.stop()
        charlie.stop()


def _inventory(install: Path, ports: dict[str, int], closed_port: int, python: str) -> str:
    local = f"ansible_connection: local, ansible_python_interpreter: {python}"
    return f"""\
all:
  vars:
    edgesite_k3s_version: "{K3S}"
    edgesite_agent_install_dir: "{install}"
    edgesite_agent_python: "{python}"
  children:
    alpha:
      vars: {{edgesite_site: alpha, edgesite_datastore: embedded}}
      hosts:
        a-m1: {{{local}, edgesite_node_ip: 10.1.0.1}}
        a-w1: {{{local}, edgesite_node_ip: 10.1.0.2, edgesite_agent_listen_port: {ports["a-w1"]}}}
        a-w2: {{{local}, edgesite_node_ip: 10.1.0.3, edgesite_agent_listen_port: {ports["a-w2"]}}}
    bravo:
      vars: {{edgesite_site: bravo, edgesite_datastore: embedded}}
      hosts:
        b-m1: {{{local}, edgesite_node_ip: 10.2.0.1}}
        b-w1:
          ansible_connection: ssh
          ansible_host: 127.0.0.1
          ansible_port: {closed_port}
          ansible_user: nobody
          edgesite_node_ip: 10.2.0.2
    charlie:
      vars: {{edgesite_site: charlie, edgesite_datastore: sqlite}}
      hosts:
        c-m1: {{{local}, edgesite_node_ip: 10.3.0.1}}
    edgesite_masters:
      hosts: {{a-m1: {{}}, b-m1: {{}}, c-m1: {{}}}}
    edgesite_workers:
      hosts: {{a-w1: {{}}, a-w2: {{}}, b-w1: {{}}}}
"""
