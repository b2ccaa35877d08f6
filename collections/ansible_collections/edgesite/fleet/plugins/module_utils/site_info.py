# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health of one EdgeSite site, built from what the Kubernetes API, the datastore and
each worker's agent report. Used by the edgesite.fleet.site_info module.

The summarising functions take plain dicts and return plain dicts, so unit tests feed them
recorded API objects without any server; `gather_api` and `etcd_datastore` do the I/O.
Every problem is a sentence naming the node or component and what is wrong.
"""

from __future__ import annotations

import re
from typing import Any

from ansible_collections.edgesite.fleet.plugins.module_utils.etcd import EtcdClient, EtcdError
from ansible_collections.edgesite.fleet.plugins.module_utils.site_info_kube import (
    KubeClient,
    KubeError,
)

NOT_FROM_CONTROLLER = "not reachable from the controller"
# Node conditions that are bad when True (Ready is bad when not True).
PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
ROLE_LABEL = "node-role.kubernetes.io/"
ETCD_ROLE_LABEL = ROLE_LABEL + "etcd"

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


# ---- Prometheus text -------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[str, float]:
    """Samples of a Prometheus text exposition: {'name' or 'name{labels}': value}."""
    samples: dict[str, float] = {}
    for line in (text or "").splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        except ValueError:
            continue
    return samples


def metric_sum(samples: dict[str, float], name: str) -> float | None:
    """Sum of every series of `name` (None when the metric is absent)."""
    values = [v for k, v in samples.items() if k == name or k.startswith(name + "{")]
    return sum(values) if values else None


# ---- nodes -----------------------------------------------------------------------------------


def node_roles(node: dict[str, Any]) -> list[str]:
    labels = (node.get("metadata") or {}).get("labels") or {}
    roles = sorted(k[len(ROLE_LABEL) :] for k in labels if k.startswith(ROLE_LABEL))
    return roles or ["worker"]


def summarize_node(node: dict[str, Any]) -> dict[str, Any]:
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready_cond = conditions.get("Ready")
    ready = None if ready_cond is None else ready_cond.get("status") == "True"
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    problems: list[str] = []
    if ready is None:
        problems.append("no Ready condition reported (kubelet never posted status)")
    elif not ready:
        reason = ready_cond.get("reason") or ready_cond.get("status")
        message = ready_cond.get("message") or ""
        problems.append(f"NotReady ({reason}{': ' + message if message else ''})")
    for ctype in PRESSURE_CONDITIONS:
        if (conditions.get(ctype) or {}).get("status") == "True":
            problems.append(f"{ctype}")
    if spec.get("unschedulable"):
        problems.append("cordoned (unschedulable)")
    return {
        "name": meta.get("name", ""),
        "roles": node_roles(node),
        "ready": ready,
        "kubelet_version": info.get("kubeletVersion", ""),
        "internal_ip": addresses.get("InternalIP", ""),
        "problems": problems,
    }


# ---- agents ----------------------------------------------------------------------------------


def _truthy(value: Any) -> bool:
    # Values templated by a playbook may arrive as the strings "True"/"False".
    return value is True or str(value).lower() in ("true", "yes", "1")


def summarize_agent(raw: dict[str, Any], stale_seconds: float) -> dict[str, Any]:
    """One worker's agent, from what health.yml gathered on it.

    raw: host, node, and either unreachable+error (Ansible could not reach the host) or
    readyz_status (HTTP status, -1: no answer), metrics (text), version (text of --version).
    """
    out: dict[str, Any] = {
        "host": raw.get("host", ""),
        "node": raw.get("node") or raw.get("host", ""),
        "version": "",
        "ready": None,
        "seconds_since_api_contact": None,
        "problems": [],
    }
    if _truthy(raw.get("disabled")):
        out["version"] = "disabled"
        return out
    if _truthy(raw.get("unreachable")):
        out["problems"].append(
            "agent status unknown: Ansible could not reach the host"
            f" ({raw.get('error') or 'unreachable'})"
        )
        return out
    version = str(raw.get("version") or "").strip()
    out["version"] = version.split()[-1] if version else ""
    status = int(raw.get("readyz_status", -1))
    if status == -1:
        out["problems"].append(
            "agent not answering on its local port (" + (raw.get("error") or "no answer") + ")"
        )
        return out
    out["ready"] = status == 200
    if status != 200:
        out["problems"].append(f"agent /readyz answers {status} (not ready)")
    samples = parse_metrics(raw.get("metrics") or "")
    since = samples.get("edgesite_agent_seconds_since_api_contact")
    if since is None:
        out["problems"].append("agent /metrics has no edgesite_agent_seconds_since_api_contact")
    elif since < 0:
        out["seconds_since_api_contact"] = since
        out["problems"].append("agent has never reached the API since it started")
    else:
        out["seconds_since_api_contact"] = round(since, 1)
        if since > stale_seconds:
            out["problems"].append(
                f"agent last reached the API {since:.0f} s ago (more than {stale_seconds:g} s)"
            )
    return out


# ---- datastore -------------------------------------------------------------------------------


def readyz_checks(text: str) -> dict[str, bool]:
    """`/readyz?verbose` lines '[+]etcd ok' / '[-]etcd failed: ...' -> {'etcd': True, ...}."""
    checks: dict[str, bool] = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith(("[+]", "[-]")):
            checks[line[3:].split()[0]] = line.startswith("[+]")
    return checks


def api_datastore(
    kind: str, nodes: list[dict[str, Any]], readyz: dict[str, bool], metrics: dict[str, float]
) -> dict[str, Any]:
    """What the Kubernetes API tells about an embedded etcd or SQLite datastore.

    Members: k3s labels every node running an etcd member node-role.kubernetes.io/etcd=true.
    Health: the API server's own 'etcd' readiness check (k3s runs it against kine for SQLite).
    DB size: apiserver_storage_size_bytes (Kubernetes >= 1.28) or the older
    etcd_db_total_size_in_bytes. Leader and alarms live only in etcd's own API, which needs
    the masters' etcd client certificates: reported as not reachable from the controller.
    """
    healthy = readyz.get("etcd")
    db = metric_sum(metrics, "apiserver_storage_size_bytes")
    if db is None:
        db = metric_sum(metrics, "etcd_db_total_size_in_bytes")
    if kind == "sqlite":
        members = [n["name"] for n in nodes if "control-plane" in n["roles"]]
    else:
        members = [n["name"] for n in nodes if "etcd" in n["roles"]]
    return {
        "kind": kind,
        "source": "kubernetes-api",
        "healthy": healthy,
        "members": [{"name": m} for m in members],
        "leader": NOT_FROM_CONTROLLER if kind == "embedded" else "n/a (single SQLite server)",
        "alarms": NOT_FROM_CONTROLLER if kind == "embedded" else [],
        "db_size": int(db) if db is not None else None,
        "problems": (
            [] if healthy is not False else ["API server reports its datastore check failing"]
        ),
    }


def etcd_datastore(client: EtcdClient, kind: str = "external") -> dict[str, Any]:
    """etcd read with the etcd_* modules' client (v3 JSON gateway, client cert)."""
    problems: list[str] = []
    statuses: dict[str, dict[str, Any]] = {}
    for endpoint in client.endpoints:
        healthy, reason = client.health(endpoint)
        try:
            st = client.status(endpoint)
        except EtcdError as exc:
            st = {"error": exc.message}
        st.update(healthy=healthy, health_error=reason)
        statuses[endpoint] = st
        if not healthy:
            problems.append(f"etcd endpoint {endpoint} unhealthy: {reason}")
    try:
        members = client.member_list()
        alarms = client.alarms()
    except EtcdError as exc:
        return {"kind": kind, "source": "etcd", "healthy": False, "members": [],
                "leader": "", "alarms": [], "db_size": None,
                "problems": [*problems, f"etcd cluster not readable: {exc}"]}  # fmt: skip
    return etcd_result_datastore(
        {"members": members, "alarms": alarms, "endpoints": list(statuses.values())},
        extra_problems=problems,
        kind=kind,
    )


