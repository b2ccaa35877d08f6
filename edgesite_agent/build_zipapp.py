"""Build the single-file agent: `python -m edgesite_agent.build_zipapp OUT`.

Edge nodes have python3 but no pip, so the whole agent (including the proxy, when present)
ships as one stdlib `zipapp`. Only .py files go in, sorted, with fixed timestamps, so the
same sources give the same bytes (the Ansible role upgrades on checksum change).
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

PKG = Path(__file__).resolve().parent
MAIN = "import sys\nfrom edgesite_agent.__main__ import main\nsys.exit(main())\n"


def build(out: Path, interpreter: str = "/usr/bin/env python3") -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(f"#!{interpreter}\n".encode())
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            files = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)
            for path in files:
                info = zipfile.ZipInfo(
                    str(Path("edgesite_agent") / path.relative_to(PKG)), (1980, 1, 1, 0, 0, 0)
                )
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, path.read_bytes())
            info = zipfile.ZipInfo("__main__.py", (1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, MAIN)
    tmp.chmod(0o755)
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m edgesite_agent.build_zipapp OUT", file=sys.stderr)
        return 2
    print(build(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
