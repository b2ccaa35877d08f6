# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter that checks a k3s extra config against k3s's own flag table."""

DOCUMENTATION = r"""
name: k3s_extra_config_problems
version_added: 0.1.0
short_description: What k3s would refuse or ignore in a k3s extra config
description:
  - Checks a mapping merged into /etc/rancher/k3s/config.yaml (k3s_server_extra_config,
    k3s_agent_extra_config) against the flag table of the pinned k3s release, generated from
    k3s's source (module_utils/k3s_flags.py, tools/k3s_flags.py).
  - "An unknown key is reported with what k3s would do: a server skips it with only a warning
    (the setting silently does nothing), an agent exits with C(flag provided but not defined).
    The message names the nearest valid flag."
  - Values are type-checked (bool flags take booleans, int flags whole numbers, duration flags
    Go durations, list flags a list or a string, other flags one scalar).
  - Keys EdgeSite writes itself (node-name, node-ip, token-file, server, data-dir, cluster-init,
    datastore-*, node-label, node-taint ...) are refused with the EdgeSite variable to set instead.
  - Messages never show the value of a string or list flag (it may be a secret).
options:
  _input:
    description: The extra config mapping (flag name without dashes to value).
    type: dict
    required: true
  role:
    description: The k3s command the config is for.
    type: str
    choices: [server, agent]
    required: true
  host:
    description: Inventory host the config belongs to (named in every message).
    type: str
    required: true
  variable:
    description: Name of the variable the config came from (named in every message).
    type: str
    required: true
  site:
    description: Site of the host; when given, messages start with it.
    type: str
"""

EXAMPLES = r"""
- name: Refuse an agent extra config k3s agent would not start with
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('\n') }}"
  vars:
    problems: >-
      {{ k3s_agent_extra_config | edgesite.fleet.k3s_extra_config_problems(
           'agent', inventory_hostname, 'k3s_agent_extra_config') }}
"""

RETURN = r"""
_value:
  description: One sentence per problem, empty when k3s would take the config as it is.
  type: list
  elements: str
"""

from ansible_collections.edgesite.fleet.plugins.module_utils.k3s_inputs import (  # noqa: E402
    extra_config_problems,
)


def _k3s_extra_config_problems(config, role, host, variable, site=None):
    return extra_config_problems(config, role, str(host), str(variable), site)


class FilterModule:
    def filters(self):
        return {"k3s_extra_config_problems": _k3s_extra_config_problems}
