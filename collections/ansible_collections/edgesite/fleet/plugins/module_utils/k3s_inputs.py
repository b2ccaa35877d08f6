# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inputs that real k3s and the kubelet would refuse, checked on the controller first.

Kept free of Ansible imports (like site_model) so the same rules run in filter plugins, in the
preflight site model and in plain unit tests. Every rule follows the source named next to it;
every problem is a sentence naming the host, the variable, the key and the fix.
"""

from __future__ import annotations

import difflib
import re

from ansible_collections.edgesite.fleet.plugins.module_utils.k3s_flags import (
    AGENT_ALIASES,
    AGENT_FLAGS,
    K3S_VERSION,
    SERVER_ALIASES,
    SERVER_FLAGS,
    UNKNOWN_KEY_WARNING,
)

FLAGS = {"server": SERVER_FLAGS, "agent": AGENT_FLAGS}
ALIASES = {"server": SERVER_ALIASES, "agent": AGENT_ALIASES}

# config.yaml keys EdgeSite's own templates write (roles/k3s_server/templates/config.yaml.j2,
# roles/k3s_agent/templates/config.yaml.j2), with what to set instead. An extra-config key would
# replace EdgeSite's value (the templates combine() the extra config last).
_TOKEN = "edgesite_k3s_token (from Ansible Vault; EdgeSite writes it to a 0600 token file)"
_JOIN = "nothing: EdgeSite sets it from the site's masters (the first one starts the cluster)"
MANAGED_KEYS = {
    "server": {
        "node-name": "edgesite_node_name",
        "node-ip": "edgesite_node_ip",
        "token": _TOKEN,
        "token-file": _TOKEN,
        "data-dir": "k3s_server_data_dir",
        "https-listen-port": "k3s_server_api_port",
        "write-kubeconfig-mode": "nothing: EdgeSite keeps the admin kubeconfig at 0600",
        "tls-san": "edgesite_tls_san",
        "disable": "k3s_server_disable",
        "flannel-backend": "edgesite_flannel_backend",
        "kube-controller-manager-arg": "k3s_server_node_monitor_grace_period",
        "kube-apiserver-arg": (
            "k3s_server_not_ready_toleration_seconds / k3s_server_unreachable_toleration_seconds"
        ),
        "disable-kube-proxy": "k3s_server_disable_kube_proxy (follows edgesite_agent_enabled)",
        "node-label": "edgesite_node_labels",
        "node-taint": "edgesite_node_taints",
        "etcd-arg": "edgesite_etcd_profile / edgesite_etcd_network",
        "etcd-snapshot-schedule-cron": "k3s_server_etcd_snapshot_schedule_cron",
        "etcd-snapshot-retention": "k3s_server_etcd_snapshot_retention",
        "cluster-init": _JOIN,
        "server": _JOIN,
        "datastore-endpoint": "edgesite_datastore: external (k3s_server_datastore_endpoint)",
        "datastore-cafile": "edgesite_datastore: external (k3s_server_datastore_cafile)",
        "datastore-certfile": "edgesite_datastore: external (k3s_server_datastore_certfile)",
        "datastore-keyfile": "edgesite_datastore: external (k3s_server_datastore_keyfile)",
    },
    "agent": {
        "server": "nothing: EdgeSite points agents at their site's masters (or edgesite_site_vip)",
        "token": _TOKEN,
        "token-file": _TOKEN,
        "node-name": "edgesite_node_name",
        "node-ip": "edgesite_node_ip",
        "node-label": "edgesite_node_labels",
        "node-taint": "edgesite_node_taints",
    },
}
# List flags EdgeSite fills may still be extended: k3s appends the values of a "key+" entry to
# the key's list (pkg/configfilearg/parser.go readConfigFile). Labels and taints may not: they
# must pass the label and taint rules below.
APPENDABLE_MANAGED = frozenset(
    ("tls-san", "disable", "kube-controller-manager-arg", "kube-apiserver-arg", "etcd-arg")
)

# Go's time.ParseDuration syntax (urfave/cli DurationFlag): "90s", "1h30m", "0".
_DURATION = re.compile(r"^[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h))+)$")


def _scalar(value):
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _type_problem(kind, value):
    """What is wrong with a config value for a flag of this kind, or None.

    k3s turns each value into '--key=<value>' (lists: one per item) and urfave/cli parses it
    with the flag's type; a value that does not parse stops k3s, server and agent alike.
    """
    if value is None:
        return "has no value (YAML null)"
    if kind == "bool":
        if not isinstance(value, bool):
            return f"is a bool flag; give true or false (unquoted), not {value!r}"
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"is an int flag; give a whole number, not {value!r}"
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"is a number flag; give a number, not {value!r}"
    elif kind == "duration":
        if not (value == 0 or (isinstance(value, str) and _DURATION.match(value))):
            return f"is a duration flag; give a Go duration such as '90s' or '5m', not {value!r}"
    elif kind.endswith("-slice"):
        items = value if isinstance(value, list) else [value]
        if not all(_scalar(item) for item in items):
            return "is a list flag; give a list of strings or one string"
    elif not _scalar(value):
        return f"is a single-value flag; give one string, not a {type(value).__name__}"
    return None


def _nearest(key, names):
    # Single-letter aliases ('d', 's', ...) are never what a misspelt key meant.
    candidates = [n for n in names if len(n) > 1]
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return match[0] if match else None


def _prefix(host, site):
    return f"site '{site}': host '{host}'" if site is not None else f"host '{host}'"


def extra_config_problems(config, role, host, variable, site=None):
    """Problems of one host's k3s extra config (k3s_server_extra_config / k3s_agent_extra_config).

    role: 'server' or 'agent'. Messages never show the value of a string or list flag (it may
    be a secret, e.g. etcd-s3-secret-key); bool, int and duration values are shown.
    """
    if role not in FLAGS:
        raise ValueError(f"role must be 'server' or 'agent', not {role!r}")
    where = _prefix(host, site)
    if config in (None, ""):
        return []
    if not isinstance(config, dict):
        return [
            f"{where}: {variable} must be a mapping of k3s {role} flags to values "
            f"(keys of /etc/rancher/k3s/config.yaml), not a {type(config).__name__}"
        ]
    flags, aliases, managed = FLAGS[role], ALIASES[role], MANAGED_KEYS[role]
    other = "agent" if role == "server" else "server"
    problems = []
    for raw_key, value in config.items():
        key = str(raw_key)
        appends = key.endswith("+")
        name = key[:-1] if appends else key
        canonical = aliases.get(name, name)
        if name not in flags:
            problems.append(_unknown_key(where, variable, role, other, key, name))
            continue
        if canonical in managed and not (appends and canonical in APPENDABLE_MANAGED):
            if appends:
                why = "which adds to a key EdgeSite itself manages, bypassing its checks"
            else:
                why = (
                    "which EdgeSite itself manages in config.yaml (your value would replace "
                    "EdgeSite's)"
                )
            hint = ""
            if canonical in APPENDABLE_MANAGED:
                hint = f", or add to EdgeSite's list with the key '{canonical}+' (k3s appends it)"
            problems.append(
                f"{where}: {variable} sets '{key}', {why}; set {managed[canonical]} instead{hint}"
            )
            continue
        wrong = _type_problem(flags[name], value)
        if wrong:
            problems.append(
                f"{where}: {variable} key '{key}' {wrong}; k3s {role} would fail to parse it "
                "and not start"
            )
    return problems


def _unknown_key(where, variable, role, other, key, name):
    if role == "server":
        effect = (
            "k3s server skips it, logging only '"
            + UNKNOWN_KEY_WARNING.replace("%s", "--" + name)
            + "', so the setting silently does nothing"
        )
    else:
        effect = (
            f"k3s agent exits at start with 'flag provided but not defined: -{name}' "
            "(agents pass every config key on as a flag)"
        )
    nearest = _nearest(name, FLAGS[role])
    if name in FLAGS[other]:
        fix = f"it is a k3s {other} flag only: set it in k3s_{other}_extra_config"
        if nearest:
            fix += f" (nearest {role} flag: '{nearest}')"
    elif nearest:
        fix = f"did you mean '{nearest}'?"
    else:
        fix = f"see 'k3s {role} --help' of {K3S_VERSION} for the valid flags"
    return (
        f"{where}: {variable} key '{key}' is not a k3s {role} flag of {K3S_VERSION}: "
        f"{effect}; {fix}"
    )


# --- Kubernetes names ------------------------------------------------------------------------
# k8s.io/apimachinery/pkg/util/validation/validation.go: IsQualifiedName, IsValidLabelValue,
# IsDNS1123Subdomain, IsDNS1123Label.
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1123_LABEL_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL_FMT}(\.{_DNS1123_LABEL_FMT})*$")
_DNS1123_LABEL = re.compile(rf"^{_DNS1123_LABEL_FMT}$")
_NAME_RULE = (
    "at most 63 characters: letters, digits, '-', '_' and '.', starting and ending with a "
    "letter or digit"
)


def qualified_name_errors(key):
    """validation.IsQualifiedName: [prefix/]name, prefix a DNS-1123 subdomain (<= 253)."""
    errors = []
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("the prefix before '/' must not be empty")
        elif len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix):
            errors.append(
                f"the prefix '{prefix}' must be a DNS subdomain (lowercase letters, digits, '-' "
                "and '.', at most 253 characters)"
            )
    else:
        return ["a key has at most one '/' (an optional DNS prefix, then the name)"]
    if not name:
        errors.append("the name part must not be empty")
    elif len(name) > 63 or not _QUALIFIED_NAME.match(name):
        errors.append(f"the name part '{name}' must be {_NAME_RULE}")
    return errors


def label_value_errors(value):
    """validation.IsValidLabelValue: empty, or a qualified name's name part."""
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        return [f"the value '{value}' must be empty or {_NAME_RULE}"]
    return []


