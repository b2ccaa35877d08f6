"""An etcd release directory in the official layout, built from the etcd installed here.

etcd's releases ship `etcd-vX.Y.Z-linux-ARCH.tar.gz` (one top directory of that name holding
`etcd`, `etcdctl`, from 3.5 on `etcdutl`, and docs) plus a `SHA256SUMS` file with
`<sha256>  <file>` lines. No release can be downloaded here, so the tarball is packed from the
REAL Debian etcd binaries (/usr/bin/etcd, /usr/bin/etcdctl, 3.4.x), under the version they
report: a member installed from it runs real etcd.

Usable as a script (molecule prepare): `python -m etcd.release DIR` prints the version.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
import tarfile
from pathlib import Path

BIN_DIR = Path("/usr/bin")
SUMS = "SHA256SUMS"


def installed_version(bin_dir: Path = BIN_DIR) -> str:
    out = subprocess.run(
        [str(bin_dir / "etcd"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"etcd Version: (\d+\.\d+\.\d+)", out)
    if not match:
        raise RuntimeError(f"no version in `etcd --version` output: {out!r}")
    return match.group(1)


def tarball_name(version: str, arch: str = "amd64") -> str:
    return f"etcd-v{version}-linux-{arch}.tar.gz"


def build_release(root: Path, arch: str = "amd64", bin_dir: Path = BIN_DIR) -> tuple[str, Path]:
    """Write the tarball and SHA256SUMS into root; return (version, tarball path)."""
    version = installed_version(bin_dir)
    top = f"etcd-v{version}-linux-{arch}"
    root.mkdir(parents=True, exist_ok=True)
    tarball = root / tarball_name(version, arch)
    with tarfile.open(tarball, "w:gz") as tar:
        directory = tarfile.TarInfo(top)
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        tar.addfile(directory)
        for name in ("etcd", "etcdctl"):
            tar.add(bin_dir / name, arcname=f"{top}/{name}")
        readme = f"etcd v{version} (test release packed from {bin_dir})\n".encode()
        info = tarfile.TarInfo(f"{top}/README.md")
        info.size = len(readme)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(readme))
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    (root / SUMS).write_text(f"{digest}  {tarball.name}\n")
    return version, tarball


if __name__ == "__main__":
    print(build_release(Path(sys.argv[1]))[0])
