#!/usr/bin/python
# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Ansible modules keep DOCUMENTATION/EXAMPLES/RETURN above the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: etcd_snapshot
short_description: Save, list, prune and restore etcd v3 snapshots
version_added: 0.1.0
author: EdgeSite contributors (@edgesite)
description:
  - O(state=saved) streams a snapshot from a member through etcd's v3 JSON gateway (HTTPS with a
    client certificate) into O(backup_dir), checks the sha256 that etcd appends to every snapshot,
    and writes a C(sha256sum)-style checksum file next to it. Files are created mode 0600 (a
    snapshot holds every secret stored in the cluster).
  - O(state=listed) reports the snapshots in O(backup_dir) and whether each matches its checksum.
  - O(state=pruned) deletes snapshots beyond the newest O(keep) and/or older than O(max_age_days).
    O(state=saved) prunes too when either is set.
  - O(state=restored) restores a snapshot into a new data directory for one member (an offline
    operation, etcd must be stopped). etcd offers no API for this, so it runs
    C(etcdutl snapshot restore) (etcd 3.5+) or C(etcdctl snapshot restore) (etcd 3.4), whichever
    O(restore_binary) names or is found first.
options:
  state:
    description: What to do.
    type: str
    choices: [saved, listed, pruned, restored]
    default: saved
  backup_dir:
    description:
      - Directory holding the snapshots. Created (mode 0700) when saving.
      - Required unless O(state=restored) with O(src).
    type: path
  prefix:
    description: File name prefix; files are named C(PREFIX-YYYYmmddTHHMMSSZ.db).
    type: str
    default: etcd-snapshot
  keep:
    description: Keep at most this many snapshots with O(prefix) (newest first). 0 keeps all.
    type: int
    default: 0
  max_age_days:
    description: Delete snapshots older than this many days. 0 keeps all ages.
    type: float
    default: 0
  src:
    description:
      - Snapshot file to restore. Defaults to the newest snapshot with O(prefix) in O(backup_dir).
    type: path
  data_dir:
    description: Data directory to create for the member (O(state=restored)).
    type: path
  name:
    description: Member name to restore as (the member's etcd C(name)).
    type: str
  initial_cluster:
    description:
      - C(initial-cluster) of the restored cluster, every member as C(name=peer_url).
      - Every member must be restored from the same snapshot with the same value.
    type: str
  initial_cluster_token:
    description:
      - Token of the restored cluster. Use a new one, so members of the old cluster can never
        join the restored one by mistake.
    type: str
  initial_advertise_peer_urls:
    description: Peer URLs of this member, as listed for it in O(initial_cluster).
    type: list
    elements: str
  force:
    description:
      - When O(data_dir) already holds data that was not restored from this snapshot with these
        settings, move it aside to C(DATA_DIR.pre-restore-TIMESTAMP) and restore. Without it the
        module refuses and names the directory.
    type: bool
    default: false
  owner:
    description: Owner given to the restored data directory (etcd runs as C(etcd) on Debian).
    type: str
  group:
    description: Group given to the restored data directory.
    type: str
  restore_binary:
    description:
      - Path of C(etcdutl) or C(etcdctl). Default is C(etcdutl), then C(etcdctl), from PATH.
    type: path
  endpoints:
    description:
      - Client URLs to take the snapshot from; the first healthy one is used.
      - Required for O(state=saved); ignored otherwise.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - edgesite.fleet.etcd
attributes:
  check_mode:
    support: full
    description: Reports what would change without changing it.
  diff_mode:
    support: full
    description: Shows the state before and after.
notes:
  - O(state=restored) is idempotent through a small record, C(DATA_DIR.restore.json), written
    next to the data directory after a successful restore; a second run with the same snapshot
    checksum, name, token and cluster reports no change and does not touch the data.
seealso:
  - name: etcd disaster recovery
    description: Snapshot, restore and the new cluster token.
    link: https://etcd.io/docs/v3.4/op-guide/recovery/
"""

EXAMPLES = r"""
- name: Save a snapshot and keep the newest 7
  edgesite.fleet.etcd_snapshot:
    state: saved
    backup_dir: /var/backups/etcd
    keep: 7
    endpoints: ["https://127.0.0.1:2379"]
    ca_cert: /etc/etcd/pki/ca.crt
    client_cert: /etc/etcd/pki/client.crt
    client_key: /etc/etcd/pki/client.key
  register: snap

- name: Restore this member from the snapshot (etcd stopped), with a new cluster token
  edgesite.fleet.etcd_snapshot:
    state: restored
    src: /var/backups/etcd/etcd-snapshot-20260101T000000Z.db
    data_dir: /var/lib/etcd/default
    name: master-1
    initial_cluster: master-1=https://10.0.0.11:2380,master-2=https://10.0.0.12:2380
    initial_cluster_token: edgesite-restored-20260101
    initial_advertise_peer_urls: ["https://10.0.0.11:2380"]
    owner: etcd
    group: etcd
    force: true
"""

RETURN = r"""
path:
  description: Snapshot saved (O(state=saved)) or restored from (O(state=restored)).
  returned: when state is saved or restored
  type: str
sha256:
  description: sha256 of that snapshot file.
  returned: when state is saved or restored
  type: str
size:
  description: Size in bytes of the saved snapshot.
  returned: when state is saved
  type: int
endpoint:
  description: Endpoint the snapshot was streamed from.
  returned: when state is saved
  type: str
snapshots:
  description: Snapshots in O(backup_dir) after the run, newest first.
  returned: unless state is restored
  type: list
  elements: dict
  sample: [{"path": "/var/backups/etcd/etcd-snapshot-20260101T000000Z.db", "size": 20512,
            "mtime": 1767225600.0, "checksum_ok": true}]
pruned:
  description: Snapshots deleted (would be, in check mode).
  returned: unless state is restored
  type: list
  elements: str
moved_aside:
  description: Where existing data was moved when O(force) was needed.
  returned: when state is restored and data was moved
  type: str
"""

import contextlib
import datetime
import glob
import grp
import json
import os
import pwd
import shutil
import tempfile
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgesite.fleet.plugins.module_utils.etcd import (
    ETCD_CONNECTION_ARGS,
    EtcdClient,
    EtcdError,
    file_sha256,
    verify_snapshot_hash,
)


def checksum_path(path: str) -> str:
    return path + ".sha256"


def read_checksum(path: str) -> str | None:
    try:
        with open(checksum_path(path)) as fh:
            return fh.read().split()[0]
    except (OSError, IndexError):
        return None


def list_snapshots(backup_dir: str, prefix: str, verify: bool = False) -> list[dict[str, Any]]:
    found = []
    for path in glob.glob(os.path.join(glob.escape(backup_dir), f"{glob.escape(prefix)}-*.db")):
        st = os.stat(path)
        entry: dict[str, Any] = {"path": path, "size": st.st_size, "mtime": st.st_mtime}
        if verify:
            expected = read_checksum(path)
            entry["checksum_ok"] = expected is not None and expected == file_sha256(path)
        found.append(entry)
    # Names carry a UTC timestamp, so name order is age order even if mtimes were reset by a copy.
    return sorted(found, key=lambda e: os.path.basename(e["path"]), reverse=True)


def select_prune(snapshots: list[dict[str, Any]], keep: int, max_age_days: float) -> list[str]:
    doomed = []
    now = time.time()
    for index, snap in enumerate(snapshots):
        too_many = keep > 0 and index >= keep
        too_old = max_age_days > 0 and now - snap["mtime"] > max_age_days * 86400
        if too_many or too_old:
            doomed.append(snap["path"])
    return doomed


def prune(module: AnsibleModule, doomed: list[str]) -> None:
    if module.check_mode:
        return
    for path in doomed:
        for victim in (path, checksum_path(path)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(victim)


def save(module: AnsibleModule, client: EtcdClient, backup_dir: str, prefix: str) -> dict[str, Any]:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(backup_dir, f"{prefix}-{stamp}.db")
    if module.check_mode:
        return {"path": path}
    os.makedirs(backup_dir, mode=0o700, exist_ok=True)
    if os.path.exists(path):
        module.fail_json(msg=f"Snapshot {path} already exists (two saves within one second).")

    endpoint = next((e for e in client.endpoints if client.health(e)[0]), None)
    if endpoint is None:
        module.fail_json(
            msg=f"No healthy etcd endpoint to take a snapshot from: {', '.join(client.endpoints)}"
        )
    fd, tmp = tempfile.mkstemp(prefix=f".{prefix}-", suffix=".part", dir=backup_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in client.snapshot_chunks(endpoint):
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        if not verify_snapshot_hash(tmp):
            module.fail_json(
                msg=f"Snapshot streamed from {endpoint} does not match the sha256 etcd appended "
                "to it: the transfer was damaged. Nothing was kept."
            )
        digest = file_sha256(tmp)
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    except EtcdError as exc:
        module.fail_json(msg=f"Cannot save an etcd snapshot from {endpoint}: {exc.message}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    sum_fd = os.open(checksum_path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(sum_fd, "w") as fh:
        fh.write(f"{digest}  {os.path.basename(path)}\n")
    return {"path": path, "sha256": digest, "size": os.path.getsize(path), "endpoint": endpoint}


def find_restore_binary(module: AnsibleModule) -> list[str]:
    explicit = module.params["restore_binary"]
    if explicit:
        return [explicit]
    for name in ("etcdutl", "etcdctl"):
        found = module.get_bin_path(name)
        if found:
            return [found]
    module.fail_json(
        msg="Neither etcdutl (etcd 3.5+) nor etcdctl (etcd 3.4) was found to restore the "
        "snapshot offline; install etcd-client or set restore_binary."
    )
    return []


def chown_tree(module: AnsibleModule, top: str) -> None:
    owner, group = module.params["owner"], module.params["group"]
    if not owner and not group:
        return
    try:
        uid = pwd.getpwnam(owner).pw_uid if owner else -1
        gid = grp.getgrnam(group).gr_gid if group else -1
    except KeyError as exc:
        module.fail_json(msg=f"Unknown owner or group for the restored data dir: {exc}")
    for root, dirs, files in os.walk(top):
        os.chown(root, uid, gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid)


def restore(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    for required in (
        "data_dir",
        "name",
        "initial_cluster",
        "initial_cluster_token",
        "initial_advertise_peer_urls",
    ):
        if not p[required]:
            module.fail_json(msg=f"state=restored needs {required}.")
    src = p["src"]
    if not src:
        if not p["backup_dir"]:
            module.fail_json(msg="state=restored needs src or backup_dir.")
        snaps = list_snapshots(p["backup_dir"], p["prefix"])
        if not snaps:
            module.fail_json(msg=f"No snapshot named {p['prefix']}-*.db in {p['backup_dir']}.")
        src = snaps[0]["path"]
    if not os.path.isfile(src):
        module.fail_json(msg=f"Snapshot {src} does not exist.")

    digest = file_sha256(src)
    expected = read_checksum(src)
    if expected is not None and expected != digest:
        module.fail_json(
            msg=f"Snapshot {src} does not match its checksum file "
            f"{checksum_path(src)}: refusing to restore a damaged file."
        )
    if expected is None:
        module.warn(f"Snapshot {src} has no checksum file; only etcd's own hash is checked.")

    data_dir = os.path.normpath(p["data_dir"])
    record_path = data_dir + ".restore.json"
    record = {
        "snapshot_sha256": digest,
        "name": p["name"],
        "initial_cluster": p["initial_cluster"],
        "initial_cluster_token": p["initial_cluster_token"],
        "initial_advertise_peer_urls": p["initial_advertise_peer_urls"],
    }
    result: dict[str, Any] = {"path": src, "sha256": digest, "changed": True}
    has_data = os.path.isdir(os.path.join(data_dir, "member"))
    previous = None
    if os.path.exists(record_path):
        with open(record_path) as fh, contextlib.suppress(ValueError):
            previous = json.load(fh)
    if has_data and previous == record:
        result["changed"] = False
        return result
    if has_data and not p["force"]:
        module.fail_json(
            msg=f"Data directory {data_dir} already holds etcd data that was not restored from "
            f"{src} with these settings. Stop etcd and set force: true to move it aside."
        )
    result["diff"] = {
        "before": json.dumps(previous or {"data_dir": data_dir, "has_data": has_data}, indent=2),
        "after": json.dumps(record, indent=2),
    }
    if module.check_mode:
        return result

    binary = find_restore_binary(module)
    if os.path.lexists(data_dir):
        aside = f"{data_dir}.pre-restore-{time.strftime('%Y%m%dT%H%M%S')}"
        os.rename(data_dir, aside)
        result["moved_aside"] = aside
    # Restore next to the target and rename: a failed restore never leaves a half data dir.
    work = tempfile.mkdtemp(prefix=".restore-", dir=os.path.dirname(data_dir) or ".")
    staged = os.path.join(work, "data")
    cmd = [
        *binary,
        "snapshot",
        "restore",
        src,
        f"--data-dir={staged}",
        f"--name={p['name']}",
        f"--initial-cluster={p['initial_cluster']}",
        f"--initial-cluster-token={p['initial_cluster_token']}",
        f"--initial-advertise-peer-urls={','.join(p['initial_advertise_peer_urls'])}",
    ]
    env = {"ETCDCTL_API": "3"}
    try:
        rc, _out, err = module.run_command(cmd, environ_update=env)
        if rc != 0:
            module.fail_json(
                msg=f"{os.path.basename(binary[0])} snapshot restore of {src} into "
                f"{data_dir} failed (rc={rc}): {err.strip()[-2000:]}",
                cmd=cmd,
            )
        os.chmod(staged, 0o700)
        chown_tree(module, staged)
        os.rename(staged, data_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fd = os.open(record_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=2)
    return result


def main() -> None:
    spec = dict(ETCD_CONNECTION_ARGS)
    spec["endpoints"] = {"type": "list", "elements": "str", "default": []}
    spec.update(
        state={
            "type": "str",
            "choices": ["saved", "listed", "pruned", "restored"],
            "default": "saved",
        },
        backup_dir={"type": "path"},
        prefix={"type": "str", "default": "etcd-snapshot"},
        keep={"type": "int", "default": 0},
        max_age_days={"type": "float", "default": 0},
        src={"type": "path"},
        data_dir={"type": "path"},
        name={"type": "str"},
        initial_cluster={"type": "str"},
        initial_cluster_token={"type": "str", "no_log": False},
        initial_advertise_peer_urls={"type": "list", "elements": "str"},
        force={"type": "bool", "default": False},
        owner={"type": "str"},
        group={"type": "str"},
        restore_binary={"type": "path"},
    )
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
        required_if=[
            ("state", "saved", ("backup_dir", "endpoints")),
            ("state", "listed", ("backup_dir",)),
            ("state", "pruned", ("backup_dir",)),
        ],
    )
    p = module.params
    state = p["state"]
    if state == "restored":
        module.exit_json(**restore(module))

    backup_dir, prefix = p["backup_dir"], p["prefix"]
    result: dict[str, Any] = {"changed": False, "pruned": []}
    before = [s["path"] for s in list_snapshots(backup_dir, prefix)]
    after = list(before)
    if state == "saved":
        client = EtcdClient.from_module_params(p)
        result.update(save(module, client, backup_dir, prefix))
        result["changed"] = True
        after.insert(0, result["path"])
    if state in ("saved", "pruned") and (p["keep"] or p["max_age_days"]):
        current = list_snapshots(backup_dir, prefix)
        if module.check_mode and state == "saved":
            # The new file does not exist in check mode; count it as the newest.
            current.insert(0, {"path": result["path"], "size": 0, "mtime": time.time()})
        result["pruned"] = select_prune(current, p["keep"], p["max_age_days"])
        prune(module, result["pruned"])
        after = [path for path in after if path not in result["pruned"]]
        result["changed"] = result["changed"] or bool(result["pruned"])
    result["snapshots"] = (
        list_snapshots(backup_dir, prefix, verify=state == "listed")
        if os.path.isdir(backup_dir)
        else []
    )
    if module._diff:
        result["diff"] = {"before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n"}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
