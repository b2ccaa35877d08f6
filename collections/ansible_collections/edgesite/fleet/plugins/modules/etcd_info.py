#!/usr/bin/python
# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Ansible modules keep DOCUMENTATION/EXAMPLES/RETURN above the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: etcd_info
short_description: Health, leader, members, alarms, db size and revision of an etcd v3 cluster
version_added: 0.1.0
author: EdgeSite contributors (@edgesite)
description:
  - Reads the state of an etcd v3 cluster through etcd's v3 JSON gateway (HTTPS with a client
    certificate). No etcdctl is needed on the host that runs the module.
  - Asks every endpoint for its C(/health) and C(/v3/maintenance/status), and the cluster for its
    member list and alarms.
  - Never changes anything.
  - Requires etcd 3.4 or later (the C(/v3/) gateway prefix).
  - Why the gateway and not C(etcdctl) (all edgesite.fleet etcd_* modules) - the modules then run
    on any host with python3 (controller, master, witness) with the standard library only, need no
    etcdctl of a matching version, and work the same against k3s's embedded etcd, which ships no
    etcdctl but serves the same gateway on its client port. Answers are structured JSON rather
    than parsed command output. Only the offline snapshot restore uses a binary (etcdutl/etcdctl),
    because etcd has no API for rewriting a stopped member's data directory.
options:
  endpoints:
    description:
      - Client URLs of the members to query, for example C(https://10.0.0.11:2379).
      - Per-endpoint figures are reported for each of these; cluster-wide calls use the first
        endpoint that answers.
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
    support: none
    description: Not supported.
notes:
  - RV(healthy) in the result is true only when every endpoint is healthy, all agree on one
    leader, and no alarm is raised. Use it as a gate with C(until:) between rolling restarts.
seealso:
  - module: edgesite.fleet.etcd_member
  - module: edgesite.fleet.etcd_maintenance
"""

EXAMPLES = r"""
- name: Read cluster state
  edgesite.fleet.etcd_info:
    endpoints:
      - https://10.0.0.11:2379
      - https://10.0.0.12:2379
      - https://10.0.0.13:2379
    ca_cert: /etc/etcd/pki/ca.crt
    client_cert: /etc/etcd/pki/client.crt
    client_key: /etc/etcd/pki/client.key
  register: etcd

- name: Wait until the cluster is healthy again
  edgesite.fleet.etcd_info:
    endpoints: "{{ etcd_client_endpoints }}"
    ca_cert: /etc/etcd/pki/ca.crt
    client_cert: /etc/etcd/pki/client.crt
    client_key: /etc/etcd/pki/client.key
  register: etcd
  until: etcd.healthy
  retries: 30
  delay: 2
"""

RETURN = r"""
healthy:
  description: Every endpoint healthy, one agreed leader, no alarms.
  returned: always
  type: bool
cluster_id:
  description: Cluster ID (hex) as reported by the first reachable endpoint.
  returned: always
  type: str
leader:
  description: The leader, or empty when none is known.
  returned: always
  type: dict
  sample: {"id": "8e9e05c52164694d", "name": "m1"}
members:
  description: Cluster members. C(started) is false for a member added but never started.
  returned: always
  type: list
  elements: dict
  sample:
    - {"id": "8e9e05c52164694d", "name": "m1", "peer_urls": ["https://10.0.0.11:2380"],
       "client_urls": ["https://10.0.0.11:2379"], "is_learner": false, "started": true}
endpoints:
  description: Per endpoint reachability, health and status figures.
  returned: always
  type: list
  elements: dict
  sample:
    - {"endpoint": "https://10.0.0.11:2379", "reachable": true, "healthy": true,
       "health_error": "", "member_id": "8e9e05c52164694d", "name": "m1", "is_leader": true,
       "version": "3.4.23", "db_size": 20480, "db_size_in_use": 16384, "revision": 7,
       "raft_term": 2, "raft_index": 9, "raft_applied_index": 9, "is_learner": false,
       "errors": []}
alarms:
  description: Raised alarms (NOSPACE, CORRUPT) with the member they belong to.
  returned: always
  type: list
  elements: dict
  sample: [{"member_id": "8e9e05c52164694d", "name": "m1", "alarm": "NOSPACE"}]
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgesite.fleet.plugins.module_utils.etcd import (
    ETCD_CONNECTION_ARGS,
    EtcdClient,
    EtcdError,
)


def gather(client: EtcdClient) -> dict[str, Any]:
    endpoints: list[dict[str, Any]] = []
    for endpoint in client.endpoints:
        healthy, reason = client.health(endpoint)
        entry: dict[str, Any] = {"endpoint": endpoint, "healthy": healthy, "health_error": reason}
        try:
            entry.update(client.status(endpoint))
            entry["reachable"] = True
        except EtcdError as exc:
            entry.update({"reachable": False, "status_error": exc.message})
        endpoints.append(entry)

    try:
        members = client.member_list()
        alarms = client.alarms()
    except EtcdError as exc:
        return {"error": str(exc), "endpoints": endpoints}

    names = {m["id"]: m["name"] for m in members}
    leaders = {e["leader_id"] for e in endpoints if e.get("reachable")} - {"0" * 16}
    leader_id = next(iter(leaders)) if len(leaders) == 1 else ""
    for entry in endpoints:
        if entry.get("reachable"):
            entry["name"] = names.get(entry["member_id"], "")
            entry["is_leader"] = entry["member_id"] == entry["leader_id"]
    for alarm in alarms:
        alarm["name"] = names.get(alarm["member_id"], "")
    cluster_ids = [e["cluster_id"] for e in endpoints if e.get("reachable")]
    return {
        "healthy": bool(endpoints)
        and all(e["healthy"] for e in endpoints)
        and bool(leader_id)
        and not alarms,
        "cluster_id": cluster_ids[0] if cluster_ids else "",
        "leader": {"id": leader_id, "name": names.get(leader_id, "")} if leader_id else {},
        "members": members,
        "endpoints": endpoints,
        "alarms": alarms,
    }


def main() -> None:
    module = AnsibleModule(argument_spec=dict(ETCD_CONNECTION_ARGS), supports_check_mode=True)
    client = EtcdClient.from_module_params(module.params)
    result = gather(client)
    if "error" in result:
        module.fail_json(
            msg=f"Cannot read the etcd cluster at {', '.join(client.endpoints)}: {result['error']}",
            endpoints=result["endpoints"],
        )
    if len({e["cluster_id"] for e in result["endpoints"] if e.get("reachable")}) > 1:
        module.warn("The endpoints belong to different etcd clusters (cluster IDs differ).")
    for entry in result["endpoints"]:
        if not entry["healthy"]:
            module.warn(
                f"etcd endpoint {entry['endpoint']} is not healthy: {entry['health_error']}"
            )
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
