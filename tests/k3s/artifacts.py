"""Builds an air-gap artifact directory whose `k3s` is the TEST STAND-IN (not k3s).

Layout, as the k3s_artifacts role expects it (one directory per pinned release, named like
the release tag, holding the release's own file names):

    <root>/k3s/<version>/k3s
    <root>/k3s/<version>/k3s-airgap-images-amd64.tar.zst   (placeholder bytes, not images)
    <root>/k3s/<version>/sha256sum-amd64.txt
"""

from __future__ import annotations

import hashlib
from pathlib import Path

STANDIN = Path(__file__).resolve().parent / "standin" / "k3s-test-standin.py"
BINARY = "k3s"
IMAGES = "k3s-airgap-images-amd64.tar.zst"
SUMS = "sha256sum-amd64.txt"


def add_version(root: Path, version: str) -> Path:
    """Write one release directory with a correct sha256 sum file; return it."""
    release = root / "k3s" / version
    release.mkdir(parents=True, exist_ok=True)
    binary = release / BINARY
    binary.write_text(STANDIN.read_text().replace("@VERSION@", version))
    binary.chmod(0o755)
    (release / IMAGES).write_bytes(f"placeholder airgap images for {version}\n".encode())
    lines = [
        f"{hashlib.sha256((release / name).read_bytes()).hexdigest()}  {name}"
        for name in (BINARY, IMAGES)
    ]
    (release / SUMS).write_text("\n".join(lines) + "\n")
    return release
