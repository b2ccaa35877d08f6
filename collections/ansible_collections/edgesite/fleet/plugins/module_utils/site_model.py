# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet's site model: which hosts form which site, and what makes a site valid.

Kept free of Ansible imports so the same rules run in the preflight filter, in modules,
and in plain unit tests. Every problem is a sentence that names the site, the host or
variable at fault, and the fix.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.edgesite.fleet.plugins.module_utils.k3s_inputs import (
    node_label_problems,
    node_taint_problems,
    site_name_problems,
)

DATASTORES = ("embedded", "external", "sqlite")
MAX_MASTERS = 3
# A k3s token set by the user must resist guessing: the token lets any host join the cluster.
MIN_TOKEN_LENGTH = 16

# Kubernetes node names are DNS-1123 subdomains.
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_K3S_VERSION = re.compile(r"^v1\.\d+\.\d+\+k3s\d+$")

# Settings that describe the whole site: every host of a site must agree on them.
SITE_WIDE_KEYS = (
    "datastore",
    "k3s_version",
    "etcd_witness",
    "etcd_two_member_risk_acknowledged",
    "site_vip",
    "tls_san",
)


def _hosts(hosts):
    return ", ".join(sorted(hosts))


def site_of(record):
    return record.get("site") or "default"


def group_sites(records):
    """Return {site: [record, ...]} preserving inventory order inside each site."""
    sites = {}
    for record in records:
        sites.setdefault(site_of(record), []).append(record)
    return sites


def _check_groups(groups, masters_group, workers_group):
    problems = []
    for group, role, what in (
        (masters_group, "masters", "the site's 1-3 master hosts"),
        (workers_group, "workers", "the site's worker hosts"),
    ):
        if group not in groups:
            problems.append(
                f"inventory has no group '{group}': add it with {what} "
                f"(or point edgesite_{role}_group at the group you use)"
            )
    return problems


def _check_roles(site, records):
    problems = []
    for record in records:
        if record["is_master"] and record["is_worker"]:
            problems.append(
                f"site '{site}': host '{record['host']}' is in both the masters and the workers "
                "group; a node is either a k3s server or an agent, remove it from one of them"
            )
    masters = [r["host"] for r in records if r["is_master"]]
    if not masters:
        problems.append(
            f"site '{site}' has no master: put 1 to {MAX_MASTERS} of its hosts in the masters group"
        )
    elif len(masters) > MAX_MASTERS:
        problems.append(
            f"site '{site}' has {len(masters)} masters ({_hosts(masters)}); EdgeSite supports "
            f"1 to {MAX_MASTERS}: more etcd members slow every write without tolerating more "
            f"failures on a small site. Move {_hosts(masters[MAX_MASTERS:])} to the workers group"
        )
    return problems


def _check_unique(site, records, key, label):
    seen = {}
    for record in records:
        value = record.get(key)
        if value not in (None, ""):
            seen.setdefault(value, []).append(record["host"])
    return [
        f"site '{site}': {label} '{value}' is used by {len(hosts)} hosts ({_hosts(hosts)}); "
        f"each node needs its own, set edgesite_{key} per host"
        for value, hosts in seen.items()
        if len(hosts) > 1
    ]


def _check_host_values(site, record):
    problems = []
    host = record["host"]
    name = record.get("node_name")
    if not isinstance(name, str) or not name or len(name) > 253 or not _NODE_NAME.match(name):
        problems.append(
            f"site '{site}': host '{host}' has node name {name!r}, which is not a valid "
            "Kubernetes node name (lowercase letters, digits, '-' and '.', at most 253 "
            "characters); set edgesite_node_name"
        )
    token_length = record.get("k3s_token_length") or 0
    if 0 < int(token_length) < MIN_TOKEN_LENGTH:
        problems.append(
            f"site '{site}': host '{host}' has an edgesite_k3s_token of {token_length} "
            f"characters; use at least {MIN_TOKEN_LENGTH} random characters (from Ansible "
            "Vault), or leave it empty to have one generated"
        )
    address = record.get("node_ip")
    try:
        ipaddress.ip_address(str(address))
    except ValueError:
        problems.append(
            f"site '{site}': host '{host}' has node IP {address!r}, which is not an IP address; "
            "set edgesite_node_ip to the address the node uses inside the site"
        )
    return problems


def _check_k3s_inputs(site, record):
    """What k3s or the kubelet would refuse on this host (module_utils/k3s_inputs.py).

    The extra config is checked on its host (filter k3s_extra_config_problems) so that its
    values, which may be secrets, never enter the record: the record carries the problems.
    """
    host = record["host"]
    problems = list(record.get("extra_config_problems") or ())
    problems.extend(
        node_label_problems(
            record.get("node_labels"),
            host,
            record.get("node_labels_variable") or "edgesite_node_labels",
            site,
        )
    )
    problems.extend(
        node_taint_problems(
            record.get("node_taints"),
            host,
            record.get("node_taints_variable") or "edgesite_node_taints",
            site,
        )
    )
    return problems


