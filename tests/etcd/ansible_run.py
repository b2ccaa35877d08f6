"""Run edgesite.fleet modules the way Ansible does: ad-hoc `ansible localhost -m ...`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "collections"


def _ansible_bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
        }
    )
    return env


def run_module(
    module: str, args: dict[str, Any], check: bool = False, diff: bool = False
) -> dict[str, Any]:
    """The module's result dict for localhost (with 'failed' set on failure)."""
    cmd = [
        _ansible_bin("ansible"),
        "localhost",
        "-i",
        "localhost,",
        "-c",
        "local",
        # The controller's own interpreter, as for Ansible's implicit localhost.
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-m",
        f"edgesite.fleet.{module}",
        "-a",
        json.dumps(args),
    ]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    proc = subprocess.run(
        cmd, env=ansible_env(), capture_output=True, text=True, timeout=300, check=False
    )
    try:
        # The project's ansible.cfg may enable timing callbacks that print around the JSON.
        start = proc.stdout.index("\n{") + 1 if not proc.stdout.startswith("{") else 0
        out, _ = json.JSONDecoder().raw_decode(proc.stdout[start:])
        return dict(out["plays"][0]["tasks"][0]["hosts"]["localhost"])
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError(
            f"ansible gave no JSON result (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        ) from exc