def etcd_result_datastore(
    result: dict[str, Any], extra_problems: list[str] | None = None, kind: str = "external"
) -> dict[str, Any]:
    """Normalise members/alarms/endpoints as edgesite.fleet.etcd_info returns them (also
    what etcd_datastore builds), so health.yml may run etcd_info on a master instead."""
    problems = list(extra_problems or [])
    # etcd_info always returns members; a result without them failed (a playbook that
    # registers with failed_when: false sees failed=false and only the msg).
    if (
        result.get("failed")
        or result.get("error")
        or result.get("unreachable")
        or ("members" not in result)
    ):
        msg = result.get("msg") or result.get("error") or "etcd_info failed"
        return {"kind": kind, "source": "etcd", "healthy": False, "members": [],
                "leader": "", "alarms": [], "db_size": None,
                "problems": [f"etcd cluster not readable: {msg}"]}  # fmt: skip
    members = result.get("members") or []
    endpoints = [e for e in result.get("endpoints") or [] if "member_id" in e]
    by_id = {e["member_id"]: e for e in endpoints}
    names = {m["id"]: m.get("name") or m["id"] for m in members}
    leaders = {e.get("leader_id") for e in endpoints} - {None, "", "0" * 16}
    leader = names.get(next(iter(leaders)), "") if len(leaders) == 1 else ""
    if not leader:
        problems.append(
            "etcd has no leader"
            if not leaders
            else f"etcd members disagree on the leader ({len(leaders)} seen)"
        )
    alarms = [f"{names.get(a.get('member_id'), a.get('member_id'))}: {a.get('alarm')}"
              for a in result.get("alarms") or []]  # fmt: skip
    problems.extend(f"etcd alarm {a}" for a in alarms)
    out_members = []
    for m in members:
        st = by_id.get(m["id"], {})
        out_members.append({
            "name": m.get("name") or m["id"],
            "healthy": st.get("healthy"),
            "is_leader": bool(leader) and (m.get("name") or m["id"]) == leader,
            "db_size": st.get("db_size"),
            "is_learner": m.get("is_learner", False),
        })  # fmt: skip
        if not m.get("started", True):
            problems.append(f"etcd member {m['id']} was added but never started")
    sizes = [m["db_size"] for m in out_members if m.get("db_size") is not None]
    return {
        "kind": kind,
        "source": "etcd",
        "healthy": not problems,
        "members": out_members,
        "leader": leader,
        "alarms": alarms,
        "db_size": max(sizes) if sizes else None,
        "problems": problems,
    }


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:200]


