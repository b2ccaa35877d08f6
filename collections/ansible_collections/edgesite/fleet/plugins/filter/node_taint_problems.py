# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter that checks node taints by Kubernetes' rules."""

DOCUMENTATION = r"""
name: node_taint_problems
version_added: 0.1.0
short_description: Node taints the kubelet or the API server would refuse
description:
  - Checks taints of the form C(key[=value]:Effect) (k3s node-taint, registered by the kubelet)
    as Kubernetes parses and validates them (pkg/util/taints/taints.go parseTaint,
    pkg/apis/core/validation validateNodeTaints).
  - The key must be a qualified name, the value a label value, the effect one of NoSchedule,
    PreferNoSchedule, NoExecute; no two taints may share key and effect. Entries are split at
    commas, as k3s's string-slice flag does.
options:
  _input:
    description: The taints.
    type: list
    elements: str
    required: true
  host:
    description: Inventory host the taints belong to (named in every message).
    type: str
    required: true
  variable:
    description: Name of the variable the taints came from.
    type: str
    default: edgesite_node_taints
  site:
    description: Site of the host; when given, messages start with it.
    type: str
"""

EXAMPLES = r"""
- name: Refuse taints Kubernetes would not register
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('\n') }}"
  vars:
    problems: "{{ edgesite_node_taints | edgesite.fleet.node_taint_problems(inventory_hostname) }}"
"""

RETURN = r"""
_value:
  description: One sentence per problem, empty when every taint is valid.
  type: list
  elements: str
"""

from ansible_collections.edgesite.fleet.plugins.module_utils.k3s_inputs import (  # noqa: E402
    node_taint_problems,
)


def _node_taint_problems(taints, host, variable="edgesite_node_taints", site=None):
    return node_taint_problems(taints, str(host), str(variable), site)


class FilterModule:
    def filters(self):
        return {"node_taint_problems": _node_taint_problems}
