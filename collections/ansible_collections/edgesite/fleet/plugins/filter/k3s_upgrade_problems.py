# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter that refuses k3s upgrades the Kubernetes version skew policy does not support."""

DOCUMENTATION = r"""
name: k3s_upgrade_problems
version_added: 0.1.0
short_description: What is wrong with upgrading a site's hosts to the pinned k3s release
description:
  - Compares the k3s version each host runs with the release it is about to get, following the
    Kubernetes version skew policy (U(https://kubernetes.io/releases/version-skew-policy/)) and
    k3s's upgrade guide (U(https://docs.k3s.io/upgrades)).
  - Refused, per host, a jump over a Kubernetes minor version (v1.36 to v1.38; upgrade to a
    v1.37 release first), a minor version downgrade, and a change of major version.
  - Refused, per site, a worker that would run a newer k3s than one of the site's masters
    (a kubelet must never be newer than the kube-apiserver; k3s servers are upgraded first).
  - A host without a running k3s (empty version) is a new install and is not compared.
  - Each message names the site, the host, the running and the target versions, and the fix.
options:
  _input:
    description:
      - One record per host of the run, with keys C(host), C(site), C(role) (C(master) or
        C(worker)), C(running) (the version, or the whole output of C(k3s --version), empty when
        k3s is not installed) and optionally C(target) (this host's release; default O(target);
        empty when the host keeps running what it runs).
    type: list
    elements: dict
    required: true
  target:
    description: The pinned release the hosts are upgraded to, e.g. C(v1.36.4+k3s1).
    type: str
    required: true
  by_site:
    description: Return the messages grouped by site (a dict of lists) instead of one list.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Refuse the upgrade when it skips a minor version
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join(' ') }}"
  vars:
    problems: "{{ records | edgesite.fleet.k3s_upgrade_problems(edgesite_k3s_version) }}"
"""

RETURN = r"""
_value:
  description: Problems found (grouped by site with O(by_site)); empty when the upgrade is allowed.
  type: list
  elements: str
"""

import re  # noqa: E402

# k3s release tags: v1.36.4+k3s1, v1.37.0-rc1+k3s1; `k3s --version` prints
# "k3s version v1.36.4+k3s1 (abcdef12)".
_VERSION = re.compile(r"v(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?(?:\+k3s(\d+))?")
_OUTPUT = re.compile(r"k3s version (\S+)")


def _parse(text):
    """(major, minor, patch, k3s revision) of a version or of `k3s --version` output, or None."""
    text = str(text or "").strip()
    found = _OUTPUT.search(text)
    version = found.group(1) if found else text
    match = _VERSION.fullmatch(version)
    if match is None:
        return None
    major, minor, patch, revision = match.groups()
    return int(major), int(minor), int(patch), int(revision or 0)


def _name(text):
    found = _OUTPUT.search(str(text or ""))
    return found.group(1) if found else str(text or "").strip()


def _host_problems(site, host, running, target):
    """Minor skips, minor downgrades and major changes of one host."""
    have, want = _parse(running), _parse(target)
    run_name, target_name = _name(running), _name(target)
    where = f"site '{site}': {host} runs k3s {run_name}"
    if want is None:
        return [
            f"site '{site}': {host}: the target {target_name!r} is not a k3s release; "
            "use the form v1.36.4+k3s1"
        ]
    if not run_name:
        return []
    if have is None:
        return [
            f"{where}, which is not a k3s version this check can read, so the upgrade to "
            f"{target_name} cannot be checked against the one-minor-version rule: check the "
            "binary on the host (`k3s --version`) and run the upgrade again"
        ]
    (major, minor), (to_major, to_minor) = have[:2], want[:2]
    if major != to_major:
        return [
            f"{where} (Kubernetes {major}.{minor}); {target_name} "
            f"(Kubernetes {to_major}.{to_minor}) changes the major version, "
            "which no Kubernetes upgrade path supports"
        ]
    if to_minor > minor + 1:
        skipped = ", ".join(f"{major}.{m}" for m in range(minor + 1, to_minor))
        return [
            f"{where} (Kubernetes {major}.{minor}); {target_name} (Kubernetes {major}.{to_minor}) "
            f"would skip Kubernetes {skipped}, and Kubernetes upgrades one minor version at a "
            f"time: upgrade to v{major}.{minor + 1}.x first (set edgesite_k3s_version to a "
            f"v{major}.{minor + 1} k3s release and run upgrade.yml, then the next minor)"
        ]
    if to_minor < minor:
        return [
            f"{where} (Kubernetes {major}.{minor}); {target_name} (Kubernetes {major}.{to_minor}) "
            "would downgrade a Kubernetes minor version, which Kubernetes and k3s do not support: "
            f"keep edgesite_k3s_version at a v{major}.{minor} release or newer (going back needs "
            "a restore from an etcd snapshot taken before the upgrade)"
        ]
    return []


def _problems_by_site(records, target, by_site=False):
    by_site_problems = {}
    sites = {}
    for record in records:
        site = str(record.get("site") or "default")
        sites.setdefault(site, []).append(record)
    for site, hosts in sorted(sites.items()):
        problems = []
        ending = []  # (role, host, version tuple, version name) each host ends up running
        for record in hosts:
            host = str(record.get("host"))
            running = record.get("running") or ""
            host_target = record.get("target", target)
            if host_target:
                problems += _host_problems(site, host, running, host_target)
                end, end_name = _parse(host_target), _name(host_target)
            else:
                end, end_name = _parse(running), _name(running)
            if end is not None:
                ending.append((record.get("role"), host, end, end_name))
        masters = [e for e in ending if e[0] == "master"]
        for _role, worker, version, name in (e for e in ending if e[0] == "worker"):
            newer_than = [m for m in masters if version > m[2]]
            if newer_than:
                _m_role, master, _m_version, master_name = min(newer_than, key=lambda m: m[2])
                problems.append(
                    f"site '{site}': worker {worker} would run k3s {name}, newer than master "
                    f"{master} ({master_name}); a k3s agent must not be newer than its servers: "
                    "upgrade the site's masters first (run upgrade.yml for the whole site)"
                )
        if problems:
            by_site_problems[site] = problems
    if by_site:
        return by_site_problems
    return [p for site in sorted(by_site_problems) for p in by_site_problems[site]]


def k3s_upgrade_problems(records, target, by_site=False):
    return _problems_by_site(list(records), target, by_site)


class FilterModule:
    def filters(self):
        return {"k3s_upgrade_problems": k3s_upgrade_problems}
