# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter that validates the fleet inventory with the shared site model."""

DOCUMENTATION = r"""
name: site_problems
version_added: 0.1.0
short_description: List what is wrong with the EdgeSite inventory, per site
description:
  - Checks every site of the inventory (required groups, master count, roles, unique node names
    and addresses, site-wide settings agreeing between hosts, datastore rules, witness rules).
  - Returns a list of messages; each names the site, the host or variable at fault, and the fix.
options:
  _input:
    description: One record per host (host, site, is_master, is_worker, node_name, node_ip,
      datastore, k3s_version, etcd_witness, etcd_two_member_risk_acknowledged, site_vip).
    type: list
    elements: dict
    required: true
  groups:
    description: The inventory's group names.
    type: list
    elements: str
    required: true
  masters_group:
    description: Name of the masters group.
    type: str
    default: edgesite_masters
  workers_group:
    description: Name of the workers group.
    type: str
    default: edgesite_workers
  inventory_masters:
    description:
      - "[master, site] pairs for every master of the whole inventory. A site whose masters are
        only partly in the run is reported instead of being checked."
    type: list
    elements: list
  failed_hosts:
    description:
      - "[host, site] pairs of hosts of the run that already failed their own checks; their whole
        site is reported."
    type: list
    elements: list
"""

EXAMPLES = r"""
- name: Fail on an invalid inventory
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('\n') }}"
  vars:
    problems: "{{ records | edgesite.fleet.site_problems(groups.keys() | list) }}"
"""

RETURN = r"""
_value:
  description: Problems found, empty when the inventory is valid.
  type: list
  elements: str
"""

from ansible_collections.edgesite.fleet.plugins.module_utils.site_model import (  # noqa: E402
    site_problems,
    site_problems_by_site,
)


def _site_problems(
    records,
    groups,
    masters_group="edgesite_masters",
    workers_group="edgesite_workers",
    inventory_masters=None,
    failed_hosts=None,
):
    return site_problems(
        list(records), list(groups), masters_group, workers_group, inventory_masters, failed_hosts
    )


def _site_problems_by_site(
    records,
    groups,
    masters_group="edgesite_masters",
    workers_group="edgesite_workers",
    inventory_masters=None,
    failed_hosts=None,
):
    return site_problems_by_site(
        list(records), list(groups), masters_group, workers_group, inventory_masters, failed_hosts
    )


class FilterModule:
    def filters(self):
        return {
            "site_problems": _site_problems,
            "site_problems_by_site": _site_problems_by_site,
        }
