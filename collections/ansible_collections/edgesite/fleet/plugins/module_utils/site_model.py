# Copyright: EdgeSite contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""The fleet's site model: which hosts form which site, and what makes a site valid.

Kept free of Ansible imports so the same rules run in the preflight filter, in modules,
and in plain unit tests. Every problem is a sentence that names the site, the host or
variable at fault, and the fix.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

DATASTORES = ("embedded", "external", "sqlite")
MAX_MASTERS = 3

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
)


def _host_list(hosts):
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
    for group, what in ((masters_group, "1-3 master hosts"), (workers_group, "worker hosts")):
        if group not in groups:
            problems.append(
                "inventory has no group '%s': add it with the site's %s "
                "(or point edgesite_%s_group at the group you use)"
                % (group, what, "masters" if group == masters_group else "workers")
            )
    return problems


def _check_roles(site, records):
    problems = []
    for record in records:
        if record["is_master"] and record["is_worker"]:
            problems.append(
                "site '%s': host '%s' is in both the masters and the workers group; "
                "a node is either a k3s server or an agent, remove it from one of them"
                % (site, record["host"])
            )
    masters = [r["host"] for r in records if r["is_master"]]
    if not masters:
        problems.append(
            "site '%s' has no master: put 1 to %d of its hosts in the masters group"
            % (site, MAX_MASTERS)
        )
    elif len(masters) > MAX_MASTERS:
        problems.append(
            "site '%s' has %d masters (%s); EdgeSite supports 1 to %d: more etcd members "
            "slow every write without tolerating more failures on a small site. Move %s "
            "to the workers group"
            % (
                site,
                len(masters),
                _host_list(masters),
                MAX_MASTERS,
                _host_list(masters[MAX_MASTERS:]),
            )
        )
    return problems


def _check_unique(site, records, key, label):
    problems = []
    seen = {}
    for record in records:
        value = record.get(key)
        if value in (None, ""):
            continue
        seen.setdefault(value, []).append(record["host"])
    for value, hosts in seen.items():
        if len(hosts) > 1:
            problems.append(
                "site '%s': %s '%s' is used by %d hosts (%s); each node needs its own, "
                "set edgesite_%s per host"
                % (site, label, value, len(hosts), _host_list(hosts), key)
            )
    return problems


def _check_host_values(site, record):
    problems = []
    host = record["host"]
    name = record.get("node_name")
    if not isinstance(name, str) or not name or len(name) > 253 or not _NODE_NAME.match(name):
        problems.append(
            "site '%s': host '%s' has node name %r, which is not a valid Kubernetes node name "
            "(lowercase letters, digits, '-' and '.', at most 253 characters); set "
            "edgesite_node_name" % (site, host, name)
        )
    address = record.get("node_ip")
    try:
        ipaddress.ip_address(str(address))
    except ValueError:
        problems.append(
            "site '%s': host '%s' has node IP %r, which is not an IP address; set "
            "edgesite_node_ip to the address the node uses inside the site" % (site, host, address)
        )
    return problems


def _check_consistent(site, records):
    problems = []
    for key in SITE_WIDE_KEYS:
        values = {}
        for record in records:
            values.setdefault(repr(record.get(key)), []).append(record["host"])
        if len(values) > 1:
            detail = "; ".join(
                "%s on %s" % (value, _host_list(hosts)) for value, hosts in sorted(values.items())
            )
            problems.append(
                "site '%s': edgesite_%s must be the same on every host of the site, found %s; "
                "set it once in the site's group_vars" % (site, key, detail)
            )
    return problems


def _check_datastore(site, records):
    problems = []
    first = records[0]
    datastore = first.get("datastore")
    masters = [r for r in records if r["is_master"]]
    if datastore not in DATASTORES:
        return [
            "site '%s': edgesite_datastore is %r; choose one of %s"
            % (site, datastore, ", ".join(DATASTORES))
        ]
    if datastore == "sqlite" and len(masters) > 1:
        problems.append(
            "site '%s': edgesite_datastore 'sqlite' works with exactly one master, the site has "
            "%d; use 'embedded' or 'external' etcd for an HA site" % (site, len(masters))
        )
    if datastore in ("embedded", "external") and len(masters) == 2:
        witness = first.get("etcd_witness")
        acknowledged = first.get("etcd_two_member_risk_acknowledged") is True
        if witness:
            by_host = {r["host"]: r for r in records}
            if witness not in by_host:
                problems.append(
                    "site '%s': edgesite_etcd_witness '%s' is not a host of this site; name one "
                    "of its workers (or another small host in the site)" % (site, witness)
                )
            elif by_host[witness]["is_master"]:
                problems.append(
                    "site '%s': edgesite_etcd_witness '%s' is already a master; the witness must "
                    "be a third host, e.g. a worker" % (site, witness)
                )
        elif not acknowledged:
            problems.append(
                "site '%s' has 2 masters and no etcd witness: a 2-member etcd needs both members "
                "for quorum, so losing either master stops the whole control plane. Set "
                "edgesite_etcd_witness to a third host of the site (e.g. a worker), or accept "
                "the risk with edgesite_etcd_two_member_risk_acknowledged: true" % site
            )
    return problems


def _check_site_settings(site, record):
    problems = []
    version = record.get("k3s_version")
    if not isinstance(version, str) or not _K3S_VERSION.match(version):
        problems.append(
            "site '%s': edgesite_k3s_version %r is not a pinned k3s release; use the form "
            "v1.31.4+k3s1" % (site, version)
        )
    vip = record.get("site_vip")
    if vip:
        try:
            ipaddress.ip_address(str(vip))
        except ValueError:
            problems.append(
                "site '%s': edgesite_site_vip %r is not an IP address; give the virtual IP the "
                "site's API is reached at, or leave it empty" % (site, vip)
            )
    return problems


def site_problems(records, groups, masters_group="edgesite_masters", workers_group="edgesite_workers"):
    """Validate the whole inventory; return a list of problems (empty when valid).

    records: one dict per host with keys host, site, is_master, is_worker, node_name,
    node_ip and the SITE_WIDE_KEYS (without their edgesite_ prefix).
    groups: the inventory's group names.
    """
    problems = _check_groups(groups, masters_group, workers_group)
    if problems:
        return problems
    # Hosts in neither group (a bastion, localhost, other teams' hosts) are not part of a site.
    members_only = [r for r in records if r.get("is_master") or r.get("is_worker")]
    for site, members in sorted(group_sites(members_only).items()):
        problems.extend(_check_roles(site, members))
        for record in members:
            problems.extend(_check_host_values(site, record))
        problems.extend(_check_unique(site, members, "node_name", "node name"))
        problems.extend(_check_unique(site, members, "node_ip", "node IP"))
        consistency = _check_consistent(site, members)
        problems.extend(consistency)
        if not consistency:
            problems.extend(_check_site_settings(site, members[0]))
            problems.extend(_check_datastore(site, members))
    return problems
