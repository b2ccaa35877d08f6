"""execution-environment.yml is a valid ansible-builder v3 definition of what EdgeSite needs.

`ansible-builder create` validates the file against its schema and writes the build context
(no container build: no registry is reachable here). The context must carry the project's
collections, the controller-side Python libraries, SSH, and the install of edgesite.fleet,
whose exact command is run here too, so the image step is known to work.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from awx.tools import REPO, tool

EE = REPO / "execution-environment.yml"


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    builder = tool("ansible-builder")
    if builder is None:
        pytest.skip("ansible-builder is not installed (pip install ansible-builder)")
    out = tmp_path_factory.mktemp("ee") / "context"
    proc = subprocess.run(
        [builder, "create", "-f", str(EE), "-c", str(out), "--output-filename", "Containerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def dev_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = {}
    for requirement in project["project"]["optional-dependencies"]["dev"]:
        name, _, version = requirement.partition("==")
        pins[name.split("[")[0]] = version
    return pins


def test_schema_v3_and_pins_match_the_tested_toolchain(context):
    definition = yaml.safe_load(EE.read_text())
    assert definition["version"] == 3
    containerfile = (context / "Containerfile").read_text()
    pins = dev_pins()
    refs = re.search(r'ARG ANSIBLE_INSTALL_REFS="([^"]*)"', containerfile)
    assert refs is not None
    assert set(refs.group(1).split()) == {
        f"ansible-core=={pins['ansible-core']}",
        f"ansible-runner=={pins['ansible-runner']}",
    }
    # ansible-core 2.19 needs Python >= 3.11 on the controller side.
    assert 'ARG PYCMD="/usr/bin/python3.11"' in containerfile


def test_context_carries_collections_python_and_system_dependencies(context):
    build = context / "_build"
    assert yaml.safe_load((build / "requirements.yml").read_text()) == yaml.safe_load(
        (REPO / "collections" / "requirements.yml").read_text()
    )
    python = (build / "requirements.txt").read_text()
    for library in ("kubernetes", "cryptography", "jmespath"):
        assert re.search(rf"^{library}\b", python, re.M), library
    pins = dev_pins()
    assert f"kubernetes=={pins['kubernetes']}" in python
    bindep = (build / "bindep.txt").read_text()
    assert re.search(r"^openssh-clients \[platform:rpm\]", bindep, re.M)
    assert re.search(r"^openssh-client \[platform:dpkg\]", bindep, re.M)
    assert (build / "edgesite_fleet" / "galaxy.yml").is_file()
    assert (build / "edgesite_fleet" / "plugins" / "modules" / "etcd_snapshot.py").is_file()


def test_the_image_step_installs_edgesite_fleet(context, tmp_path):
    containerfile = (context / "Containerfile").read_text()
    step = re.search(r"^RUN (ansible-galaxy collection install .*?) && rm", containerfile, re.M)
    assert step is not None, containerfile
    # Run the same command against the build context, into a scratch path.
    command = step.group(1).split()
    command[command.index("-p") + 1] = str(tmp_path / "collections")
    command[-1] = str(context / "_build" / "edgesite_fleet")
    galaxy = tool("ansible-galaxy")
    assert galaxy
    # Outside the repo's ansible.cfg, whose collections_path already holds edgesite.fleet.
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")}
    proc = subprocess.run(
        [galaxy, *command[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = tmp_path / "collections" / "ansible_collections" / "edgesite" / "fleet"
    assert (installed / "MANIFEST.json").is_file()
    assert (installed / "plugins" / "modules" / "site_info.py").is_file()
