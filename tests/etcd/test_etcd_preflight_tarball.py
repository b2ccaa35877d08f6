"""A bad etcd release tarball stops its site in preflight, before any host of it is touched.

Two sites of external etcd installed from tarballs, in one inventory, through the full site.yml:
site 'bad' (3 masters + 1 worker) has a tampered tarball, site 'good' (1 master + 1 worker) a
correct one. Every host points at a closed loopback SSH port: a host the run tried to change
shows up as unreachable. The bad site must stop in preflight without a connection attempt on
any of its hosts (a worker included, though it installs no etcd), with the tarball checked
once for its three members; the good site must go on to its first host task (and then be
unreachable), proving that the refusal was its site's alone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from k3s.artifacts import add_version

from .release import SUMS, build_release

K3S = "v1.36.4+k3s1"
SITES = {
    "bad": {"masters": ["bad-m1", "bad-m2", "bad-m3"], "workers": ["bad-w1"]},
    "good": {"masters": ["good-m1"], "workers": ["good-w1"]},
}


def recap(output: str) -> dict[str, dict[str, int]]:
    stats = {}
    for host, rest in re.findall(r"^(\S+)\s+: (ok=.*)$", output, re.M):
        stats[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", rest)}
    return stats


def fleet(tmp_path: Path) -> tuple[Path, Path]:
    """Inventory of both sites; returns it and the bad site's tarball."""
    version, tarball = build_release(tmp_path / "release")
    artifacts = tmp_path / "k3s-artifacts"
    add_version(artifacts, K3S)
    groups: dict[str, dict] = {"edgesite_masters": {"hosts": {}}, "edgesite_workers": {"hosts": {}}}
    bad_tarball = tarball
    for number, (site, shape) in enumerate(SITES.items(), start=1):
        etcd_dir = tmp_path / f"etcd-{site}"
        etcd_dir.mkdir()
        (etcd_dir / tarball.name).write_bytes(tarball.read_bytes())
        (etcd_dir / SUMS).write_text((tarball.parent / SUMS).read_text())
        if site == "bad":
            bad_tarball = etcd_dir / tarball.name
            with bad_tarball.open("ab") as f:
                f.write(b"tampered")
        hosts = {}
        for index, host in enumerate(shape["masters"] + shape["workers"], start=1):
            hosts[host] = {"edgesite_node_ip": f"10.{number}.0.{10 + index}"}
            role = "edgesite_masters" if host in shape["masters"] else "edgesite_workers"
            groups[role]["hosts"][host] = None
        groups[f"site_{site}"] = {
            "hosts": hosts,
            "vars": {
                "edgesite_site": site,
                "edgesite_datastore": "external",
                "etcd_install_method": "tarball",
                "etcd_artifacts_dir": str(etcd_dir),
                "etcd_version": version,
            },
        }
    inventory = {
        "all": {
            "vars": {
                "ansible_host": "127.0.0.1",
                "ansible_port": 9,
                "ansible_connection": "ssh",
                "edgesite_artifacts_dir": str(artifacts),
                "edgesite_k3s_version": K3S,
            },
            "children": groups,
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(json.dumps(inventory))
    return path, bad_tarball


def test_bad_etcd_tarball_stops_its_site_before_any_host_is_touched(tmp_path, run_playbook):
    inventory, bad_tarball = fleet(tmp_path)
    result = run_playbook("site.yml", inventory, "--skip-tags", "edge_agent")
    out = result.output
    assert result.rc != 0, out
    stats = recap(out)
    # Checked once for the site's three members (same artifact dir and release), on the
    # controller, and named in the failure.
    tasks_part = out[: out.index("PLAY RECAP")]
    assert tasks_part.count(f"checksum mismatch: {bad_tarball} has sha256") == 1, out
    bad_hosts = SITES["bad"]["masters"] + SITES["bad"]["workers"]
    for host in bad_hosts:
        # Failed in preflight, never contacted, never changed.
        assert stats[host]["failed"] == 1, (host, out[-4000:])
        assert stats[host]["unreachable"] == 0, (host, out[-4000:])
        assert stats[host]["changed"] == 0, (host, out[-4000:])
        assert not re.search(rf"\[{host}\]: UNREACHABLE", out), host
    assert "Site 'bad' is not valid; nothing was changed on it" in out, out
    # The good site passed preflight and went on to its hosts (unreachable here).
    for host in SITES["good"]["masters"] + SITES["good"]["workers"]:
        assert stats[host]["unreachable"] == 1, (host, out[-4000:])
        assert stats[host]["failed"] == 0, (host, out[-4000:])
