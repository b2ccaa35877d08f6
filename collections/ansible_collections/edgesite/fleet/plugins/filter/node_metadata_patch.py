# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter that computes the patch keeping a Node's labels and taints as the inventory says."""

DOCUMENTATION = r"""
name: node_metadata_patch
version_added: 0.1.0
short_description: JSON merge patch that gives a Node the inventory's labels and taints
description:
  - k3s applies node-taint only when the Node registers, and adds or overwrites node-label
    values on each start but never removes one (k3s pkg/agent/run.go configureNode). This
    filter computes, from the Node as the API returns it, the JSON merge patch that sets the
    wanted labels and taints, removes the ones EdgeSite set earlier and the inventory no longer
    has, and leaves alone what others set (k3s, the node controller, a cordon, an operator).
  - What EdgeSite set is recorded in the annotations C(edgesite.io/managed-labels) and
    C(edgesite.io/managed-taints).
  - The patch carries the Node's resourceVersion, so the API server refuses it if the Node
    changed after it was read. It is empty when nothing needs to change.
options:
  _input:
    description: The Node object (kubectl get node NAME -o json).
    type: dict
    required: true
  labels:
    description: Wanted labels, key to value.
    type: dict
    required: true
  taints:
    description: Wanted taints, each C(key[=value]:Effect).
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Patch the node when its labels or taints differ
  ansible.builtin.command:
    argv: [k3s, kubectl, patch, node, cam-1, --type, merge, -p, "{{ patch | to_json }}"]
  vars:
    patch: >-
      {{ node | edgesite.fleet.node_metadata_patch(edgesite_node_labels, edgesite_node_taints) }}
  when: patch | length > 0
  changed_when: true
"""

RETURN = r"""
_value:
  description: The JSON merge patch, empty when the Node already carries what is wanted.
  type: dict
"""

from ansible_collections.edgesite.fleet.plugins.module_utils.node_metadata import (  # noqa: E402
    node_metadata_patch,
)


class FilterModule:
    def filters(self):
        return {"node_metadata_patch": node_metadata_patch}
