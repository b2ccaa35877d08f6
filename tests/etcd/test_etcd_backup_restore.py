"""Whole-cluster backup and restore with edgesite.fleet.etcd_snapshot on a real 3-member etcd."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

from .ansible_run import run_module
from .cluster import EtcdCluster
from .integration import converge_twice

N_KEYS = 500


def test_snapshot_wipe_restore_brings_every_key_back(cluster3: EtcdCluster, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    written = {f"/restore/{i:04d}": f"v{i}-{'z' * (i % 50)}" for i in range(N_KEYS)}
    gw = cluster3.gateway()
    try:
        gw.put_many(cluster3.endpoints[0], written)
    finally:
        gw.close()
    old = run_module("etcd_info", cluster3.conn_args())

    saved = run_module(
        "etcd_snapshot", {**cluster3.conn_args(), "state": "saved", "backup_dir": str(backups)}
    )
    assert saved["changed"] is True and not saved.get("failed"), saved
    snap = Path(saved["path"])
    assert stat.S_IMODE(snap.stat().st_mode) == 0o600
    assert (backups / (snap.name + ".sha256")).read_text().split()[0] == saved["sha256"]

    listed = run_module("etcd_snapshot", {"state": "listed", "backup_dir": str(backups)})
    assert [s["checksum_ok"] for s in listed["snapshots"]] == [True]

    # Disaster: every member gone with its data.
    cluster3.stop_all()
    for member in cluster3.members:
        shutil.rmtree(member.data_dir)

    token = "restored-" + cluster3.token
    initial = cluster3.initial_cluster()
    for index, member in enumerate(cluster3.members):
        args = {
            "state": "restored",
            "src": str(snap),
            "data_dir": str(member.data_dir),
            "name": member.name,
            "initial_cluster": initial,
            "initial_cluster_token": token,
            "initial_advertise_peer_urls": [member.peer_url],
        }
        if index == 0:
            converge_twice("etcd_snapshot", args)
        else:
            result = run_module("etcd_snapshot", args)
            assert result["changed"] is True and not result.get("failed"), result
        assert (member.data_dir / "member").is_dir()
        assert stat.S_IMODE(member.data_dir.stat().st_mode) == 0o700

    cluster3.start_all()
    new = run_module("etcd_info", cluster3.conn_args())
    assert new["healthy"] is True, new
    assert sorted(m["name"] for m in new["members"]) == ["m1", "m2", "m3"]
    # A new token means a new cluster identity: old members could never rejoin by mistake.
    assert new["cluster_id"] != old["cluster_id"]

    gw = cluster3.gateway()
    try:
        for member in cluster3.members:
            _, data = gw.get_prefix(member.client_url, "/restore/", serializable=True)
            assert data == written, f"{member.name} differs after restore"
        # And the restored cluster takes writes.
        assert gw.put(cluster3.endpoints[2], "/restore/after", "ok") > 0
    finally:
        gw.close()


def test_restore_refuses_existing_data_and_damaged_snapshots(
    cluster3: EtcdCluster, tmp_path: Path
) -> None:
    backups = tmp_path / "b"
    saved = run_module(
        "etcd_snapshot", {**cluster3.conn_args(), "state": "saved", "backup_dir": str(backups)}
    )
    member = cluster3.members[0]
    args = {
        "state": "restored",
        "src": saved["path"],
        "data_dir": str(member.data_dir),  # the running member's live data
        "name": member.name,
        "initial_cluster": cluster3.initial_cluster(),
        "initial_cluster_token": "x",
        "initial_advertise_peer_urls": [member.peer_url],
    }
    refused = run_module("etcd_snapshot", args)
    assert refused.get("failed") is True
    assert str(member.data_dir) in refused["msg"] and "force" in refused["msg"]

    damaged = backups / "etcd-snapshot-20000101T000000Z.db"
    shutil.copy(saved["path"], damaged)
    shutil.copy(saved["path"] + ".sha256", str(damaged) + ".sha256")
    with damaged.open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\xff" * 16)
    target = tmp_path / "restore-here"
    bad = run_module("etcd_snapshot", {**args, "src": str(damaged), "data_dir": str(target)})
    assert bad.get("failed") is True and "checksum" in bad["msg"]
    assert not target.exists()

    listed = run_module("etcd_snapshot", {"state": "listed", "backup_dir": str(backups)})
    ok = {os.path.basename(s["path"]): s["checksum_ok"] for s in listed["snapshots"]}
    assert ok == {os.path.basename(saved["path"]): True, damaged.name: False}


def test_prune_keeps_the_newest(cluster3: EtcdCluster, tmp_path: Path) -> None:
    backups = tmp_path / "p"
    paths = []
    for _ in range(3):
        saved = run_module(
            "etcd_snapshot", {**cluster3.conn_args(), "state": "saved", "backup_dir": str(backups)}
        )
        paths.append(saved["path"])
        time.sleep(1.1)  # file names carry a one-second timestamp
    result = converge_twice(
        "etcd_snapshot", {"state": "pruned", "backup_dir": str(backups), "keep": 1}
    )
    assert sorted(result["pruned"]) == sorted(paths[:2])
    assert [s["path"] for s in result["snapshots"]] == [paths[2]]
    assert sorted(os.listdir(backups)) == sorted(
        [os.path.basename(paths[2]), os.path.basename(paths[2]) + ".sha256"]
    )