def k3s_member_node(member: str, node_names: list[str]) -> str:
    """The node of a k3s embedded etcd member: k3s names members '<node name>-<8 hex>'."""
    match = re.fullmatch(r"(.+)-[0-9a-f]{8}", member)
    return match.group(1) if match and match.group(1) in node_names else member


# ---- I/O against the API ---------------------------------------------------------------------


def gather_api(client: KubeClient) -> dict[str, Any]:
    """Nodes, version, readiness checks and storage metrics; errors become 'error' keys so one
    unreachable endpoint does not hide what the others said."""
    out: dict[str, Any] = {"url": client.server, "reachable": False, "error": ""}
    try:
        out["nodes"] = client.list_all("/api/v1/nodes")
        out["reachable"] = True
    except KubeError as exc:
        out["error"] = str(exc)
        return out
    try:
        out["version"] = client.get_json("/version").get("gitVersion", "")
    except KubeError:
        out["version"] = ""
    try:
        status, text = client.get_text("/readyz?verbose")
        out["readyz_status"], out["readyz"] = status, readyz_checks(text)
    except KubeError:
        out["readyz_status"], out["readyz"] = -1, {}
    try:
        status, text = client.get_text("/metrics")
        out["metrics"] = parse_metrics(text) if status == 200 else {}
    except KubeError:
        out["metrics"] = {}
    return out


# ---- the site --------------------------------------------------------------------------------