def _check_consistent(site, records):
    problems = []
    for key in SITE_WIDE_KEYS:
        values = {}
        for record in records:
            values.setdefault(repr(record.get(key)), []).append(record["host"])
        if len(values) > 1:
            found = "; ".join(
                f"{value} on {_hosts(hosts)}" for value, hosts in sorted(values.items())
            )
            problems.append(
                f"site '{site}': edgesite_{key} must be the same on every host of the site, "
                f"found {found}; set it once in the site's group_vars"
            )
    return problems


def _check_witness(site, records, witness):
    by_host = {r["host"]: r for r in records}
    if witness not in by_host:
        return [
            f"site '{site}': edgesite_etcd_witness '{witness}' is not a host of this site; "
            "name one of its workers (or another small host in the site)"
        ]
    if by_host[witness]["is_master"]:
        return [
            f"site '{site}': edgesite_etcd_witness '{witness}' is already a master; the witness "
            "must be a third host, e.g. a worker"
        ]
    return []


def _check_datastore(site, records):
    settings = records[0]
    datastore = settings.get("datastore")
    masters = [r for r in records if r["is_master"]]
    if datastore not in DATASTORES:
        return [
            f"site '{site}': edgesite_datastore is {datastore!r}; choose one of "
            + ", ".join(DATASTORES)
        ]
    if datastore == "sqlite" and len(masters) > 1:
        return [
            f"site '{site}': edgesite_datastore 'sqlite' works with exactly one master, the site "
            f"has {len(masters)}; use 'embedded' or 'external' etcd for an HA site"
        ]
    if len(masters) != 2:
        return []
    if datastore == "embedded":
        # A witness naming a master or a foreign host is a mistake of its own: report it too.
        witness = settings.get("etcd_witness")
        return (_check_witness(site, records, witness) if witness else []) + (
            _check_embedded_two_masters(site, settings)
        )
    if settings.get("etcd_witness"):
        return _check_witness(site, records, settings["etcd_witness"])
    if settings.get("etcd_two_member_risk_acknowledged") is True:
        return []
    return [
        f"site '{site}' has 2 masters and no etcd witness: a 2-member etcd needs both members "
        "for quorum, so losing either master stops the whole control plane. Set "
        "edgesite_etcd_witness to a third host of the site (e.g. a worker), or accept the risk "
        "with edgesite_etcd_two_member_risk_acknowledged: true"
    ]


# k3s runs its embedded etcd only inside `k3s server` (pkg/etcd is started by the server's
# control plane; `k3s agent` has no datastore), and EdgeSite's witness host runs `k3s agent`: on
# embedded etcd a witness is never an etcd member, so 2 masters are 2 voters whatever it says.
_EMBEDDED_TWO_MASTER_FIXES = (
    "Fix: add a third master; or set edgesite_datastore: external with edgesite_etcd_witness "
    "naming a third host of the site (role etcd makes it the third etcd member); or, knowingly "
    "running without fault tolerance, set edgesite_etcd_two_member_risk_acknowledged: true"
)


def _check_embedded_two_masters(site, settings):
    """Two masters on k3s's embedded etcd: 2 voters, no fault tolerance, witness or not."""
    if settings.get("etcd_two_member_risk_acknowledged") is True:
        return []
    witness = settings.get("etcd_witness")
    if witness:
        return [
            f"site '{site}' has 2 masters on embedded etcd with edgesite_etcd_witness "
            f"'{witness}': an embedded-etcd witness would be a k3s agent, not an etcd voter "
            "(k3s runs its embedded etcd only in servers), so the site's etcd has two voters "
            "and loses quorum when either master stops. " + _EMBEDDED_TWO_MASTER_FIXES
        ]
    return [
        f"site '{site}' has 2 masters and no etcd witness on embedded etcd: its etcd has two "
        "voters (an embedded-etcd witness would be a k3s agent, not an etcd voter), so it "
        "loses quorum and stops the control plane when either master stops. "
        + _EMBEDDED_TWO_MASTER_FIXES
    ]


