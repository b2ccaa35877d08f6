"""Shared test fixtures: paths and an ansible-playbook runner bound to this repo."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COLLECTIONS = REPO / "collections"
# The collection's pure-Python helpers are importable in unit tests like Ansible imports them.
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


@dataclass
class PlaybookRun:
    rc: int
    output: str


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@pytest.fixture
def run_playbook(tmp_path):
    """Run a playbook of this repo with the repo's ansible.cfg and a given inventory."""

    def run(playbook: str, inventory: Path, *extra: str) -> PlaybookRun:
        env = dict(os.environ)
        env.update(
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
            ANSIBLE_CACHE_PLUGIN_CONNECTION=str(tmp_path / "facts"),
        )
        proc = subprocess.run(
            [_bin("ansible-playbook"), "-i", str(inventory), str(REPO / playbook), *extra],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            # A guard against a hung run, not a speed check: a full site.yml on a loaded 2-CPU
            # CI machine has taken over 5 minutes.
            timeout=1200,
        )
        return PlaybookRun(proc.returncode, proc.stdout + proc.stderr)

    return run
