# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter that checks node labels by Kubernetes' and the kubelet's rules."""

DOCUMENTATION = r"""
name: node_label_problems
version_added: 0.1.0
short_description: Node labels Kubernetes or the kubelet would refuse
description:
  - Checks node labels (k3s node-label, passed to the kubelet's --node-labels) the way the
    kubelet validates them at start (Kubernetes cmd/kubelet/app/options/options.go
    ValidateKubeletFlags).
  - Keys must be qualified names (optional DNS subdomain prefix of at most 253 characters and
    '/', then a name of at most 63), values empty or at most 63 characters of the same set.
  - Keys in the kubernetes.io or k8s.io namespaces are refused unless the kubelet may set them on
    itself (staging/src/k8s.io/kubelet/pkg/apis/well_known_labels.go IsKubeletLabel).
    node-role.kubernetes.io labels are accepted; EdgeSite keeps them out of the kubelet's
    flags and sets them on the Node through the API (filters kubelet_node_labels and
    node_metadata_patch).
options:
  _input:
    description: The labels, key to value.
    type: dict
    required: true
  host:
    description: Inventory host the labels belong to (named in every message).
    type: str
    required: true
  variable:
    description: Name of the variable the labels came from.
    type: str
    default: edgesite_node_labels
  site:
    description: Site of the host; when given, messages start with it.
    type: str
"""

EXAMPLES = r"""
- name: Refuse labels the kubelet would not start with
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('\n') }}"
  vars:
    problems: "{{ edgesite_node_labels | edgesite.fleet.node_label_problems(inventory_hostname) }}"
"""

RETURN = r"""
_value:
  description: One sentence per problem, empty when every label is valid.
  type: list
  elements: str
"""

from ansible_collections.edgesite.fleet.plugins.module_utils.k3s_inputs import (  # noqa: E402
    node_label_problems,
)


def _node_label_problems(labels, host, variable="edgesite_node_labels", site=None):
    return node_label_problems(labels, str(host), str(variable), site)


class FilterModule:
    def filters(self):
        return {"node_label_problems": _node_label_problems}
