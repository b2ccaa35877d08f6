"""The test-host tool's image cache key and generated inventory."""

from __future__ import annotations

import importlib.util
import json

from conftest import REPO

spec = importlib.util.spec_from_file_location("testhosts", REPO / "tools" / "testhosts.py")
testhosts = importlib.util.module_from_spec(spec)
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
    text = testhosts.render_inventory(
        "sbx", [("edgesite-sbx-m1", "10.89.0.2")], [("edgesite-sbx-w1", "10.89.0.3")]
    )
    body = json.loads(text.split("\n", 1)[1])
    children = body["all"]["children"]
    assert children["edgesite_masters"]["hosts"] == {
        "edgesite-sbx-m1": {"edgesite_node_ip": "10.89.0.2"}
    }
    assert children["edgesite_workers"]["hosts"] == {
        "edgesite-sbx-w1": {"edgesite_node_ip": "10.89.0.3"}
    }
    assert body["all"]["vars"]["ansible_connection"] == "containers.podman.podman"