def build_site(
    site: str,
    inventory: list[dict[str, Any]],
    api: dict[str, Any],
    datastore: dict[str, Any] | None,
    agents: list[dict[str, Any]],
    k3s_version: str = "",
    stale_seconds: float = 120.0,
) -> dict[str, Any]:
    """One site's health: a row per node (inventory + API + agent), site-level problems.

    inventory: one dict per host of the site: host, node_name, is_master, is_worker.
    api: the result of gather_api. datastore: api_datastore/etcd_datastore result (None:
    built here from the API). agents: raw per-worker records (see summarize_agent).
    """
    site_problems: list[str] = []
    nodes = [summarize_node(n) for n in api.get("nodes") or []]
    api_nodes = {n["name"]: n for n in nodes}
    if not api.get("reachable"):
        site_problems.append(f"Kubernetes API not reachable: {api.get('error') or 'no answer'}")
    elif api.get("readyz_status") not in (None, 200, -1):
        failing = sorted(k for k, ok in (api.get("readyz") or {}).items() if not ok)
        site_problems.append(
            "API server not ready" + (f" (failing checks: {', '.join(failing)})" if failing else "")
        )
    agent_by_node = {}
    for raw in agents:
        summary = summarize_agent(raw, stale_seconds)
        agent_by_node[summary["node"]] = summary

    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for host in inventory:
        name = host.get("node_name") or host["host"]
        seen.add(name)
        role = "master" if host.get("is_master") else "worker"
        row: dict[str, Any] = {"host": host["host"], "node": name, "role": role,
                               "ready": None, "k3s_version": "", "roles": [],
                               "agent_version": "", "agent_ready": None,
                               "seconds_since_api_contact": None, "problems": []}  # fmt: skip
        node = api_nodes.get(name)
        if node is not None:
            row.update(ready=node["ready"], roles=node["roles"])
            row["k3s_version"] = node["kubelet_version"]
            row["problems"].extend(node["problems"])
            if k3s_version and node["kubelet_version"] and node["kubelet_version"] != k3s_version:
                row["problems"].append(
                    f"runs k3s {node['kubelet_version']}, the site pins {k3s_version}"
                )
        elif api.get("reachable"):
            row["problems"].append("not registered in the Kubernetes API")
        else:
            row["problems"].append("node state unknown: the site's API is not reachable")
        if host.get("is_worker"):
            agent = agent_by_node.get(name)
            if agent is None:
                row["problems"].append("no agent status gathered for this worker")
            else:
                row["agent_version"] = agent["version"]
                row["agent_ready"] = agent["ready"]
                row["seconds_since_api_contact"] = agent["seconds_since_api_contact"]
                row["problems"].extend(agent["problems"])
        rows.append(row)
    for name, node in sorted(api_nodes.items()):
        if name in seen:
            continue
        rows.append({"host": "", "node": name, "role": "unknown", "ready": node["ready"],
                     "k3s_version": node["kubelet_version"], "roles": node["roles"],
                     "agent_version": "", "agent_ready": None, "seconds_since_api_contact": None,
                     "problems": ["registered in the API but not in the inventory"]
                     + node["problems"]})  # fmt: skip

    if datastore is None:
        if api.get("reachable"):
            datastore = api_datastore("embedded", nodes, api.get("readyz") or {},
                                      api.get("metrics") or {})  # fmt: skip
        else:
            datastore = {"kind": "unknown", "source": "", "healthy": None, "members": [],
                         "leader": "", "alarms": [], "db_size": None, "problems": []}  # fmt: skip
    site_problems.extend(f"datastore: {p}" for p in datastore.get("problems") or [])
    masters = [h for h in inventory if h.get("is_master")]
    if datastore.get("kind") == "embedded" and datastore.get("source") == "etcd":
        names = [h.get("node_name") or h["host"] for h in masters]
        for member in datastore.get("members") or []:
            node = k3s_member_node(member["name"], names)
            if node != member["name"]:
                member["etcd_name"], member["name"] = member["name"], node
                if member.get("is_leader"):
                    datastore["leader"] = node
    from_etcd = datastore.get("source") == "etcd"
    if datastore.get("kind") == "embedded" and (api.get("reachable") or from_etcd):
        members = len(datastore.get("members") or [])
        if members != len(masters):
            where = "etcd member(s)" if from_etcd else "etcd member node(s) in the API"
            site_problems.append(
                f"datastore: {members} {where}, the inventory has {len(masters)} master(s)"
            )
    node_problems = sum(1 for r in rows if r["problems"])
    return {
        "site": site,
        "healthy": not site_problems and not node_problems,
        "problems": site_problems,
        "problem_count": len(site_problems) + sum(len(r["problems"]) for r in rows),
        "api": {
            "url": api.get("url", ""),
            "reachable": bool(api.get("reachable")),
            "version": api.get("version", ""),
            "error": api.get("error", ""),
        },
        "datastore": datastore,
        "nodes": rows,
    }


def datastore_for(
    kind: str,
    api: dict[str, Any],
    etcd_client: EtcdClient | None = None,
    etcd_result: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Pick the datastore source: etcd itself when we can reach it, else the API's view."""
    if kind == "external":
        if etcd_client is not None:
            return etcd_datastore(etcd_client)
        if etcd_result is not None:
            return etcd_result_datastore(etcd_result)
        return {"kind": "external", "source": "", "healthy": None, "members": [],
                "leader": NOT_FROM_CONTROLLER, "alarms": NOT_FROM_CONTROLLER, "db_size": None,
                "problems": []}  # fmt: skip
    if kind == "embedded" and etcd_client is not None:
        return etcd_datastore(etcd_client, kind="embedded")
    if kind == "embedded" and etcd_result is not None:
        if "members" in etcd_result and not etcd_result.get("unreachable"):
            return etcd_result_datastore(etcd_result, kind="embedded")
        # k3s's etcd could not be read on the master (older layout, files moved, etcd down):
        # the API's view still tells members and health; say why leader/alarms are missing.
        why = "not readable on the first master: " + _first_line(
            str(etcd_result.get("msg") or "etcd_info failed")
        )
        if api.get("reachable"):
            nodes = [summarize_node(n) for n in api.get("nodes") or []]
            view = api_datastore(kind, nodes, api.get("readyz") or {}, api.get("metrics") or {})
            return {**view, "leader": why, "alarms": why}
    if not api.get("reachable"):
        unknown = "unknown (the site's API is not reachable)"
        return {"kind": kind, "source": "", "healthy": None, "members": [], "leader": unknown,
                "alarms": unknown, "db_size": None, "problems": []}  # fmt: skip
    nodes = [summarize_node(n) for n in api.get("nodes") or []]
    return api_datastore(kind, nodes, api.get("readyz") or {}, api.get("metrics") or {})
