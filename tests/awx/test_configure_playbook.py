"""playbooks/awx/configure.yml: no AWX server can run here, so this checks what can be checked.

It parses (--syntax-check), and a real run against a closed loopback port proves the controller
connection comes from CONTROLLER_HOST / CONTROLLER_OAUTH_TOKEN in the environment (the first
awx.awx call targets that URL) and that neither the token nor an SSH key reaches the output,
even at -vvv and on failure.
"""

from __future__ import annotations

import os
import socket
import subprocess

from awx.tools import REPO, tool

PLAYBOOK = REPO / "playbooks" / "awx" / "configure.yml"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(tmp_path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    playbook = tool("ansible-playbook")
    assert playbook
    return subprocess.run(
        [playbook, "-i", "localhost,", str(PLAYBOOK), *args],
        cwd=tmp_path,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_syntax(tmp_path):
    proc = run(tmp_path, "--syntax-check", env={})
    assert proc.returncode == 0, proc.stderr


def test_refuses_without_a_repository_url(tmp_path):
    proc = run(tmp_path, env={"CONTROLLER_HOST": f"https://127.0.0.1:{closed_port()}"})
    assert proc.returncode != 0
    assert "Set awx_project_scm_url" in proc.stdout + proc.stderr


def test_controller_from_environment_and_secrets_never_printed(tmp_path):
    port = closed_port()
    token, key = "tok-9f2c1e0d7a6b5c4d", "KEYDATA-3b7e1f0a9c8d"
    proc = run(
        tmp_path,
        "-vvv",
        "-e", "awx_project_scm_url=https://git.example.invalid/edgesite.git",
        "-e", "awx_machine_credential=EdgeSite SSH",
        "-e", f"awx_machine_ssh_key_data={key}",
        env={"CONTROLLER_HOST": f"https://127.0.0.1:{port}", "CONTROLLER_OAUTH_TOKEN": token},
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # The first controller call went to the URL from the environment.
    assert f"https://127.0.0.1:{port}/api/v2/organizations/" in out
    assert token not in out
    assert key not in out
