#!/usr/bin/python
# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Ansible modules keep DOCUMENTATION/EXAMPLES/RETURN above the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: etcd_maintenance
short_description: Compact, defragment one member at a time, and disarm alarms in etcd v3
version_added: 0.1.0
author: EdgeSite contributors (@edgesite)
description:
  - Day-2 maintenance through etcd's v3 JSON gateway (HTTPS with a client certificate).
  - Runs the steps in the order etcd's maintenance guide gives for recovering from a space quota
    alarm, each only when asked for, each only when needed (idempotent)
    1. O(compact) the key history older than O(compact_retain_revisions) revisions.
    2. O(defragment) members whose database has enough reclaimable space, one member at a time,
    followers first and the leader last, waiting for each to be healthy before the next.
    3. O(disarm_alarms) raised alarms.
options:
  compact:
    description: Compact the key-value history.
    type: bool
    default: false
  compact_retain_revisions:
    description:
      - Revisions to keep before the current revision when compacting.
      - Nothing happens when the history up to that point is already compacted.
    type: int
    default: 1000
  defragment:
    description: Defragment members whose reclaimable space passes both thresholds below.
    type: bool
    default: false
  defrag_min_free_bytes:
    description: Defragment a member only when at least this many bytes are reclaimable.
    type: int
    default: 1048576
  defrag_min_free_ratio:
    description:
      - Defragment a member only when at least this fraction of its database file is
        reclaimable.
    type: float
    default: 0.1
  disarm_alarms:
    description: Disarm every raised alarm (NOSPACE, CORRUPT).
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait for a member to report healthy after its defragmentation.
    type: int
    default: 60
  endpoints:
    description:
      - Client URLs of all members to maintain, for example C(https://10.0.0.11:2379).
      - Defragmentation works on exactly these endpoints.
    type: list
    elements: str
    required: true
  timeout:
    # Overrides the fragment's description: defragmentation needs longer.
    description: Seconds to wait for each request (defragmentation gets at least 120).
    type: float
    default: 10.0
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
  - Defragmentation blocks reads and writes on the member while it runs, which is why members are
    done strictly one at a time and the next waits for the previous to be healthy again.
  - Disarming a NOSPACE alarm without first freeing space (compact + defragment) only lets the
    alarm return on the next write; the module warns when it does so.
seealso:
  - name: etcd maintenance guide
    description: History compaction, defragmentation, space quota and alarms.
    link: https://etcd.io/docs/v3.4/op-guide/maintenance/
"""

EXAMPLES = r"""
- name: Recover from a NOSPACE alarm
  edgesite.fleet.etcd_maintenance:
    compact: true
    defragment: true
    disarm_alarms: true
    endpoints: "{{ etcd_client_endpoints }}"
    ca_cert: /etc/etcd/pki/ca.crt
    client_cert: /etc/etcd/pki/client.crt
    client_key: /etc/etcd/pki/client.key

- name: Weekly defragmentation, only where worth it
  edgesite.fleet.etcd_maintenance:
    defragment: true
    defrag_min_free_ratio: 0.3
    endpoints: "{{ etcd_client_endpoints }}"
    ca_cert: /etc/etcd/pki/ca.crt
    client_cert: /etc/etcd/pki/client.crt
    client_key: /etc/etcd/pki/client.key
"""

RETURN = r"""
compacted_revision:
  description: Revision compacted to, 0 when no compaction was (or would be) done.
  returned: always
  type: int
defragmented:
  description: Endpoints defragmented (would be, in check mode), in the order done.
  returned: always
  type: list
  elements: str
disarmed:
  description: Alarms disarmed (would be, in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{"member_id": "8e9e05c52164694d", "alarm": "NOSPACE"}]
members:
  description: Per endpoint database size and size in use after the run.
  returned: always
  type: list
  elements: dict
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgesite.fleet.plugins.module_utils.etcd import (
    ETCD_CONNECTION_ARGS,
    EtcdClient,
    EtcdError,
    b64,
    member_id_dec,
)

COMPACTED_MARK = "required revision has been compacted"


def already_compacted(client: EtcdClient, revision: int) -> bool:
    """Has history before `revision` been compacted? A read at revision-1 tells without
    changing anything (etcd keeps no 'compacted revision' in its status)."""
    if revision <= 1:
        return True
    try:
        client.request_any(
            "/v3/kv/range",
            {
                "key": b64("\0"),
                "range_end": b64("\0"),
                "revision": revision - 1,
                "limit": 1,
                "keys_only": True,
                "count_only": True,
            },
        )
    except EtcdError as exc:
        if COMPACTED_MARK in exc.message:
            return True
        raise
    return False


def reclaimable(status: dict[str, Any]) -> int:
    return max(0, status["db_size"] - status["db_size_in_use"])


def needs_defrag(status: dict[str, Any], min_bytes: int, min_ratio: float) -> bool:
    free = reclaimable(status)
    return free >= min_bytes and free >= min_ratio * max(status["db_size"], 1)


def snapshot_state(statuses: list[dict[str, Any]], alarms: list[dict[str, str]]) -> str:
    lines = [
        f"{s['endpoint']} db_size={s['db_size']} in_use={s['db_size_in_use']}" for s in statuses
    ]
    lines += [f"alarm {a['alarm']} on member {a['member_id']}" for a in alarms]
    return "\n".join(lines) + "\n"


def main() -> None:
    spec = dict(ETCD_CONNECTION_ARGS)
    spec.update(
        compact={"type": "bool", "default": False},
        compact_retain_revisions={"type": "int", "default": 1000},
        defragment={"type": "bool", "default": False},
        defrag_min_free_bytes={"type": "int", "default": 1048576},
        defrag_min_free_ratio={"type": "float", "default": 0.1},
        disarm_alarms={"type": "bool", "default": False},
        wait_timeout={"type": "int", "default": 60},
    )
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
        required_one_of=[("compact", "defragment", "disarm_alarms")],
    )
    p = module.params
    client = EtcdClient.from_module_params(p)
    check = module.check_mode
    result: dict[str, Any] = {"compacted_revision": 0, "defragmented": [], "disarmed": []}

    try:
        statuses = [client.status(e) for e in client.endpoints]
        alarms_before = client.alarms()
    except EtcdError as exc:
        module.fail_json(msg=f"Cannot read etcd member status before maintenance: {exc}")
    before_text = snapshot_state(statuses, alarms_before)

    if p["compact"]:
        current = max(s["revision"] for s in statuses)
        target = current - p["compact_retain_revisions"]
        try:
            if target > 1 and not already_compacted(client, target):
                result["compacted_revision"] = target
                if not check:
                    client.request_any(
                        "/v3/kv/compaction",
                        {"revision": target, "physical": True},
                        timeout=max(client.timeout, 120.0),
                    )
        except EtcdError as exc:
            if COMPACTED_MARK not in exc.message:
                module.fail_json(msg=f"etcd compaction to revision {target} failed: {exc}")
            # Someone else compacted past us between the check and the call: nothing to do.
            result["compacted_revision"] = 0

    if p["defragment"]:
        # Followers first, leader last: defragmenting the leader stalls writes cluster-wide,
        # so it goes once, at the end, when the followers are known healthy.
        ordered = sorted(statuses, key=lambda s: s["member_id"] == s["leader_id"])
        for status in ordered:
            endpoint = status["endpoint"]
            if not check:
                # Compaction just above frees pages; re-read so the decision sees them.
                try:
                    status = client.status(endpoint)
                except EtcdError as exc:
                    module.fail_json(msg=f"Cannot read status of etcd member {endpoint}: {exc}")
            if not needs_defrag(status, p["defrag_min_free_bytes"], p["defrag_min_free_ratio"]):
                continue
            result["defragmented"].append(endpoint)
            if check:
                continue
            try:
                client.request(
                    endpoint,
                    "/v3/maintenance/defragment",
                    {},
                    timeout=max(client.timeout, 120.0),
                )
            except EtcdError as exc:
                module.fail_json(
                    msg=f"Defragmentation of etcd member {endpoint} failed: {exc.message}. "
                    f"Members done before it: {result['defragmented'][:-1]}",
                )
            healthy, reason = client.wait_healthy(endpoint, p["wait_timeout"])
            if not healthy:
                module.fail_json(
                    msg=f"etcd member {endpoint} is not healthy {p['wait_timeout']}s after its "
                    f"defragmentation ({reason}); stopped before the next member.",
                    defragmented=result["defragmented"],
                )

    if p["disarm_alarms"]:
        try:
            alarms = alarms_before if check else client.alarms()
            for alarm in alarms:
                result["disarmed"].append(alarm)
                if not check:
                    client.request_any(
                        "/v3/maintenance/alarm",
                        {
                            "action": "DEACTIVATE",
                            "memberID": member_id_dec(alarm["member_id"]),
                            "alarm": alarm["alarm"],
                        },
                    )
        except EtcdError as exc:
            module.fail_json(msg=f"Disarming etcd alarms failed: {exc}")
        if any(a["alarm"] == "NOSPACE" for a in result["disarmed"]) and not (
            p["compact"] and p["defragment"]
        ):
            module.warn(
                "A NOSPACE alarm was disarmed without compact and defragment in the same run; "
                "unless space was freed otherwise, the next writes will raise it again."
            )

    try:
        after_status = statuses if check else [client.status(e) for e in client.endpoints]
        after_alarms = (
            [] if not check else [a for a in alarms_before if a not in result["disarmed"]]
        )
        if not check:
            after_alarms = client.alarms()
    except EtcdError as exc:
        module.fail_json(msg=f"Cannot read etcd member status after maintenance: {exc}")

    changed = bool(result["compacted_revision"] or result["defragmented"] or result["disarmed"])
    result["members"] = [
        {k: s[k] for k in ("endpoint", "member_id", "db_size", "db_size_in_use", "revision")}
        for s in after_status
    ]
    if module._diff:
        result["diff"] = {
            "before": before_text,
            "after": snapshot_state(after_status, after_alarms),
        }
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