# staging/src/k8s.io/kubelet/pkg/apis/well_known_labels.go (kubeletLabels,
# kubeletLabelNamespaces, IsKubeletLabel) with k8s.io/api/core/v1/well_known_labels.go's values.
KUBELET_LABELS = frozenset(
    (
        "kubernetes.io/hostname",  # v1.LabelHostname
        "topology.kubernetes.io/zone",  # v1.LabelTopologyZone
        "topology.kubernetes.io/region",  # v1.LabelTopologyRegion
        "failure-domain.beta.kubernetes.io/zone",  # v1.LabelFailureDomainBetaZone
        "failure-domain.beta.kubernetes.io/region",  # v1.LabelFailureDomainBetaRegion
        "beta.kubernetes.io/instance-type",  # v1.LabelInstanceType
        "node.kubernetes.io/instance-type",  # v1.LabelInstanceTypeStable
        "kubernetes.io/os",  # v1.LabelOSStable
        "kubernetes.io/arch",  # v1.LabelArchStable
        "beta.kubernetes.io/os",  # LabelOS
        "beta.kubernetes.io/arch",  # LabelArch
    )
)
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")
NODE_ROLE_PREFIX = "node-role.kubernetes.io"


def _label_namespace(key):
    # getLabelNamespace: the part before the first '/', or "".
    parts = key.split("/", 1)
    return parts[0] if len(parts) == 2 else ""


