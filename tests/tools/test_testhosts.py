"""The test-host tool's image cache key and generated inventory."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

spec = importlib.util.spec_from_file_location("testhosts", REPO / "tools" / "testhosts.py")
testhosts = importlib.util.module_from_spec(spec)
# dataclasses resolve their module through sys.modules.
sys.modules["testhosts"] = testhosts
spec.loader.exec_module(testhosts)


def test_image_tag_is_stable_for_an_unchanged_recipe():
    assert testhosts.image_tag() == testhosts.image_tag()
    assert testhosts.image_tag().startswith("localhost/edgesite-base:")


def test_image_tag_changes_with_the_recipe(monkeypatch):
    before = testhosts.image_tag()
    monkeypatch.setitem(testhosts.RECIPE, "include", [*testhosts.RECIPE["include"], "chrony"])
    assert testhosts.image_tag() != before


def test_podman_always_gets_the_project_containers_conf():
    env = testhosts.podman_env()
    assert env["CONTAINERS_CONF"] == str(REPO / "tools" / "containers.conf")
    conf = (REPO / "tools" / "containers.conf").read_text()
    assert 'runtime = "runc"' in conf
    assert "default_ulimits = []" in conf


def test_inventory_places_hosts_in_the_edgesite_groups():
    site = testhosts.Site(
        "default", [("edgesite-sbx-m1", "10.89.0.2")], [("edgesite-sbx-w1", "10.89.0.3")]
    )
    text = testhosts.render_inventory("sbx", [site])
    body = json.loads(text.split("\n", 1)[1])
    children = body["all"]["children"]
    assert children["edgesite_masters"]["hosts"] == {
        "edgesite-sbx-m1": {"edgesite_node_ip": "10.89.0.2"}
    }
    assert children["edgesite_workers"]["hosts"] == {
        "edgesite-sbx-w1": {"edgesite_node_ip": "10.89.0.3"}
    }
    assert body["all"]["vars"]["ansible_connection"] == "containers.podman.podman"


def test_multi_site_ssh_inventory_names_each_hosts_site_and_pins_host_keys(tmp_path):
    sites = [
        testhosts.Site(name, [(f"{name}-m1", f"10.89.{i}.2")], [(f"{name}-w1", f"10.89.{i}.3")])
        for i, name in enumerate(testhosts.site_names(2), start=1)
    ]
    ssh = testhosts.SshAccess(tmp_path / "id_ed25519", tmp_path / "known_hosts")
    body = json.loads(testhosts.render_inventory("fleet", sites, ssh).split("\n", 1)[1])
    masters = body["all"]["children"]["edgesite_masters"]["hosts"]
    assert masters["site2-m1"] == {
        "edgesite_node_ip": "10.89.2.2",
        "edgesite_site": "site2",
        "ansible_host": "10.89.2.2",
    }
    assert body["all"]["vars"]["ansible_connection"] == "ssh"
    assert (
        f"UserKnownHostsFile={tmp_path / 'known_hosts'}"
        in (body["all"]["vars"]["ansible_ssh_common_args"])
    )


def test_host_names_carry_the_site_only_in_multi_site_fleets():
    assert testhosts.host_names("sbx", 1, 1) == (["edgesite-sbx-m1"], ["edgesite-sbx-w1"])
    assert testhosts.host_names("f", 1, 0, "site2", 3) == (["edgesite-f-site2-m1"], [])
