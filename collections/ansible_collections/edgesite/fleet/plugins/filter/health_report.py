# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter that turns site_info results into the fleet health report (problems first)."""

DOCUMENTATION = r"""
name: health_report
version_added: 0.1.0
short_description: Build the EdgeSite fleet health report from site_info results
description:
  - Takes the C(site) records returned by M(edgesite.fleet.site_info), one per site.
  - Sorts sites with problems before healthy ones (most problems first, then by name) and, in
    each site, rows with problems first, masters before workers.
  - Adds a summary (sites, sites with problems, nodes, nodes with problems).
options:
  _input:
    description: The C(site) records of M(edgesite.fleet.site_info).
    type: list
    elements: dict
    required: true
  generated_at:
    description: Timestamp written into the report.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Build the report
  ansible.builtin.set_fact:
    report: "{{ site_records | edgesite.fleet.health_report(now(utc=true).isoformat()) }}"
"""

RETURN = r"""
_value:
  description: The report (report_version, generated_at, summary, sites).
  type: dict
"""

from ansible_collections.edgesite.fleet.plugins.module_utils.report import (  # noqa: E402
    build_report,
)


def _health_report(sites, generated_at):
    return build_report([dict(s) for s in sites], str(generated_at))


class FilterModule:
    def filters(self):
        return {"health_report": _health_report}
