#!/usr/bin/python

# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# Ansible modules keep DOCUMENTATION/EXAMPLES/RETURN above the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: site_info
short_description: Health of one EdgeSite site (nodes, datastore, k3s and agent versions)
version_added: 0.1.0
author:
  - EdgeSite contributors (@edgesite)
description:
  - Reads the health of one EdgeSite site from the controller and returns one record that
    C(playbooks/health.yml) turns into the fleet report.
  - Nodes, their C(Ready) condition, pressure conditions, cordons and the k3s version of each
    node (C(status.nodeInfo.kubeletVersion)) come from the site's Kubernetes API, read with the
    site's admin kubeconfig over HTTPS with full TLS verification.
  - For O(datastore=external) the etcd cluster is read with the same client as
    M(edgesite.fleet.etcd_info) (members, leader, db size, alarms) when O(etcd) gives
    endpoints and client certificates the controller holds; alternatively pass the result of
    M(edgesite.fleet.etcd_info) run on a master as O(etcd_result).
  - For O(datastore=embedded), k3s's own etcd is read the same way (O(etcd) or O(etcd_result),
    with the k3s server's etcd client certificate); members are named by their node (k3s names
    them C(<node>-<8 hex>)). Without either, or when that read failed, the module reports what
    the Kubernetes API exposes (members from the C(node-role.kubernetes.io/etcd) label, the API
    server's C(etcd) readiness check, the storage size metric) and says why the leader and
    alarms are missing.
  - For O(datastore=sqlite) the module reports what the Kubernetes API exposes (the API
    server's C(etcd) readiness check, which k3s runs against kine, and the storage size).
  - Agent versions, C(/readyz) and seconds since the agent last reached the API come from the
    workers themselves (gathered by the playbook) through O(agents).
  - Never changes anything.
options:
  site:
    description: Name of the site (its C(edgesite_site)).
    type: str
    required: true
  kubeconfig:
    description:
      - Path on the controller of the site's admin kubeconfig (C(k3s_server) stores it as
        C(~/.kube/edgesite/<site>.yaml)).
      - A missing file is reported as a site problem, not a module failure, so one site without
        a kubeconfig does not hide the others in the report.
    type: path
    required: true
  context:
    description: Kubeconfig context to use instead of its current-context.
    type: str
  datastore:
    description: The site's C(edgesite_datastore).
    type: str
    choices: [embedded, external, sqlite]
    default: embedded
  inventory_nodes:
    description:
      - The site's hosts as the inventory knows them, so nodes missing from the API are
        reported. Keys C(host), C(node_name), C(is_master), C(is_worker) (the preflight record).
    type: list
    elements: dict
    default: []
  k3s_version:
    description: The k3s release the site pins; nodes running another one are reported.
    type: str
    default: ""
  agents:
    description:
      - One record per worker, gathered on the worker from the agent's loopback port.
      - Keys C(host), C(node), and either C(unreachable=true) with C(error), or
        C(readyz_status) (HTTP status, V(-1) when nothing answered), C(metrics) (the text of
        C(/metrics)) and C(version) (output of C(edgesite-agent --version)).
    type: list
    elements: dict
    default: []
  agent_stale_seconds:
    description: An agent that last reached the API longer ago than this is reported.
    type: float
    default: 120
  etcd:
    description: Read the etcd (external, or k3s's embedded one) directly from the controller.
    type: dict
    suboptions:
      endpoints:
        description: Client URLs of the members, for example C(https://10.0.0.11:2379).
        type: list
        elements: str
        required: true
      ca_cert:
        description: CA bundle that signed the etcd server certificates.
        type: path
      client_cert:
        description: Client certificate (PEM) presented to etcd.
        type: path
      client_key:
        description: Key (PEM) of O(etcd.client_cert).
        type: path
      timeout:
        description: Seconds to wait for each etcd request.
        type: float
        default: 10.0
  etcd_result:
    description:
      - The registered result of M(edgesite.fleet.etcd_info) run elsewhere (on a master that
        holds the etcd client certificate). Used when O(etcd) is not given.
      - For O(datastore=embedded), a failed result falls back to the Kubernetes API's view.
    type: dict
  timeout:
    description: Seconds to wait for each Kubernetes API request.
    type: float
    default: 10.0
attributes:
  check_mode:
    description: Reads only; runs the same in check mode.
    support: full
  diff_mode:
    description: Changes nothing, so there is no diff to show.
    support: none
notes:
  - "Runs on the controller (C(delegate_to: localhost)), once per site."
  - Uses the Python standard library for HTTPS, not the C(kubernetes) client, so it needs no
    extra Python package on the controller or in an execution environment.
seealso:
  - module: edgesite.fleet.etcd_info
"""

EXAMPLES = r"""
- name: Health of the site of this master
  edgesite.fleet.site_info:
    site: store-0042
    kubeconfig: ~/.kube/edgesite/store-0042.yaml
    datastore: embedded
    k3s_version: v1.36.4+k3s1
  delegate_to: localhost
  register: site_health

- name: External etcd read from the controller with a client certificate
  edgesite.fleet.site_info:
    site: store-0042
    kubeconfig: ~/.kube/edgesite/store-0042.yaml
    datastore: external
    etcd:
      endpoints: [https://10.0.0.11:2379, https://10.0.0.12:2379, https://10.0.0.13:2379]
      ca_cert: ~/.edgesite/etcd/store-0042/ca.crt
      client_cert: ~/.edgesite/etcd/store-0042/client.crt
      client_key: ~/.edgesite/etcd/store-0042/client.key
  delegate_to: localhost
  register: site_health
"""

RETURN = r"""
site:
  description: The site's health record (what the fleet report is built from).
  returned: always
  type: dict
  contains:
    site:
      description: The site name.
      type: str
      sample: store-0042
    healthy:
      description: No site problem and no node with a problem.
      type: bool
      sample: false
    problems:
      description: Site-level problems (API, datastore), one sentence each.
      type: list
      elements: str
      sample: ["Kubernetes API not reachable: cannot reach the API at https://10.0.0.11:6443"]
    problem_count:
      description: Site and node problems together.
      type: int
      sample: 3
    api:
      description: API server URL, reachability, version and error.
      type: dict
      sample: {"url": "https://10.0.0.11:6443", "reachable": true,
               "version": "v1.36.4+k3s1", "error": ""}
    datastore:
      description: >-
        Datastore kind, source, health, members, leader, db size (bytes), alarms, problems.
      type: dict
      sample: {"kind": "external", "source": "etcd", "healthy": true, "leader": "m1",
               "members": [{"name": "m1", "healthy": true, "is_leader": true, "db_size": 20480}],
               "alarms": [], "db_size": 20480, "problems": []}
    nodes:
      description: One row per node (inventory and API merged, agent figures for workers).
      type: list
      elements: dict
      sample:
        - {"host": "store-0042-w1", "node": "store-0042-w1", "role": "worker", "ready": true,
           "roles": ["worker"], "k3s_version": "v1.36.4+k3s1", "agent_version": "0.1.0",
           "agent_ready": true, "seconds_since_api_contact": 1.2, "problems": []}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgesite.fleet.plugins.module_utils.etcd import EtcdClient
from ansible_collections.edgesite.fleet.plugins.module_utils.site_info import (
    build_site,
    datastore_for,
    gather_api,
)
from ansible_collections.edgesite.fleet.plugins.module_utils.site_info_kube import (
    HAS_YAML,
    KubeClient,
    KubeError,
)


def argument_spec():
    etcd_options = dict(
        endpoints=dict(type="list", elements="str", required=True),
        ca_cert=dict(type="path"),
        client_cert=dict(type="path"),
        client_key=dict(type="path", no_log=False),
        timeout=dict(type="float", default=10.0),
    )
    return dict(
        site=dict(type="str", required=True),
        kubeconfig=dict(type="path", required=True),
        context=dict(type="str"),
        datastore=dict(type="str", choices=["embedded", "external", "sqlite"], default="embedded"),
        inventory_nodes=dict(type="list", elements="dict", default=[]),
        k3s_version=dict(type="str", default=""),
        agents=dict(type="list", elements="dict", default=[]),
        agent_stale_seconds=dict(type="float", default=120),
        etcd=dict(type="dict", options=etcd_options),
        etcd_result=dict(type="dict"),
        timeout=dict(type="float", default=10.0),
    )


def execute_module(module):
    params = module.params
    try:
        client = KubeClient(params["kubeconfig"], params["context"], params["timeout"])
        api = gather_api(client)
    except KubeError as exc:
        # One site's missing or broken credentials must not stop the fleet report.
        api = {"url": "", "reachable": False, "error": str(exc)}
    etcd_client = None
    if params["datastore"] in ("external", "embedded") and params["etcd"]:
        etcd_client = EtcdClient.from_module_params(params["etcd"])
    datastore = datastore_for(params["datastore"], api, etcd_client, params["etcd_result"])
    site = build_site(
        params["site"],
        params["inventory_nodes"],
        api,
        datastore,
        params["agents"],
        params["k3s_version"],
        params["agent_stale_seconds"],
    )
    module.exit_json(changed=False, site=site)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_YAML:
        module.fail_json(msg="PyYAML is required to read kubeconfig files")
    execute_module(module)


if __name__ == "__main__":
    main()
