# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet health report: site results of edgesite.fleet.site_info, problems first, as a
JSON-ready dict and as one self-contained HTML page (inline CSS, no scripts, no external
assets, so it opens from a file share or an AWX artifact as it is).

Every value from the sites (node names, error messages from remote servers) is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

REPORT_VERSION = 1


def _row_key(row: dict[str, Any]) -> tuple[int, int, str]:
    role_order = {"master": 0, "worker": 1}.get(row.get("role", ""), 2)
    return (0 if row.get("problems") else 1, role_order, row.get("node", ""))


def site_has_problems(site: dict[str, Any]) -> bool:
    return bool(site.get("problems")) or any(r.get("problems") for r in site.get("nodes") or [])


def _site_key(site: dict[str, Any]) -> tuple[int, int, str]:
    # Sites with problems first, the most troubled first among them, then by name.
    problems = site_has_problems(site)
    return (0 if problems else 1, -int(site.get("problem_count") or 0), str(site.get("site")))


def build_report(sites: list[dict[str, Any]], generated_at: str) -> dict[str, Any]:
    """Sort sites (problems first) and rows (problem rows first, masters before workers)."""
    ordered = []
    for site in sorted(sites, key=_site_key):
        site = dict(site)
        site["nodes"] = sorted(site.get("nodes") or [], key=_row_key)
        site["healthy"] = not site_has_problems(site)
        ordered.append(site)
    nodes = [r for s in ordered for r in s["nodes"]]
    return {
        "report_version": REPORT_VERSION,
        "generated_at": generated_at,
        "summary": {
            "sites": len(ordered),
            "sites_with_problems": sum(1 for s in ordered if not s["healthy"]),
            "nodes": len(nodes),
            "nodes_with_problems": sum(1 for r in nodes if r.get("problems")),
        },
        "sites": ordered,
    }


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem;color:#1d2330;
background:#f6f7f9}
h1{font-size:1.5rem;margin:0 0 .3rem}
.summary{margin:0 0 1.2rem;color:#444}
section.site{background:#fff;border:1px solid #d5d9e0;border-left:8px solid #2e8540;
border-radius:4px;margin:0 0 1.2rem;padding:.8rem 1rem}
section.site.bad{border-left-color:#c62828}
h2{font-size:1.2rem;margin:0 0 .4rem}
.badge{display:inline-block;font-size:.8rem;padding:.1rem .5rem;border-radius:3px;color:#fff;
margin-left:.5rem;vertical-align:middle}
.badge.ok{background:#2e8540}.badge.bad{background:#c62828}
ul.site-problems{margin:.3rem 0 .6rem;color:#8e1b1b}
.ds{margin:.2rem 0 .6rem;font-size:.92rem;color:#333}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e3e6eb;vertical-align:top}
th{background:#eef0f4}
tr.problem td{background:#fde2e2}
td.problems{color:#8e1b1b}
"""


def _cell(value: Any, unknown: str = "?") -> str:
    if value is None or value == "":
        return escape(unknown)
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return escape(str(value))


def _size(n: Any) -> str:
    if n is None:
        return "?"
    return f"{int(n) / 1048576:.1f} MiB"


def _datastore_line(ds: dict[str, Any]) -> str:
    members = ds.get("members") or []
    names = ", ".join(
        m.get("name", "") + (" (leader)" if m.get("is_leader") else "")
        + ("" if m.get("healthy") in (None, True) else " (unhealthy)")
        for m in members
    )  # fmt: skip
    alarms = ds.get("alarms")
    alarm_text = alarms if isinstance(alarms, str) else (", ".join(alarms) or "none")
    return (
        f'<p class="ds"><b>Datastore</b> {_cell(ds.get("kind"))}'
        f" &middot; healthy: {_cell(ds.get('healthy'))}"
        f" &middot; members: {_cell(names or None, 'none known')}"
        f" &middot; leader: {_cell(ds.get('leader'), 'none')}"
        f" &middot; db size: {_size(ds.get('db_size'))}"
        f" &middot; alarms: {_cell(alarm_text)}</p>"
    )


def _site_html(site: dict[str, Any]) -> str:
    bad = not site.get("healthy")
    name = escape(str(site.get("site")))
    api = site.get("api") or {}
    out = [
        f'<section class="site {"bad" if bad else "ok"}" id="site-{name}" data-site="{name}">',
        f'<h2>{name}<span class="badge {"bad" if bad else "ok"}">'
        f"{'PROBLEMS' if bad else 'healthy'}</span></h2>",
        f'<p class="ds"><b>API</b> {_cell(api.get("url"))} &middot; reachable: '
        f"{_cell(api.get('reachable'))} &middot; version: {_cell(api.get('version'))}</p>",
        _datastore_line(site.get("datastore") or {}),
    ]
    if site.get("problems"):
        out.append('<ul class="site-problems">')
        out.extend(f"<li>{escape(p)}</li>" for p in site["problems"])
        out.append("</ul>")
    out.append(
        "<table><thead><tr><th>Node</th><th>Host</th><th>Role</th><th>Ready</th>"
        "<th>k3s</th><th>Agent</th><th>Agent ready</th><th>s since API contact</th>"
        "<th>Problems</th></tr></thead><tbody>"
    )
    for row in site.get("nodes") or []:
        problems = row.get("problems") or []
        # Agent columns are empty for masters, "?" for a worker whose agent said nothing.
        no_agent = "?" if row.get("role") == "worker" else ""
        css = "problem" if problems else "ok"
        out.append(
            f'<tr class="{css}" data-node="{escape(row.get("node", ""))}">'
            f"<td>{_cell(row.get('node'))}</td><td>{_cell(row.get('host'), '')}</td>"
            f"<td>{_cell(row.get('role'))}</td><td>{_cell(row.get('ready'))}</td>"
            f"<td>{_cell(row.get('k3s_version'))}</td>"
            f"<td>{_cell(row.get('agent_version'), no_agent)}</td>"
            f"<td>{_cell(row.get('agent_ready'), no_agent)}</td>"
            f"<td>{_cell(row.get('seconds_since_api_contact'), no_agent)}</td>"
            f'<td class="problems">{"<br>".join(escape(p) for p in problems)}</td></tr>'
        )
    out.append("</tbody></table></section>")
    return "\n".join(out)


def render_html(report: dict[str, Any]) -> str:
    summary = report.get("summary") or {}
    title = "EdgeSite fleet health"
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_CSS}</style></head><body>"
        f'<h1>{title}</h1><p class="summary">Generated {_cell(report.get("generated_at"))}'
        f" &middot; {int(summary.get('sites_with_problems', 0))} of {int(summary.get('sites', 0))}"
        f" sites with problems &middot; {int(summary.get('nodes_with_problems', 0))} of "
        f"{int(summary.get('nodes', 0))} nodes with problems</p>"
    )
    body = "\n".join(_site_html(s) for s in report.get("sites") or [])
    return f"{head}\n{body}\n</body></html>\n"