def is_kubernetes_label(key):
    """cmd/kubelet/app/options/options.go isKubernetesLabel."""
    namespace = _label_namespace(key)
    return namespace in ("kubernetes.io", "k8s.io") or namespace.endswith(
        (".kubernetes.io", ".k8s.io")
    )


def is_kubelet_label(key):
    """staging/src/k8s.io/kubelet/pkg/apis/well_known_labels.go IsKubeletLabel."""
    if key in KUBELET_LABELS:
        return True
    namespace = _label_namespace(key)
    return any(
        namespace == allowed or namespace.endswith("." + allowed)
        for allowed in KUBELET_LABEL_NAMESPACES
    )


def node_label_problems(labels, host, variable="edgesite_node_labels", site=None):
    """Labels the kubelet would refuse to start with (k3s passes node-label to --node-labels).

    cmd/kubelet/app/options/options.go ValidateKubeletFlags: every key must be a qualified name,
    every value a label value, and a key in the kubernetes.io / k8s.io namespaces (the domain
    or a subdomain of it) must be one the kubelet may set on itself (IsKubeletLabel). Role labels
    (node-role.kubernetes.io) are the exception: EdgeSite sets them through the API.
    """
    where = _prefix(host, site)
    if labels in (None, ""):
        return []
    if not isinstance(labels, dict):
        return [f"{where}: {variable} must be a mapping of label keys to values"]
    problems = []
    for key, value in labels.items():
        if not isinstance(key, str):
            problems.append(f"{where}: {variable} key {key!r} must be a string")
            continue
        said = f"{where}: {variable} label '{key}'"
        errors = qualified_name_errors(key)
        if value is None or isinstance(value, bool) or not _scalar(value):
            errors.append(
                f"the value {value!r} must be a string (quote it: YAML turns yes/true/null "
                "into other types)"
            )
        else:
            errors.extend(label_value_errors(str(value)))
        if errors:
            problems.append(f"{said} is not a valid Kubernetes label: " + "; ".join(errors))
            continue
        namespace = _label_namespace(key)
        if namespace == NODE_ROLE_PREFIX or namespace.endswith("." + NODE_ROLE_PREFIX):
            # The kubelet may not set a role label on itself; EdgeSite keeps it out of k3s's
            # node-label and sets it through the API (module_utils/node_metadata.py).
            continue
        if is_kubernetes_label(key) and not is_kubelet_label(key):
            problems.append(
                f"{said}: the kubelet refuses to start with labels in the kubernetes.io or "
                "k8s.io namespaces except the ones it may set on itself ("
                + ", ".join(sorted(KUBELET_LABELS))
                + ", or keys under "
                + " / ".join(KUBELET_LABEL_NAMESPACES)
                + f"); use a prefix of your own, e.g. 'example.com/{key.split('/', 1)[1]}'"
            )
    return problems


