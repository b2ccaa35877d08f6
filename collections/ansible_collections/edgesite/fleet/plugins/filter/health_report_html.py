# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter that renders the fleet health report as one self-contained HTML page."""

DOCUMENTATION = r"""
name: health_report_html
version_added: 0.1.0
short_description: Render the EdgeSite fleet health report as a static HTML page
description:
  - Renders a report built by P(edgesite.fleet.health_report#filter) as one HTML page with
    inline CSS and no scripts or external assets, a table per site in the report's order
    (sites with problems first), rows with problems highlighted.
  - Every value is HTML-escaped.
options:
  _input:
    description: The report.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Write the HTML report
  ansible.builtin.copy:
    content: "{{ report | edgesite.fleet.health_report_html }}"
    dest: /srv/reports/health.html
    mode: "0644"
"""

RETURN = r"""
_value:
  description: The HTML page.
  type: str
"""

from ansible_collections.edgesite.fleet.plugins.module_utils.report import (  # noqa: E402
    render_html,
)


def _health_report_html(report):
    return render_html(dict(report))


class FilterModule:
    def filters(self):
        return {"health_report_html": _health_report_html}
