# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter that decides cluster-init or the join URL of a master on embedded etcd."""

DOCUMENTATION = r"""
name: embedded_join
version_added: 0.1.0
short_description: cluster-init or the server to join, for a master of an embedded-etcd site
description:
  - k3s starts a member that has etcd data as it is, joins an empty one to the server it is
    given, and starts a NEW cluster for an empty one without a server (k3s pkg/etcd/etcd.go,
    ETCD.Start). This filter gives C(cluster-init) only when no master of the site holds etcd
    data; an empty master (new, or rebuilt after its disk was lost, the first one included)
    joins the first master that holds data.
  - A master that holds data keeps the server URL its config already has, so a re-run does
    not restart it.
options:
  _input:
    description:
      - The site's masters in inventory order, each a dict with C(host), C(address),
        C(has_etcd) (its etcd WAL directory exists) and C(server) (the server URL in its
        current k3s config, or empty).
    type: list
    elements: dict
    required: true
  host:
    description: The master to decide for.
    type: str
    required: true
  port:
    description: The API port the URL names.
    type: int
    required: true
"""

EXAMPLES = r"""
- name: Decide how this master joins
  ansible.builtin.set_fact:
    join: "{{ masters | edgesite.fleet.embedded_join(inventory_hostname, 6443) }}"
"""

RETURN = r"""
_value:
  description: C(cluster_init) (bool) and C(server) (the URL to join, empty with cluster_init).
  type: dict
"""

from ansible_collections.edgesite.fleet.plugins.module_utils.embedded_join import (  # noqa: E402
    embedded_join,
)


class FilterModule:
    def filters(self):
        return {"embedded_join": embedded_join}
