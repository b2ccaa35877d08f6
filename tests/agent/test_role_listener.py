"""Role edgesite_agent wires the local API's access settings (docs/agent.md, "Who can read
what"): the agent.json keys `listen_token_file`, `listen_tls_cert_file`, `listen_tls_key_file`
only when asked for, and the token file (0600, generated on the node once or given, never in
the output).

No systemd and no podman: the role's variables are rendered with its tasks skipped (as
tests/k3s/test_configured_paths.py does), and its token tasks run on this machine as a local
host against a config dir under tmp_path; the play ends before the restart handler.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
import yaml

from edgesite_agent.localapi import read_token

GIVEN_TOKEN = "given-token-3f9c2a71d4"  # a test value


def _inventory(tmp_path: Path, **host_vars: object) -> Path:
    inventory = {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "ansible_become": False},
        "children": {"edgesite_workers": {"hosts": {"w1": {
            "edgesite_node_ip": "10.0.0.21", **host_vars}}}}}}  # fmt: skip
    path = tmp_path / "hosts.yml"
    path.write_text(json.dumps(inventory))
    return path


def _play(tmp_path: Path, name: str, tasks: list[dict[str, object]], role_skipped: bool) -> Path:
    play: dict[str, object] = {"hosts": "w1", "gather_facts": False, "tasks": tasks}
    if role_skipped:
        play["roles"] = [{"role": "edgesite_agent", "when": False}]
    path = tmp_path / name
    path.write_text(yaml.safe_dump([play]))
    return path


def agent_config(tmp_path: Path, run_playbook, **host_vars: object) -> dict[str, object]:
    """agent.json as the role writes it for a worker with these variables."""
    out = tmp_path / "agent.json"
    render = {
        "name": "Render",
        "ansible.builtin.copy": {
            "content": "{{ __edgesite_agent_config | to_json }}",
            "dest": str(out),
            "mode": "0600",
        },
    }
    result = run_playbook(str(_play(tmp_path, "render.yml", [render], True)),
                          _inventory(tmp_path, **host_vars))  # fmt: skip
    assert result.rc == 0, result.output
    return json.loads(out.read_text())


def test_agent_json_has_the_listener_keys_only_when_set(tmp_path: Path, run_playbook) -> None:
    config = agent_config(tmp_path, run_playbook)
    assert not {"listen_token_file", "listen_tls_cert_file", "listen_tls_key_file"} & set(config)
    assert config["listen_port"] == 10260 and config["cache_secrets"] is False  # types kept

    config = agent_config(
        tmp_path, run_playbook, edgesite_agent_listen_token_enabled=True,
        edgesite_agent_listen_tls_cert_file="/etc/edgesite/tls/local.crt",
        edgesite_agent_listen_tls_key_file="/etc/edgesite/tls/local.key",
    )  # fmt: skip
    assert config["listen_token_file"] == "/etc/edgesite/listen-token"
    assert config["listen_tls_cert_file"] == "/etc/edgesite/tls/local.crt"
    assert config["listen_tls_key_file"] == "/etc/edgesite/tls/local.key"
    assert config["listen_port"] == 10260

    # A certificate file holding its key: no key entry.
    pem = "/etc/edgesite/local.pem"
    config = agent_config(tmp_path, run_playbook, edgesite_agent_listen_tls_cert_file=pem)
    assert config["listen_tls_cert_file"] == pem
    assert "listen_tls_key_file" not in config and "listen_token_file" not in config


@pytest.fixture
def run_access(tmp_path: Path, run_playbook, monkeypatch: pytest.MonkeyPatch):
    """Runs the role's listen_access.yml on this machine (config dir under tmp_path); returns
    (rc, output, {task name: changed})."""
    monkeypatch.setenv("ANSIBLE_STDOUT_CALLBACK", "ansible.builtin.json")
    monkeypatch.setenv("ANSIBLE_CALLBACK_RESULT_FORMAT", "json")
    config_dir = tmp_path / "etc-edgesite"
    config_dir.mkdir(mode=0o750)
    tasks = [{"name": "Access", "ansible.builtin.include_role": {
                 "name": "edgesite_agent", "tasks_from": "listen_access.yml"}},
             {"name": "End before the handlers (no agent unit here)",
              "ansible.builtin.meta": "end_play"}]  # fmt: skip
    playbook = _play(tmp_path, "access.yml", tasks, False)

    def run(*extra: str, **host_vars: object) -> tuple[int, str, dict[str, bool]]:
        inv = _inventory(tmp_path, edgesite_agent_config_dir=str(config_dir),
                         edgesite_agent_python=sys.executable, **host_vars)  # fmt: skip
        result = run_playbook(str(playbook), inv, *extra)
        out = result.output
        report, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])  # stderr follows
        changed = {t["task"]["name"].removeprefix("edgesite_agent : "):
                   t["hosts"]["w1"].get("changed", False)
                   for p in report["plays"] for t in p["tasks"] if "w1" in t["hosts"]}  # fmt: skip
        return result.rc, out, changed

    run.token_file = config_dir / "listen-token"  # type: ignore[attr-defined]
    return run


GENERATE = "Generate the local API token on the node"
GIVEN = "Write the given local API token"


def test_token_generated_on_the_node_once_private_and_never_shown(run_access) -> None:
    token_file: Path = run_access.token_file
    rc, out, changed = run_access("--check", edgesite_agent_listen_token_enabled=True)
    assert rc == 0, out
    assert changed[GENERATE] and not token_file.exists()  # check mode: predicted, not done

    rc, out, changed = run_access(edgesite_agent_listen_token_enabled=True)
    assert rc == 0 and changed[GENERATE], out
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = read_token(str(token_file))  # what the agent reads (refuses a readable file)
    assert len(token) >= 40
    assert token.decode() not in out

    for extra in ((), ("--check",)):  # idempotent, in check mode too
        rc, out, changed = run_access(*extra, edgesite_agent_listen_token_enabled=True)
        assert rc == 0 and not any(changed.values()), (changed, out)
        assert token.decode() not in out
    assert read_token(str(token_file)) == token  # kept across runs


def test_given_token_written_private_then_removed_when_disabled(run_access) -> None:
    token_file: Path = run_access.token_file
    given = {"edgesite_agent_listen_token_enabled": True,
             "edgesite_agent_listen_token": GIVEN_TOKEN}  # fmt: skip
    rc, out, changed = run_access(**given)
    assert rc == 0 and changed[GIVEN] and not changed[GENERATE], out
    assert read_token(str(token_file)) == GIVEN_TOKEN.encode()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert GIVEN_TOKEN not in out

    rc, out, changed = run_access(**given)
    assert rc == 0 and not any(changed.values()), (changed, out)

    rc, out, changed = run_access("--check")  # disabled: the token file would go
    assert rc == 0 and any(changed.values()) and token_file.exists(), out
    rc, out, changed = run_access()
    assert rc == 0 and not token_file.exists(), out
    rc, out, changed = run_access()
    assert rc == 0 and not any(changed.values()), (changed, out)
