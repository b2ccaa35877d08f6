"""The informers' compact diff state behaves like the dict it replaces, and gives back
resourceVersions exactly as the API sent them (they are opaque strings)."""

from __future__ import annotations

import pytest

from edgesite_agent.versions import Versions


@pytest.mark.parametrize("rv", ["0", "1", "987654321012", "0123", "+5", "12a", "", "٣", "1 "])
def test_resource_versions_round_trip_exactly(rv: str) -> None:
    v = Versions([(("ns", "a"), rv)])
    assert v[("ns", "a")] == rv and v.get(("ns", "a")) == rv
    assert v.pop(("ns", "a")) == rv and len(v) == 0


def test_mapping_behaviour_with_cluster_scoped_and_namespaced_keys() -> None:
    v = Versions()
    v[("", "edge-1")] = "10"
    v[("default", "web")] = "11"
    v[("default", "web")] = "12"  # replaced, not duplicated
    assert len(v) == 2
    assert set(v) == {("", "edge-1"), ("default", "web")}
    assert ("default", "web") in v and ("other", "web") not in v and ("", "web") not in v
    assert v.get(("other", "web")) is None and v.pop(("other", "web")) is None
    assert v == {("", "edge-1"): "10", ("default", "web"): "12"}
    assert v != {("", "edge-1"): "10", ("default", "web"): "11"}
    assert v.pop(("", "edge-1")) == "10" and set(v) == {("default", "web")}
    with pytest.raises(KeyError):
        v[("", "edge-1")]