# pkg/util/taints/taints.go parseTaint / validateTaintEffect, and
# pkg/apis/core/validation/validation.go validateNodeTaints (effect required, key+effect unique).
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def node_taint_problems(taints, host, variable="edgesite_node_taints", site=None):
    """Taints (key[=value]:Effect) the kubelet or the API server would refuse."""
    where = _prefix(host, site)
    if taints in (None, ""):
        return []
    if isinstance(taints, str) or not isinstance(taints, list):
        return [f"{where}: {variable} must be a list of taints, each 'key[=value]:Effect'"]
    problems, seen = [], {}
    for entry in taints:
        if not isinstance(entry, str):
            problems.append(f"{where}: {variable} entry {entry!r} must be a string")
            continue
        # k3s's node-taint is a string slice: urfave/cli splits each entry at commas.
        for spec in entry.split(","):
            error, taint = _parse_taint(spec)
            if error:
                problems.append(
                    f"{where}: {variable} taint '{spec}' is not valid: {error} (the form is "
                    f"key[=value]:Effect, Effect one of {', '.join(TAINT_EFFECTS)}; e.g. "
                    "'dedicated=camera:NoSchedule')"
                )
            elif taint in seen:
                problems.append(
                    f"{where}: {variable} has the taint key '{taint[0]}' with effect "
                    f"{taint[1]} twice ('{seen[taint]}' and '{spec}'); Kubernetes requires "
                    "taints to be unique by key and effect"
                )
            else:
                seen[taint] = spec
    return problems


def _parse_taint(spec):
    parts = spec.split(":")
    if len(parts) == 1:
        return "it has no effect (':NoSchedule', ':PreferNoSchedule' or ':NoExecute')", None
    if len(parts) > 2:
        return "it has more than one ':'", None
    key_value, effect = parts
    if effect not in TAINT_EFFECTS:
        return f"the effect '{effect}' is not one of {', '.join(TAINT_EFFECTS)}", None
    key, _eq, value = key_value.partition("=")
    if "=" in value:
        return "it has more than one '='", None
    errors = qualified_name_errors(key) + label_value_errors(value)
    if errors:
        return "; ".join(errors), None
    return None, (key, effect)


def site_name_problems(site):
    """edgesite_site names files, inventory groups and kubeconfig contexts: a DNS-1123 label."""
    name = str(site)
    if len(name) <= 63 and _DNS1123_LABEL.match(name):
        return []
    return [
        f"site '{name}': edgesite_site {name!r} is not a valid site name: it must be a DNS "
        "label (at most 63 characters: lowercase letters, digits and '-', starting and ending "
        "with a letter or digit), because EdgeSite uses it in file names, group names and "
        f"kubeconfig names. Use e.g. '{suggest_site_name(name)}'"
    ]


def suggest_site_name(name):
    fixed = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    fixed = re.sub(r"-{2,}", "-", fixed)[:63].strip("-")
    return fixed or "site-1"