def _check_site_settings(site, settings):
    problems = []
    version = settings.get("k3s_version")
    if not isinstance(version, str) or not _K3S_VERSION.match(version):
        problems.append(
            f"site '{site}': edgesite_k3s_version {version!r} is not a pinned k3s release; "
            "use the form v1.36.4+k3s1"
        )
    vip = settings.get("site_vip")
    if vip:
        try:
            ipaddress.ip_address(str(vip))
        except ValueError:
            problems.append(
                f"site '{site}': edgesite_site_vip {vip!r} is not an IP address; give the "
                "virtual IP the site's API is reached at, or leave it empty"
            )
        tls_san = settings.get("tls_san")
        if tls_san is not None and vip not in tls_san:
            problems.append(
                f"site '{site}': edgesite_site_vip {vip!r} is not in edgesite_tls_san "
                f"{list(tls_san)!r}; clients using the VIP would fail TLS verification. Add the "
                "VIP to edgesite_tls_san (or leave edgesite_tls_san at its default)"
            )
    return problems


def _check_whole_masters(site, records, inventory_masters, failed_names=frozenset()):
    """A run (e.g. --limit, or an AWX slice) must hold all of a site's masters, or none of it."""
    in_run = {r["host"] for r in records} | set(failed_names)
    masters = inventory_masters.get(site, [])
    missing = [m for m in masters if m not in in_run]
    if not missing:
        return []
    held = [m for m in masters if m in in_run]
    return [
        f"site '{site}': this run holds {len(held)} of its {len(masters)} masters "
        f"({_hosts(held) or 'none'}; missing {_hosts(missing)}). Masters join and restart "
        "through each other, so a partial run would half-configure the site: run whole sites "
        "(--limit the site's group, one AWX job per site; no job slicing)"
    ]


def site_problems_by_site(
    records,
    groups,
    masters_group="edgesite_masters",
    workers_group="edgesite_workers",
    inventory_masters=None,
    failed_hosts=None,
):
    """Validate the sites of this run; return {site: [problem, ...]} for the sites with problems.

    Problems that concern no single site (a missing group) are under the key "": they stop
    every site. Sites are otherwise independent: one broken site never holds back the others.

    records: one dict per host of the run that passed its own checks, with keys host, site,
    is_master, is_worker, node_name, node_ip and the SITE_WIDE_KEYS (no edgesite_ prefix);
    optionally node_labels, node_taints (with node_labels_variable / node_taints_variable, the
    variables they came from) and extra_config_problems (k3s_extra_config_problems' result).
    groups: the inventory's group names.
    inventory_masters: (master, site) pairs over the whole inventory, to refuse a run that
    holds only part of a site's masters (None: the run is the whole inventory).
    failed_hosts: (host, site) pairs of hosts of this run that already failed their own checks
    (types, reachability): their whole site is held back.
    """
    problems = {}
    global_problems = _check_groups(groups, masters_group, workers_group)
    if global_problems:
        return {"": global_problems}
    masters_by_site = {}
    for master, site in inventory_masters or ():
        masters_by_site.setdefault(site or "default", []).append(master)
    failed_by_site = {}
    for host, site in failed_hosts or ():
        failed_by_site.setdefault(site or "default", []).append(host)
    for site, hosts in failed_by_site.items():
        problems[site] = [
            f"site '{site}': {_hosts(hosts)} failed the checks above, so the whole site is held "
            "back; fix that host's error first"
        ]
    # Hosts in neither group (a bastion, localhost, other teams' hosts) are not part of a site.
    members_only = [r for r in records if r.get("is_master") or r.get("is_worker")]
    failed_names = {host for host, _site in failed_hosts or ()}
    for site, members in sorted(group_sites(members_only).items()):
        if site in problems:
            continue
        site_problems_found = _site_checks(site, members, masters_by_site, failed_names)
        if site_problems_found:
            problems[site] = site_problems_found
    return problems


def _site_checks(site, members, masters_by_site, failed_names):
    partial = _check_whole_masters(site, members, masters_by_site, failed_names)
    if partial:
        # The other checks would judge a fragment of the site; this is the one to fix.
        return partial
    problems = site_name_problems(site) + _check_roles(site, members)
    for record in members:
        problems.extend(_check_host_values(site, record))
        problems.extend(_check_k3s_inputs(site, record))
    problems.extend(_check_unique(site, members, "node_name", "node name"))
    problems.extend(_check_unique(site, members, "node_ip", "node IP"))
    consistency = _check_consistent(site, members)
    problems.extend(consistency)
    if not consistency:
        problems.extend(_check_site_settings(site, members[0]))
        problems.extend(_check_datastore(site, members))
    return problems


def site_problems(
    records,
    groups,
    masters_group="edgesite_masters",
    workers_group="edgesite_workers",
    inventory_masters=None,
    failed_hosts=None,
):
    """All problems of site_problems_by_site as one list, global ones first."""
    by_site = site_problems_by_site(
        records, groups, masters_group, workers_group, inventory_masters, failed_hosts
    )
    return [problem for site in sorted(by_site) for problem in by_site[site]]
