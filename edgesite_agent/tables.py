"""Server-side Table answers (meta.k8s.io/v1 Table), what `kubectl get` asks for by default.

kubectl sends `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...` and prints the
columns the server chose. Columns and cells follow kube-apiserver's printers
(pkg/printers/internalversion/printers.go: AddHandlers' column definitions, printPod,
printNode, printService, printConfigMap, printSecret, printEndpointSlice), ages as
apimachinery/pkg/util/duration HumanDuration; rows carry the object as
PartialObjectMetadata unless `includeObject` says otherwise
(apiserver pkg/endpoints/handlers/response.go asTable, rest.TableConvertor).
Imported only when a Table is asked for.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Obj = dict[str, Any]

_NAME = ("Name", "string", "Name must be unique within a namespace.")
_AGE = ("Age", "string", "CreationTimestamp is a timestamp representing the server time "
        "when this object was created.")  # fmt: skip


def _col(name: str, ctype: str, desc: str, priority: int = 0) -> Obj:
    return {"name": name, "type": ctype, "format": "name" if name == "Name" else "",
            "description": desc, "priority": priority}  # fmt: skip


def _parse_ts(ts: str) -> float | None:
    """RFC 3339 UTC ("2026-12-06T05:00:00Z") -> epoch seconds, without datetime/_strptime
    (both stay loaded for the agent's life once imported)."""
    try:
        y, mo, d = int(ts[0:4]), int(ts[5:7]), int(ts[8:10])
        h, mi, s = int(ts[11:13]), int(ts[14:16]), int(ts[17:19])
    except ValueError:
        return None
    # days from civil (proleptic Gregorian), as in Howard Hinnant's algorithm
    y -= mo <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days * 86400 + h * 3600 + mi * 60 + s


def human_duration(seconds: float) -> str:
    """apimachinery/pkg/util/duration HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 192:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        dy = (h // 24) % 365
        return f"{h // 24 // 365}y{dy}d" if dy else f"{h // 24 // 365}y"
    return f"{h // 24 // 365}y"


def _age(obj: Obj) -> str:
    ts = _parse_ts(str((obj.get("metadata") or {}).get("creationTimestamp") or ""))
    return "<unknown>" if ts is None else human_duration(time.time() - ts)


def _pod(o: Obj) -> list[Any]:
    """printers.go printPod: READY, STATUS (reason rules), RESTARTS, AGE; wide: IP, NODE."""
    spec, st = o.get("spec") or {}, o.get("status") or {}
    total = len(spec.get("containers") or [])
    reason = st.get("reason") or st.get("phase") or ""
    ready = restarts = 0
    for cs in st.get("containerStatuses") or []:
        restarts += int(cs.get("restartCount") or 0)
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif state.get("terminated"):
            t = state["terminated"]
            reason = (f"Signal:{t['signal']}" if t.get("signal")
                      else f"ExitCode:{t.get('exitCode', 0)}")  # fmt: skip
        elif state.get("running") and cs.get("ready"):
            ready += 1
    if (o.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Unknown" if st.get("reason") == "NodeLost" else "Terminating"
    ips = [p.get("ip") for p in st.get("podIPs") or []] or [st.get("podIP")]
    gates = spec.get("readinessGates") or []
    return [f"{ready}/{total}", reason, str(restarts), _age(o), ips[0] or "<none>",
            spec.get("nodeName") or "<none>", st.get("nominatedNodeName") or "<none>",
            f"{len(gates)}" if gates else "<none>"]  # fmt: skip


def _node(o: Obj) -> list[Any]:
    """printers.go printNode: STATUS from the conditions, ROLES from node-role labels."""
    st, spec = o.get("status") or {}, o.get("spec") or {}
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    status = ["Ready" if conds.get("Ready") == "True" else "NotReady"] if "Ready" in conds else [
        "Unknown"]  # fmt: skip
    if spec.get("unschedulable"):
        status.append("SchedulingDisabled")
    labels = (o.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.partition("/")[2] for k in labels
                   if k.startswith("node-role.kubernetes.io/") and k.partition("/")[2])  # fmt: skip
    if labels.get("kubernetes.io/role"):
        roles.append(labels["kubernetes.io/role"])
    info = st.get("nodeInfo") or {}
    addrs = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    return [",".join(status), ",".join(roles) or "<none>", _age(o),
            info.get("kubeletVersion") or "", addrs.get("InternalIP") or "<none>",
            addrs.get("ExternalIP") or "<none>", info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]  # fmt: skip


def _ports(ports: list[Obj], node_port: bool) -> str:
    out = []
    for p in ports:
        text = f"{p.get('port')}"
        if node_port and p.get("nodePort"):
            text += f":{p['nodePort']}"
        out.append(f"{text}/{p.get('protocol') or 'TCP'}")
    return ",".join(out) or "<none>"


def _service(o: Obj) -> list[Any]:
    """printers.go printService: TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S), AGE; wide SELECTOR."""
    spec = o.get("spec") or {}
    stype = spec.get("type") or "ClusterIP"
    ext = list(spec.get("externalIPs") or [])
    if stype == "LoadBalancer":
        ing = ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ext += [i.get("ip") or i.get("hostname") for i in ing]
    external = ",".join(ext) or ("<pending>" if stype == "LoadBalancer" else "<none>")
    if stype == "ExternalName":
        external = spec.get("externalName") or "<none>"
    sel = spec.get("selector") or {}
    return [stype, spec.get("clusterIP") or "<none>", external,
            _ports(spec.get("ports") or [], stype in ("NodePort", "LoadBalancer")), _age(o),
            ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"]  # fmt: skip


def _configmap(o: Obj) -> list[Any]:
    return [len(o.get("data") or {}) + len(o.get("binaryData") or {}), _age(o)]


def _secret(o: Obj) -> list[Any]:
    return [o.get("type") or "", len(o.get("data") or {}), _age(o)]


def _endpointslice(o: Obj) -> list[Any]:
    """printers.go printEndpointSlice: ENDPOINTS shows at most three addresses."""
    addrs = [a for e in o.get("endpoints") or [] for a in e.get("addresses") or []]
    shown = ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")
    ports = ",".join(str(p.get("port")) for p in o.get("ports") or [] if p.get("port"))
    return [o.get("addressType") or "", ports or "<unset>", shown or "<unset>", _age(o)]


# kind -> (columns after Name as (name, type, description, priority), cells function)
_D = "see the API reference"
PRINTERS: dict[str, tuple[list[tuple[str, str, str, int]], Callable[[Obj], list[Any]]]] = {
    "Pod": ([("Ready", "string", "The aggregate readiness state of this pod.", 0),
             ("Status", "string", "The aggregate status of the containers in this pod.", 0),
             ("Restarts", "string", "The number of times the containers have restarted.", 0),
             (*_AGE, 0), ("IP", "string", "IP address allocated to the pod.", 1),
             ("Node", "string", "Name of the node the pod is assigned to.", 1),
             ("Nominated Node", "string", "Nominated node name, if any.", 1),
             ("Readiness Gates", "string", "Pod readiness gates.", 1)], _pod),
    "Node": ([("Status", "string", "The status of the node", 0),
              ("Roles", "string", "The roles of the node", 0), (*_AGE, 0),
              ("Version", "string", "Kubelet Version reported by the node.", 0),
              ("Internal-IP", "string", "List of internal IPs for the node.", 1),
              ("External-IP", "string", "List of external IPs for the node.", 1),
              ("OS-Image", "string", "OS image reported by the node.", 1),
              ("Kernel-Version", "string", "Kernel version reported by the node.", 1),
              ("Container-Runtime", "string", "Container runtime reported by the node.", 1)],
             _node),
    "Service": ([("Type", "string", "The type of the service.", 0),
                 ("Cluster-IP", "string", "The cluster IP of the service.", 0),
                 ("External-IP", "string", "The external IPs of the service.", 0),
                 ("Port(s)", "string", "The ports of the service.", 0), (*_AGE, 0),
                 ("Selector", "string", "The selector of the service.", 1)], _service),
    "ConfigMap": ([("Data", "string", "Number of keys in the config map.", 0), (*_AGE, 0)],
                  _configmap),
    "Secret": ([("Type", "string", "The type of the secret.", 0),
                ("Data", "string", "Number of items in the secret.", 0), (*_AGE, 0)], _secret),
    "EndpointSlice": ([("AddressType", "string", "Type of address in the slice.", 0),
                       ("Ports", "string", "Ports of the slice.", 0),
                       ("Endpoints", "string", "Addresses of the slice.", 0), (*_AGE, 0)],
                      _endpointslice),
}  # fmt: skip


def columns(kind: str) -> list[Obj]:
    return [_col(*_NAME)] + [_col(n, t, d, p) for n, t, d, p in PRINTERS[kind][0]]


def row(kind: str, obj: Obj, include: str) -> Obj:
    """One row; `include`: includeObject (None, Metadata (default), Object)."""
    meta = obj.get("metadata") or {}
    out: Obj = {"cells": [meta.get("name", ""), *PRINTERS[kind][1](obj)]}
    if include == "Object":
        out["object"] = obj
    elif include != "None":
        out["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": meta}  # fmt: skip
    return out


def table_head(kind: str, rv: str, cont: str, headers: bool = True) -> Obj:
    meta: Obj = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": columns(kind) if headers else None}  # fmt: skip
