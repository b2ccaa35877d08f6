# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter that checks a site name."""

DOCUMENTATION = r"""
name: site_name_problems
version_added: 0.1.0
short_description: Whether a site name can be used as EdgeSite uses it
description:
  - EdgeSite uses C(edgesite_site) in file names, inventory group names and kubeconfig names, so
    it must be a DNS-1123 label (at most 63 characters, lowercase letters, digits and '-',
    starting and ending with a letter or digit).
  - The message shows the bad name and a valid one derived from it.
options:
  _input:
    description: The site name.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Refuse a site name that cannot name files and groups
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('\n') }}"
  vars:
    problems: "{{ edgesite_site | edgesite.fleet.site_name_problems }}"
"""

RETURN = r"""
_value:
  description: The problem as a one-item list, empty when the name is valid.
  type: list
  elements: str
"""

from ansible_collections.edgesite.fleet.plugins.module_utils.k3s_inputs import (  # noqa: E402
    site_name_problems,
)


def _site_name_problems(site):
    return site_name_problems(site)


class FilterModule:
    def filters(self):
        return {"site_name_problems": _site_name_problems}
