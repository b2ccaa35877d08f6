# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter that keeps the node labels the kubelet accepts at registration."""

DOCUMENTATION = r"""
name: kubelet_node_labels
version_added: 0.1.0
short_description: k3s node-label entries for the labels the kubelet may register with
description:
  - k3s passes node-label to the kubelet's --node-labels, and the kubelet refuses to start with
    keys in the kubernetes.io or k8s.io namespaces it may not set on itself (Kubernetes
    cmd/kubelet/app/options/options.go ValidateKubeletFlags, IsKubeletLabel). This filter keeps
    the others, as k3s's C(key=value) entries sorted by key; role labels
    (node-role.kubernetes.io) are set through the API after registration (filter
    node_metadata_patch).
options:
  _input:
    description: The labels, key to value.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Labels for k3s's config file
  ansible.builtin.set_fact:
    node_label: "{{ edgesite_node_labels | edgesite.fleet.kubelet_node_labels }}"  # [a=1, b=2]
"""

RETURN = r"""
_value:
  description: C(key=value) for each label the kubelet accepts, sorted by key.
  type: list
  elements: str
"""

from ansible_collections.edgesite.fleet.plugins.module_utils.node_metadata import (  # noqa: E402
    kubelet_node_labels,
)


class FilterModule:
    def filters(self):
        return {"kubelet_node_labels": kubelet_node_labels}
