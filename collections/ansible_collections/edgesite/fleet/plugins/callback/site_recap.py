# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback that ends every run with one line per site: converged, or failed and why."""

DOCUMENTATION = r"""
name: site_recap
type: aggregate
version_added: 0.1.0
short_description: Recap of a fleet run per EdgeSite site
description:
  - At the end of a run, prints one line per site (hosts grouped by their C(edgesite_site)
    inventory variable, C(default) when unset) saying whether all of its hosts converged, or which
    hosts failed or were unreachable, with the task and the first line of the error.
  - Sites are independent in EdgeSite runs, so a fleet run goes on when one site fails; this
    recap is where the operator (or an AWX job's output) sees which sites need attention.
requirements:
  - enable in ansible.cfg (C(callbacks_enabled = edgesite.fleet.site_recap))
"""

from ansible.plugins.callback import CallbackBase  # noqa: E402  (after DOCUMENTATION)

_SITE_VARIABLE = "edgesite_site"
_DEFAULT_SITE = "default"


def _first_line(result):
    text = result.get("msg") or result.get("stderr") or result.get("reason") or ""
    text = str(text).strip()
    if text:
        return text.splitlines()[0][:200]
    # A no_log task's result holds only this notice; say so rather than "no message".
    return "its output is hidden (no_log)" if "censored" in result else "no message"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "edgesite.fleet.site_recap"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._site_of = {}
        self._problems = {}
        self._variable_manager = None

    def v2_playbook_on_play_start(self, play):
        self._variable_manager = play.get_variable_manager()

    def _site(self, host):
        name = host.get_name()
        if name not in self._site_of:
            site = host.get_vars().get(_SITE_VARIABLE)
            if site is None and self._variable_manager is not None:
                # Group variables (a site group's group_vars) are where the site is usually set.
                inventory = self._variable_manager._inventory
                for group in host.get_groups():
                    site = inventory.groups[group.name].get_vars().get(_SITE_VARIABLE, site)
            self._site_of[name] = str(site) if site else _DEFAULT_SITE
        return self._site_of[name]

    def _record(self, result, kind):
        host = result._host
        self._site(host)
        # The first failure is the cause; later ones (if ignored errors continue) are noise.
        self._problems.setdefault(
            host.get_name(), f"{kind} at '{result._task.get_name()}': {_first_line(result._result)}"
        )

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if not ignore_errors:
            self._record(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        if not hosts:
            return
        sites = {}
        for name in hosts:
            site = self._site_of.get(name)
            if site is None and self._variable_manager is not None:
                host = self._variable_manager._inventory.get_host(name)
                site = self._site(host) if host is not None else _DEFAULT_SITE
            sites.setdefault(site or _DEFAULT_SITE, []).append(name)
        self._display.banner("EDGESITE SITE RECAP")
        failed = [s for s in sorted(sites) if any(h in self._problems for h in sites[s])]
        for site in failed + [s for s in sorted(sites) if s not in failed]:
            members = sites[site]
            broken = [h for h in members if h in self._problems]
            if not broken:
                self._display.display(f"site {site}: ok ({len(members)} hosts)")
                continue
            self._display.display(
                f"site {site}: FAILED ({len(broken)} of {len(members)} hosts)", color="red"
            )
            for host in broken:
                self._display.display(f"  {host}: {self._problems[host]}", color="red")
        self._display.display(
            f"sites: {len(sites) - len(failed)} ok, {len(failed)} failed"
            + (f" ({', '.join(failed)})" if failed else "")
        )
