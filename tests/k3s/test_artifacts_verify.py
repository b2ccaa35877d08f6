"""The pinned k3s release is verified on the controller before any host is changed.

Hosts point at a closed loopback port: a run that got past verification would try to reach
them and show UNREACHABLE. The artifact directory's `k3s` is the test stand-in.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import pytest

from k3s.artifacts import BINARY, IMAGES, SUMS, add_version

VERSION = "v1.36.4+k3s1"


def inventory(tmp_path: Path, **site_vars) -> Path:
    hosts = {"edgesite_masters": {"m1": "10.0.0.11"}, "edgesite_workers": {"w1": "10.0.0.21"}}
    data = {
        "all": {
            "vars": {
                "ansible_host": "127.0.0.1",
                "ansible_port": 9,
                "ansible_connection": "ssh",
                "edgesite_k3s_version": VERSION,
                **site_vars,
            },
            "children": {
                group: {"hosts": {h: {"edgesite_node_ip": ip} for h, ip in members.items()}}
                for group, members in hosts.items()
            },
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(json.dumps(data))
    return path


def assert_stopped_before_hosts(result, expected: str) -> None:
    assert result.rc != 0, result.output
    assert expected in result.output, result.output
    assert "Gathering Facts" not in result.output, result.output
    assert "UNREACHABLE" not in result.output, result.output


def test_checksum_mismatch_names_the_file(tmp_path, run_playbook):
    release = add_version(tmp_path / "art", VERSION)
    (release / BINARY).write_text("#!/bin/sh\necho tampered\n")
    result = run_playbook(
        "site.yml", inventory(tmp_path, edgesite_artifacts_dir=str(tmp_path / "art"))
    )
    assert_stopped_before_hosts(result, f"checksum mismatch: {release / BINARY} has sha256")


def test_missing_artifact_names_the_file(tmp_path, run_playbook):
    release = add_version(tmp_path / "art", VERSION)
    (release / IMAGES).unlink()
    result = run_playbook(
        "site.yml", inventory(tmp_path, edgesite_artifacts_dir=str(tmp_path / "art"))
    )
    assert_stopped_before_hosts(result, f"missing artifact: {release / IMAGES} does not exist")


def test_missing_sum_file_names_the_file(tmp_path, run_playbook):
    release = add_version(tmp_path / "art", VERSION)
    (release / SUMS).unlink()
    result = run_playbook(
        "site.yml", inventory(tmp_path, edgesite_artifacts_dir=str(tmp_path / "art"))
    )
    assert_stopped_before_hosts(result, f"missing artifact: {release / SUMS}")


def test_release_of_another_version_is_not_accepted(tmp_path, run_playbook):
    # Only the pinned release's directory counts, even when another release is present.
    add_version(tmp_path / "art", "v1.35.8+k3s1")
    result = run_playbook(
        "site.yml", inventory(tmp_path, edgesite_artifacts_dir=str(tmp_path / "art"))
    )
    assert_stopped_before_hosts(result, f"k3s/{VERSION}/{SUMS}")


@pytest.fixture
def release_server(tmp_path):
    """A loopback HTTP server laid out like the release download site: /<tag>/<file>."""
    served = tmp_path / "served"
    add_version(served, VERSION)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served / "k3s"))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join()


def test_online_source_downloads_once_to_the_controller_and_verifies(
    tmp_path, run_playbook, release_server
):
    served, url = release_server
    cache = tmp_path / "cache"
    inv = inventory(tmp_path, k3s_artifacts_release_url=url, k3s_artifacts_cache_dir=str(cache))
    result = run_playbook("playbooks/preflight.yml", inv)
    assert result.rc == 0, result.output
    for name in (BINARY, IMAGES, SUMS):
        got = cache / "k3s" / VERSION / name
        assert got.read_bytes() == (served / "k3s" / VERSION / name).read_bytes()


def test_online_source_rejects_a_tampered_download(tmp_path, run_playbook, release_server):
    served, url = release_server
    (served / "k3s" / VERSION / IMAGES).write_bytes(b"not the release's images\n")
    inv = inventory(
        tmp_path, k3s_artifacts_release_url=url, k3s_artifacts_cache_dir=str(tmp_path / "c")
    )
    result = run_playbook("site.yml", inv)
    assert_stopped_before_hosts(result, "Could not download k3s")
    assert "checksum" in result.output.lower(), result.output
    assert not (tmp_path / "c" / "k3s" / VERSION / IMAGES).exists()


def test_online_source_without_internet_explains_the_airgap_option(tmp_path, run_playbook):
    # Port 9 on loopback refuses the connection, like a controller without internet.
    inv = inventory(
        tmp_path,
        k3s_artifacts_release_url="http://127.0.0.1:9",
        k3s_artifacts_cache_dir=str(tmp_path / "c"),
    )
    result = run_playbook("site.yml", inv)
    assert_stopped_before_hosts(result, "set edgesite_artifacts_dir")
