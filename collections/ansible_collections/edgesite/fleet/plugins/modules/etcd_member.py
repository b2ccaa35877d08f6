#!/usr/bin/python
# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Ansible modules keep DOCUMENTATION/EXAMPLES/RETURN above the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: etcd_member
short_description: Add, remove or promote an etcd v3 cluster member, idempotently
version_added: 0.1.0
author: EdgeSite contributors (@edgesite)
description:
  - Manages cluster membership through etcd's v3 JSON gateway (HTTPS with a client certificate),
    so no etcdctl is needed where the module runs.
  - O(state=present) adds the member before its etcd process starts, which is the order etcd's
    runtime reconfiguration guide requires; the new process must then start with
    C(initial-cluster-state=existing) and the RV(initial_cluster) string this module returns.
  - O(state=absent) removes the member. Remove a member before its host is taken away, so the
    quorum size shrinks with it.
  - O(state=promoted) turns a learner into a voting member once it has caught up with the leader.
  - A member is identified by O(name) or by any of its O(peer_urls), because a member added through
    the API has no name until its process first starts.
options:
  name:
    description:
      - Member name (the etcd C(name) setting of that member).
      - Required for O(state=present) and O(state=promoted).
    type: str
  peer_urls:
    description:
      - Peer URLs of the member, for example C(https://10.0.0.14:2380).
      - Required for O(state=present). With O(state=present), an existing member of that name
        whose peer URLs differ is updated.
    type: list
    elements: str
    default: []
  learner:
    description:
      - Add the member as a non-voting learner (etcd 3.4+). A learner does not count towards the
        quorum until promoted with O(state=promoted), so adding it cannot cost availability.
      - Only used when the member is added.
    type: bool
    default: false
  state:
    description: Desired membership.
    type: str
    choices: [present, absent, promoted]
    default: present
  wait_timeout:
    description:
      - Seconds to keep retrying a membership change while etcd answers that it cannot take it
        yet, because a learner is not yet in sync with the leader, or because the leader has not
        yet seen every member connected for its health interval (5 s after a restart).
    type: int
    default: 60
  endpoints:
    description: Client URLs of current members, for example C(https://10.0.0.11:2379).
    type: list
    elements: str
    required: true
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
  - Add one member at a time and start it before adding the next. etcd (strict reconfiguration
    check, on by default) refuses to add a voting member while that would leave the cluster
    without quorum.
seealso:
  - name: etcd runtime reconfiguration
    description: Why a member is added before it starts.
    link: https://etcd.io/docs/v3.4/op-guide/runtime-configuration/
  - module: edgesite.fleet.etcd_info
"""

EXAMPLES = r"""
- name: Announce a new master to the cluster before starting its etcd
  edgesite.fleet.etcd_member:
    name: master-4
    peer_urls: ["https://10.0.0.14:2380"]
    endpoints: ["https://10.0.0.11:2379"]
    ca_cert: /etc/etcd/pki/ca.crt
    client_cert: /etc/etcd/pki/client.crt
    client_key: /etc/etcd/pki/client.key
  register: added
  # then render initial-cluster: "{{ added.initial_cluster }}", initial-cluster-state: existing

- name: Add as learner, start it, then promote
  edgesite.fleet.etcd_member:
    name: master-4
    peer_urls: ["https://10.0.0.14:2380"]
    learner: true
    endpoints: ["https://10.0.0.11:2379"]
    ca_cert: /etc/etcd/pki/ca.crt
    client_cert: /etc/etcd/pki/client.crt
    client_key: /etc/etcd/pki/client.key

- name: Promote the learner once its etcd runs
  edgesite.fleet.etcd_member:
    name: master-4
    state: promoted
    endpoints: ["https://10.0.0.11:2379"]
    ca_cert: /etc/etcd/pki/ca.crt
    client_cert: /etc/etcd/pki/client.crt
    client_key: /etc/etcd/pki/client.key

- name: Remove a master's member before the host goes away
  edgesite.fleet.etcd_member:
    name: master-2
    state: absent
    endpoints: ["https://10.0.0.11:2379"]
    ca_cert: /etc/etcd/pki/ca.crt
    client_cert: /etc/etcd/pki/client.crt
    client_key: /etc/etcd/pki/client.key
"""

RETURN = r"""
member:
  description: The member after the change (empty after removal or when it never existed).
  returned: always
  type: dict
  sample: {"id": "5b1c8e5f0b39a1d2", "name": "", "peer_urls": ["https://10.0.0.14:2380"],
           "client_urls": [], "is_learner": false, "started": false}
members:
  description: All members after the change (as they would be, in check mode).
  returned: always
  type: list
  elements: dict
initial_cluster:
  description:
    - The C(initial-cluster) value for a member joining with C(initial-cluster-state=existing),
      every member as C(name=peer_url), using O(name) for the managed member.
  returned: when state is present or promoted
  type: str
  sample: m1=https://10.0.0.11:2380,m2=https://10.0.0.12:2380,master-4=https://10.0.0.14:2380
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgesite.fleet.plugins.module_utils.etcd import (
    ETCD_CONNECTION_ARGS,
    EtcdClient,
    EtcdError,
    member_id_dec,
    normalize_member,
)


def find_member(
    members: list[dict[str, Any]], name: str | None, peer_urls: list[str]
) -> dict[str, Any] | None:
    for member in members:
        if name and member["name"] == name:
            return member
    wanted = set(peer_urls)
    for member in members:
        if wanted & set(member["peer_urls"]):
            return member
    return None


def describe(members: list[dict[str, Any]]) -> str:
    lines = []
    for m in sorted(members, key=lambda m: (m["name"], m["peer_urls"])):
        role = "learner" if m["is_learner"] else "voter"
        started = "" if m["started"] else " (not started)"
        lines.append(f"{m['name'] or '?'} {','.join(m['peer_urls'])} {role}{started}")
    return "\n".join(lines) + "\n"


def initial_cluster(members: list[dict[str, Any]], target: dict[str, Any], name: str) -> str:
    parts = []
    for m in members:
        member_name = name if m["id"] == target["id"] else m["name"]
        parts.extend(f"{member_name}={url}" for url in m["peer_urls"])
    return ",".join(parts)


def main() -> None:
    spec = dict(ETCD_CONNECTION_ARGS)
    spec.update(
        name={"type": "str"},
        peer_urls={"type": "list", "elements": "str", "default": []},
        learner={"type": "bool", "default": False},
        state={"type": "str", "choices": ["present", "absent", "promoted"], "default": "present"},
        wait_timeout={"type": "int", "default": 60},
    )
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
        required_if=[
            ("state", "present", ("name", "peer_urls")),
            ("state", "promoted", ("name",)),
            ("state", "absent", ("name", "peer_urls"), True),
        ],
    )
    p = module.params
    client = EtcdClient.from_module_params(p)
    state, name, peer_urls = p["state"], p["name"], p["peer_urls"]
    label = name or ",".join(peer_urls)

    try:
        before = client.member_list()
    except EtcdError as exc:
        module.fail_json(msg=f"Cannot list etcd members to manage member {label}: {exc}")
    current = find_member(before, name, peer_urls)
    after = [dict(m) for m in before]
    target: dict[str, Any] | None = current
    changed = False

    try:
        if state == "present" and current is None:
            changed = True
            target = {
                "id": "0" * 16,
                "name": "",
                "peer_urls": list(peer_urls),
                "client_urls": [],
                "is_learner": p["learner"],
                "started": False,
            }
            if not module.check_mode:
                data = reconfigure(
                    client,
                    "/v3/cluster/member/add",
                    {"peerURLs": peer_urls, "isLearner": p["learner"]},
                    p["wait_timeout"],
                )
                after = [normalize_member(m) for m in data.get("members", [])]
                target = normalize_member(data["member"])
            else:
                after.append(target)
        elif state == "present" and current is not None and peer_urls:
            if set(current["peer_urls"]) != set(peer_urls):
                changed = True
                if not module.check_mode:
                    reconfigure(
                        client,
                        "/v3/cluster/member/update",
                        {"ID": member_id_dec(current["id"]), "peerURLs": peer_urls},
                        p["wait_timeout"],
                    )
                target = dict(current, peer_urls=list(peer_urls))
                after = [target if m["id"] == current["id"] else m for m in after]
        elif state == "absent" and current is not None:
            if len(before) == 1:
                module.fail_json(
                    msg=f"Refusing to remove etcd member {label}: it is the only member, and "
                    "a cluster cannot remove its last member. Restore or re-create the cluster."
                )
            changed = True
            if not module.check_mode:
                reconfigure(
                    client,
                    "/v3/cluster/member/remove",
                    {"ID": member_id_dec(current["id"])},
                    p["wait_timeout"],
                )
            after = [m for m in after if m["id"] != current["id"]]
            target = None
        elif state == "promoted":
            if current is None:
                module.fail_json(
                    msg=f"Cannot promote etcd member {label}: it is not a member. Add it first "
                    "with state=present learner=true and start its etcd."
                )
            if current["is_learner"]:
                changed = True
                if not module.check_mode:
                    reconfigure(
                        client,
                        "/v3/cluster/member/promote",
                        {"ID": member_id_dec(current["id"])},
                        p["wait_timeout"],
                    )
                target = dict(current, is_learner=False)
                after = [target if m["id"] == current["id"] else m for m in after]
    except EtcdError as exc:
        module.fail_json(
            msg=f"etcd refused to make member {label} {state}: {exc.message}", endpoint=exc.endpoint
        )

    if state == "present" and current is not None and current["is_learner"] and not p["learner"]:
        module.warn(f"etcd member {label} is a learner; use state=promoted to make it vote.")

    result: dict[str, Any] = {"changed": changed, "member": target or {}, "members": after}
    if state != "absent" and target is not None:
        result["initial_cluster"] = initial_cluster(after, target, name)
    if module._diff:
        result["diff"] = {"before": describe(before), "after": describe(after)}
    module.exit_json(**result)


# Answers after which etcd will accept the same reconfiguration a little later: the leader must
# have seen every voting member connected for etcd's health interval (5 s) after any restart, and
# a learner must have caught up with the leader's log before promotion.
RETRYABLE = ("unhealthy cluster", "not in sync", "leader changed", "no leader")


def reconfigure(
    client: EtcdClient, path: str, body: dict[str, Any], wait_timeout: int
) -> dict[str, Any]:
    deadline = time.monotonic() + wait_timeout
    while True:
        try:
            return client.request_any(path, body)[1]
        except EtcdError as exc:
            if not any(m in exc.message for m in RETRYABLE) or time.monotonic() >= deadline:
                raise
        time.sleep(1)


if __name__ == "__main__":
    main()
