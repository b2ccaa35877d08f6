"""Preflight verifies the pinned k3s artifacts too: give every case a valid artifact directory
(its `k3s` is the test stand-in, see tests/k3s/artifacts.py)."""

from __future__ import annotations

import pytest
from k3s.artifacts import add_version

DEFAULT_VERSION = "v1.36.4+k3s1"


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    add_version(root, DEFAULT_VERSION)
    return root
