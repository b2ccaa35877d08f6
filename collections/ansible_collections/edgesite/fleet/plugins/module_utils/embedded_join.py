# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which master of an embedded-etcd site starts the cluster, and whom the others join.

k3s decides at start (pkg/etcd/etcd.go ETCD.Start): a member with a WAL starts as it is,
whatever its config says; an empty one with a server URL joins that server's cluster; an
empty one without starts a NEW cluster. So `cluster-init` must only go to a master when no
master of the site holds etcd data yet: a first master rebuilt with an empty data dir would
otherwise start a second cluster beside the running one.
"""

from __future__ import annotations


def embedded_join(masters, host, port):
    """{'cluster_init': bool, 'server': url}: what `host`'s k3s config says about joining.

    masters: the site's masters in inventory order, each {'host', 'address', 'has_etcd',
    'server'} (has_etcd: a WAL exists; server: the server URL in its current config, or '').
    A master that holds data keeps what its config says (k3s ignores it then, and changing it
    would restart k3s for nothing). An empty master joins the first master that holds data;
    on a new site the first master starts the cluster and the others join it.
    """
    me = next(m for m in masters if m["host"] == host)
    first = masters[0]
    holders = [m for m in masters if m.get("has_etcd")]

    def url(master):
        return f"https://{master['address']}:{port}"

    if me.get("has_etcd"):
        if me.get("server"):
            return {"cluster_init": False, "server": me["server"]}
        if me is first:
            return {"cluster_init": True, "server": ""}
        return {"cluster_init": False, "server": url(first)}
    if holders:
        return {"cluster_init": False, "server": url(holders[0])}
    if me is first:
        return {"cluster_init": True, "server": ""}
    return {"cluster_init": False, "server": url(first)}
