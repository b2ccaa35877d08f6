"""The etcd release tarball is verified on the controller before the etcd role changes a host.

The members point at a closed loopback port: a run that got past verification would try to
reach them and show UNREACHABLE (the last test proves that with a correct release). The
tarball is packed from the real Debian etcd binaries in the official release layout
(tests/etcd/release.py); molecule/etcd installs a member from such a tarball and checks the
cluster is healthy.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from .release import SUMS, build_release

HOSTS = {"m1": "10.0.0.11", "m2": "10.0.0.12", "m3": "10.0.0.13"}
PLAY = [{"name": "etcd", "hosts": "edgesite_masters", "gather_facts": False, "roles": ["etcd"]}]


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[str, Path]:
    return build_release(tmp_path_factory.mktemp("etcd-release"))


def setup(tmp_path: Path, release: tuple[str, Path], **overrides) -> tuple[Path, Path, Path]:
    version, tarball = release
    art = tmp_path / "art"
    art.mkdir()
    (art / tarball.name).write_bytes(tarball.read_bytes())
    (art / SUMS).write_text((tarball.parent / SUMS).read_text())
    site_vars = {
        "ansible_host": "127.0.0.1",
        "ansible_port": 9,
        "ansible_connection": "ssh",
        "etcd_install_method": "tarball",
        "edgesite_artifacts_dir": str(art),
        "etcd_version": version,
        "etcd_tarball_arch": "amd64",
        **overrides,
    }
    inventory = {
        "all": {
            "vars": site_vars,
            "children": {
                "edgesite_masters": {"hosts": {h: {"etcd_address": ip} for h, ip in HOSTS.items()}}
            },
        }
    }
    (tmp_path / "hosts.yml").write_text(json.dumps(inventory))
    (tmp_path / "etcd.yml").write_text(json.dumps(PLAY))
    return tmp_path / "etcd.yml", tmp_path / "hosts.yml", art / tarball.name


def assert_stopped_before_hosts(result, expected: str) -> None:
    assert result.rc != 0, result.output
    assert expected in result.output, result.output
    assert "UNREACHABLE" not in result.output, result.output


def test_release_tarball_has_the_official_layout(release):
    version, tarball = release
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    top = f"etcd-v{version}-linux-amd64"
    assert {top, f"{top}/etcd", f"{top}/etcdctl"} <= names


def test_checksum_mismatch_names_the_file(tmp_path, release, run_playbook):
    playbook, inventory, tarball = setup(tmp_path, release)
    with tarball.open("ab") as f:
        f.write(b"tampered")
    result = run_playbook(str(playbook), inventory)
    assert_stopped_before_hosts(result, f"checksum mismatch: {tarball} has sha256")


def test_missing_tarball_names_the_file(tmp_path, release, run_playbook):
    playbook, inventory, tarball = setup(tmp_path, release)
    tarball.unlink()
    result = run_playbook(str(playbook), inventory)
    assert_stopped_before_hosts(result, f"missing artifact: {tarball} does not exist")


def test_missing_sum_file_names_the_file(tmp_path, release, run_playbook):
    playbook, inventory, tarball = setup(tmp_path, release)
    (tarball.parent / SUMS).unlink()
    result = run_playbook(str(playbook), inventory)
    assert_stopped_before_hosts(result, f"missing artifact: {tarball.parent / SUMS} does not exist")


def test_tarball_of_another_version_is_not_accepted(tmp_path, release, run_playbook):
    # The pinned version's file must be there and listed; a different release does not count.
    playbook, inventory, tarball = setup(tmp_path, release, etcd_version="3.5.17")
    result = run_playbook(str(playbook), inventory)
    wanted = tarball.parent / "etcd-v3.5.17-linux-amd64.tar.gz"
    assert_stopped_before_hosts(result, f"missing artifact: {wanted} does not exist")


def test_unlisted_tarball_is_not_accepted(tmp_path, release, run_playbook):
    playbook, inventory, tarball = setup(tmp_path, release)
    (tarball.parent / SUMS).write_text(f"{'0' * 64}  etcd-v9.9.9-linux-amd64.tar.gz\n")
    result = run_playbook(str(playbook), inventory)
    assert_stopped_before_hosts(result, f"artifact {tarball} is not listed in")


def test_correct_release_passes_and_the_run_reaches_the_hosts(tmp_path, release, run_playbook):
    # The control case: with a good release the role goes on to the members (unreachable
    # here), so the refusals above really stopped before the first host task.
    playbook, inventory, _ = setup(tmp_path, release)
    result = run_playbook(str(playbook), inventory)
    assert result.rc != 0
    assert "UNREACHABLE" in result.output, result.output
    assert "checksum mismatch" not in result.output and "missing artifact" not in result.output
