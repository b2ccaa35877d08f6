"""Fixtures: a throw-away PKI and real etcd clusters on loopback, torn down after use."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import ETCD_BIN, EtcdCluster
from .pki import TestPki, make_pki

if not Path(ETCD_BIN).exists():  # pragma: no cover - environment guard
    pytest.skip("etcd binary not installed (apt-get install etcd-server)", allow_module_level=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_pki(tmp_path_factory.mktemp("etcd-pki"))


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory: pytest.TempPathFactory, pki: TestPki) -> Iterator[EtcdCluster]:
    """A healthy 3-member cluster shared by the tests of one module."""
    base = tmp_path_factory.mktemp("etcd3")
    cluster = EtcdCluster.create(base, pki, 3, token=f"test-{uuid.uuid4().hex[:8]}")
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()
        shutil.rmtree(base, ignore_errors=True)
