"""Inputs real k3s or the kubelet would refuse, caught on the controller (module_utils/k3s_inputs,
the filters that expose it, and the site model that collects it per site).

Each rule follows the source named in k3s_inputs.py: k3s's flag tables (generated from k3s's
pkg/cli/cmds by tools/k3s_flags.py) and pkg/configfilearg; Kubernetes' label, taint and kubelet
validation.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.edgesite.fleet.plugins.module_utils import k3s_flags, k3s_inputs
from ansible_collections.edgesite.fleet.plugins.module_utils.site_model import (
    site_problems_by_site,
)

REPO = Path(__file__).resolve().parents[2]
FILTERS = "ansible_collections.edgesite.fleet.plugins.filter."


def extra(config, role="server", host="m1", site=None):
    return k3s_inputs.extra_config_problems(config, role, host, f"k3s_{role}_extra_config", site)


# --- the generated flag table ----------------------------------------------------------------


def test_flag_table_has_kinds_names_and_aliases():
    assert k3s_flags.K3S_VERSION == "v1.36.4+k3s1"
    assert len(k3s_flags.SOURCE["commit"]) == 40
    server, agent = k3s_flags.SERVER_FLAGS, k3s_flags.AGENT_FLAGS
    assert server["cluster-init"] == "bool"
    assert server["https-listen-port"] == "int"
    assert server["etcd-s3-timeout"] == "duration"
    assert server["tls-san"] == "string-slice"
    assert server["datastore-endpoint"] == "string"
    # Aliases count as flags (k3s filters on f.Names()), hidden flags too.
    assert server["d"] == server["data-dir"] == "string"
    assert "kine-tls" in server
    assert agent["kubelet-arg"] == "string-slice"
    assert "cluster-init" not in agent
    assert k3s_flags.CONFIG_FILTERED_COMMANDS == ("server", "etcd-snapshot")
    assert k3s_flags.UNKNOWN_KEY_WARNING == "Unknown flag %s found in config.yaml, skipping"


GO_V1 = """package cmds
import "github.com/urfave/cli"
var (
\tNodeNameFlag = &cli.StringFlag{
\t\tName:  "node-name",
\t\tUsage: "(agent/node) Node name, with a } and a // in it",
\t}
)
func NewAgentCommand(action func(ctx *cli.Context) error) cli.Command {
\treturn cli.Command{
\t\tFlags: []cli.Flag{
\t\t\tNodeNameFlag,
\t\t\t// a comment, with a comma
\t\t\tcli.StringFlag{Name: "data-dir,d", Hidden: true},
\t\t\t&cli.BoolTFlag{Name: "selinux"},
\t\t},
\t}
}
var ServerFlags = []cli.Flag{NodeNameFlag, &cli.DurationFlag{Name: "etcd-s3-timeout"}}
var EtcdSnapshotFlags = []cli.Flag{&cli.IntFlag{Name: "snapshot-retention"}}
"""
GO_V2_SNAPSHOT = """package cmds
import "github.com/urfave/cli/v2"
var EtcdSnapshotFlags = []cli.Flag{
\t&cli.IntFlag{
\t\tName:    "snapshot-retention,",
\t\tAliases: []string{"etcd-snapshot-retention"},
\t},
}
"""
PARSER = 'logrus.Warnf("Unknown flag %s found in config.yaml, skipping\\n", x)\n'
DEFAULT_PARSER = (
    "\tValidFlags:    map[string][]cli.Flag{"
    '"server": cmds.ServerFlags, "etcd-snapshot": cmds.EtcdSnapshotFlags},\n'
)


def test_generator_reads_urfave_cli_v1_and_v2_literals(tmp_path):
    (tmp_path / "pkg/cli/cmds").mkdir(parents=True)
    (tmp_path / "pkg/configfilearg").mkdir(parents=True)
    (tmp_path / "pkg/cli/cmds/agent.go").write_text(GO_V1)
    (tmp_path / "pkg/configfilearg/parser.go").write_text(PARSER)
    (tmp_path / "pkg/configfilearg/defaultparser.go").write_text(DEFAULT_PARSER)
    out = tmp_path / "flags.py"
    files = ["pkg/cli/cmds/agent.go", "pkg/configfilearg/parser.go"]
    files.append("pkg/configfilearg/defaultparser.go")
    cmd = [sys.executable, str(REPO / "tools/k3s_flags.py"), "--root", str(tmp_path)]
    cmd += ["--commit", "0" * 40, "--output", str(out), *files]
    subprocess.run(cmd, check=True, capture_output=True)
    data = {}
    exec(out.read_text(), data)
    assert data["AGENT_FLAGS"] == {
        "d": "string",
        "data-dir": "string",
        "node-name": "string",
        "selinux": "bool",
    }
    assert data["AGENT_ALIASES"] == {"d": "data-dir"}
    assert data["SERVER_FLAGS"] == {"etcd-s3-timeout": "duration", "node-name": "string"}
    assert data["UNKNOWN_KEY_WARNING"] == "Unknown flag %s found in config.yaml, skipping"
    # urfave/cli v2 cuts a Name at its first comma (k3s's own Name is "snapshot-retention,").
    (tmp_path / "pkg/cli/cmds/etcd_snapshot.go").write_text(GO_V2_SNAPSHOT)
    (tmp_path / "pkg/cli/cmds/agent.go").write_text(GO_V1.replace("var EtcdSnapshotFlags", "//"))
    subprocess.run([*cmd, "pkg/cli/cmds/etcd_snapshot.go"], check=True, capture_output=True)
    data = {}
    exec(out.read_text(), data)
    assert set(data["ETCD_SNAPSHOT_FLAGS"]) == {"snapshot-retention", "etcd-snapshot-retention"}


def test_committed_table_is_what_the_generator_writes():
    # The module docstring of tools/k3s_flags.py names the command; the table is its output.
    text = (
        REPO / "collections/ansible_collections/edgesite/fleet/plugins/module_utils/k3s_flags.py"
    ).read_text()
    assert text.startswith('"""k3s CLI flags of the pinned release, generated by tools/k3s_flags')
    assert k3s_flags.SOURCE["generator"] == "tools/k3s_flags.py"


# --- extra config ----------------------------------------------------------------------------


def test_valid_extra_configs_pass():
    assert (
        extra(
            {
                "secrets-encryption": True,
                "etcd-s3-timeout": "5m30s",
                "etcd-snapshot-reconcile-interval": 0,
                "kube-scheduler-arg": ["v=2"],
                "kube-apiserver-arg+": ["audit-log-maxage=30"],
                "cluster-cidr": "10.52.0.0/16",
                "advertise-port": 6443,
                "write-kubeconfig-group": "admins",
            }
        )
        == []
    )
    assert extra({"kubelet-arg": "max-pods=50", "data-dir": "/srv/k3s"}, role="agent") == []
    assert extra({}) == [] and extra(None) == []


def test_unknown_server_key_is_skipped_by_k3s_and_named_with_the_nearest_flag():
    [problem] = extra({"flannel-backnd": "host-gw"}, site="store-1")
    assert problem.startswith("site 'store-1': host 'm1': k3s_server_extra_config key 'flannel-")
    assert "'flannel-backnd' is not a k3s server flag of v1.36.4+k3s1" in problem
    assert "Unknown flag --flannel-backnd found in config.yaml, skipping" in problem
    assert "silently does nothing" in problem
    assert "did you mean 'flannel-backend'?" in problem


def test_unknown_agent_key_stops_the_agent_and_is_named_with_the_nearest_flag():
    [problem] = extra({"kubelet-args": ["max-pods=50"]}, role="agent", host="w1")
    assert "host 'w1': k3s_agent_extra_config key 'kubelet-args' is not a k3s agent flag" in problem
    assert "flag provided but not defined: -kubelet-args" in problem
    assert "did you mean 'kubelet-arg'?" in problem


def test_server_only_flag_in_agent_config_points_at_the_server_variable():
    [problem] = extra({"disable": ["traefik"]}, role="agent", host="w1")
    assert "flag provided but not defined: -disable" in problem
    assert "it is a k3s server flag only: set it in k3s_server_extra_config" in problem


def test_key_without_any_near_flag_points_at_k3s_help():
    [problem] = extra({"zzzz-qqqq": 1})
    assert "see 'k3s server --help' of v1.36.4+k3s1" in problem


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("secrets-encryption", "yes", "is a bool flag; give true or false (unquoted), not 'yes'"),
        ("etcd-s3-retention", "5", "is an int flag; give a whole number, not '5'"),
        ("advertise-port", True, "is an int flag"),
        ("etcd-s3-timeout", 300, "is a duration flag; give a Go duration such as '90s'"),
        ("etcd-s3-timeout", "5 minutes", "is a duration flag"),
        ("kube-scheduler-arg", {"v": 2}, "is a list flag; give a list of strings or one string"),
        ("kube-scheduler-arg", [["v=2"]], "is a list flag"),
        ("etcd-s3-secret-key", ["a", "b"], "is a single-value flag; give one string, not a list"),
        ("etcd-s3-bucket", None, "has no value (YAML null)"),
    ],
)
def test_values_are_type_checked(key, value, expected):
    [problem] = extra({key: value})
    assert f"k3s_server_extra_config key '{key}' {expected}" in problem
    assert "would fail to parse it and not start" in problem


def test_a_secret_value_never_appears_in_a_message():
    [problem] = extra({"etcd-s3-secret-key": ["s3cr3t-value"]})
    assert "s3cr3t-value" not in problem


@pytest.mark.parametrize(
    ("role", "key", "variable"),
    [
        ("server", "node-name", "edgesite_node_name"),
        ("server", "token", "edgesite_k3s_token"),
        ("server", "token-file", "edgesite_k3s_token"),
        ("server", "t", "edgesite_k3s_token"),  # alias of token
        ("server", "d", "k3s_server_data_dir"),  # alias of data-dir
        ("server", "server", "EdgeSite sets it from the site's masters"),
        ("server", "cluster-init", "EdgeSite sets it from the site's masters"),
        ("server", "datastore-endpoint", "edgesite_datastore: external"),
        ("server", "node-label", "edgesite_node_labels"),
        ("server", "node-taint+", "edgesite_node_taints"),
        ("agent", "server", "EdgeSite points agents at their site's masters"),
        ("agent", "node-ip", "edgesite_node_ip"),
        ("agent", "node-label", "edgesite_node_labels"),
    ],
)
def test_keys_edgesite_manages_are_refused_naming_the_variable(role, key, variable):
    [problem] = extra({key: "x"}, role=role)
    assert f"k3s_{role}_extra_config sets '{key}'" in problem
    assert "EdgeSite itself manages" in problem
    assert variable in problem


def test_managed_list_flags_can_be_extended_with_a_plus_key():
    [problem] = extra({"kube-apiserver-arg": ["audit-log-maxage=30"]})
    assert "k3s_server_not_ready_toleration_seconds" in problem
    assert "with the key 'kube-apiserver-arg+' (k3s appends it)" in problem
    assert extra({"kube-apiserver-arg+": ["audit-log-maxage=30"], "tls-san+": ["x"]}) == []


# --- node labels -----------------------------------------------------------------------------


def labels(mapping, variable="edgesite_node_labels"):
    return k3s_inputs.node_label_problems(mapping, "w1", variable)


def test_valid_labels_pass():
    assert (
        labels(
            {
                "topology.kubernetes.io/zone": "shelf-2",
                "kubernetes.io/arch": "arm64",
                "node.kubernetes.io/instance-type": "rpi5",
                "store.node.kubernetes.io/aisle": "7",  # subdomain of an allowed namespace
                "kubelet.kubernetes.io/x": "",
                "beta.kubernetes.io/os": "linux",
                "example.com/camera": "yes",
                "camera": "",
                "tier": 1,
                "a" * 63: "b" * 63,
                ("p" * 253) + "/n": "v",
            }
        )
        == []
    )


@pytest.mark.parametrize(
    "key",
    [
        "kubernetes.io/role",
        "k8s.io/owner",
        "custom.k8s.io/x",
        "beta.kubernetes.io/fluentd-ds-ready",  # beta.kubernetes.io/* is not allowed as a whole
        "node-restriction.kubernetes.io/team",
        "kubernetes.io/hostname-x",
    ],
)
def test_labels_the_kubelet_may_not_set_on_itself_are_refused(key):
    [problem] = labels({key: "a"})
    assert f"host 'w1': edgesite_node_labels label '{key}'" in problem
    assert "the kubelet refuses to start with labels in the kubernetes.io or k8s.io" in problem
    assert "kubelet.kubernetes.io / node.kubernetes.io" in problem
    assert f"e.g. 'example.com/{key.split('/')[1]}'" in problem


def test_node_role_labels_are_accepted_edgesite_sets_them_through_the_api():
    assert labels({"node-role.kubernetes.io/worker": ""}, "k3s_agent_node_labels") == []
    assert labels({"edge.node-role.kubernetes.io/cam": "true"}) == []


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("Zone_/x", "a", "the prefix 'Zone_' must be a DNS subdomain"),
        ("/x", "a", "the prefix before '/' must not be empty"),
        ("example.com/", "a", "the name part must not be empty"),
        ("a/b/c", "a", "a key has at most one '/'"),
        ("-zone", "a", "the name part '-zone' must be at most 63 characters"),
        ("a" * 64, "a", "must be at most 63 characters"),
        (("p" * 254) + "/n", "a", "must be a DNS subdomain"),
        ("zone", "-a", "the value '-a' must be empty or at most 63 characters"),
        ("zone", "b" * 64, "must be empty or at most 63 characters"),
        ("zone", "a b", "the value 'a b' must be empty"),
        ("zone", True, "the value True must be a string (quote it"),
        ("zone", None, "the value None must be a string"),
    ],
)
def test_labels_are_checked_by_kubernetes_name_rules(key, value, expected):
    [problem] = labels({key: value})
    assert "is not a valid Kubernetes label" in problem
    assert expected in problem


# --- node taints -----------------------------------------------------------------------------


def taints(specs):
    return k3s_inputs.node_taint_problems(specs, "w1")


def test_valid_taints_pass():
    assert (
        taints(
            [
                "dedicated=camera:NoSchedule",
                "example.com/gpu:NoExecute",
                "edge=:PreferNoSchedule",
                "a=1:NoSchedule,b:NoExecute",
                "dedicated=camera:NoExecute",  # same key, other effect
            ]
        )
        == []
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("dedicated=camera:NoSchedul", "the effect 'NoSchedul' is not one of NoSchedule"),
        ("dedicated=camera", "it has no effect"),
        ("a:b:NoSchedule", "more than one ':'"),
        ("a=b=c:NoSchedule", "more than one '='"),
        ("-a:NoSchedule", "the name part '-a'"),
        ("a=has space:NoSchedule", "the value 'has space'"),
        ("Bad_/a:NoExecute", "the prefix 'Bad_' must be a DNS subdomain"),
    ],
)
def test_bad_taints_are_refused(spec, expected):
    [problem] = taints([spec])
    assert f"host 'w1': edgesite_node_taints taint '{spec}' is not valid" in problem
    assert expected in problem
    assert "e.g. 'dedicated=camera:NoSchedule'" in problem


def test_taints_must_be_unique_by_key_and_effect():
    [problem] = taints(["a=1:NoSchedule", "a=2:NoSchedule"])
    assert "the taint key 'a' with effect NoSchedule twice" in problem


def test_taints_must_be_a_list_of_strings():
    assert "must be a list of taints" in taints("a:NoSchedule")[0]
    assert "entry 5 must be a string" in taints([5])[0]


# --- site name -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "store-0042", "a", "x" * 63, "42"])
def test_valid_site_names_pass(name):
    assert k3s_inputs.site_name_problems(name) == []


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("Store_42", "store-42"),
        ("store.42", "store-42"),
        ("-store", "store"),
        ("x" * 64, "x" * 63),
        ("store 42!", "store-42"),
        ("___", "site-1"),
    ],
)
def test_bad_site_names_show_the_name_and_a_fix(name, suggestion):
    [problem] = k3s_inputs.site_name_problems(name)
    assert f"edgesite_site {name!r} is not a valid site name" in problem
    assert "file names, group names and kubeconfig names" in problem
    assert f"Use e.g. '{suggestion}'" in problem
    assert k3s_inputs.site_name_problems(suggestion) == []


# --- the filters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plugin", "args", "expected"),
    [
        (
            "k3s_extra_config_problems",
            ({"kubelet-args": []}, "agent", "w1", "k3s_agent_extra_config", "s1"),
            "site 's1': host 'w1': k3s_agent_extra_config key 'kubelet-args'",
        ),
        (
            "node_label_problems",
            ({"kubernetes.io/role": "x"}, "w1"),
            "host 'w1': edgesite_node_labels label 'kubernetes.io/role'",
        ),
        (
            "node_taint_problems",
            (["a:Never"], "w1"),
            "host 'w1': edgesite_node_taints taint 'a:Never' is not valid",
        ),
        ("site_name_problems", ("Store_1",), "site 'Store_1': edgesite_site 'Store_1' is not"),
    ],
)
def test_filters_expose_the_rules(plugin, args, expected):
    module = importlib.import_module(FILTERS + plugin)
    assert module.DOCUMENTATION and module.EXAMPLES and module.RETURN
    [problem] = module.FilterModule().filters()[plugin](*args)
    assert problem.startswith(expected)


# --- the site model collects them per site ---------------------------------------------------


def record(host, site="s1", master=True, **extra_fields):
    base = {
        "host": host,
        "site": site,
        "is_master": master,
        "is_worker": not master,
        "node_name": host,
        "node_ip": "10.0.0.1" if master else "10.0.0.2",
        "datastore": "embedded",
        "k3s_version": "v1.36.4+k3s1",
        "etcd_witness": "",
        "etcd_two_member_risk_acknowledged": False,
        "site_vip": "",
        "tls_san": [],
    }
    return base | extra_fields


GROUPS = ["edgesite_masters", "edgesite_workers"]


def test_site_model_reports_labels_taints_and_extra_config_of_the_host_site_only():
    bad = record(
        "w1",
        master=False,
        node_labels={"kubernetes.io/role": "cam"},
        node_labels_variable="k3s_agent_node_labels",
        node_taints=["x:Never"],
        extra_config_problems=["site 's1': host 'w1': from the filter"],
    )
    good = [record("m2", site="s2"), record("w2", site="s2", master=False)]
    by_site = site_problems_by_site([record("m1"), bad, *good], GROUPS)
    assert set(by_site) == {"s1"}
    problems = by_site["s1"]
    assert "site 's1': host 'w1': from the filter" in problems
    assert any("host 'w1': k3s_agent_node_labels label 'kubernetes.io/role'" in p for p in problems)
    assert any("host 'w1': edgesite_node_taints taint 'x:Never'" in p for p in problems)


def test_site_model_refuses_a_bad_site_name():
    by_site = site_problems_by_site([record("m1", site="Store_1")], GROUPS)
    assert "edgesite_site 'Store_1' is not a valid site name" in by_site["Store_1"][0]
    assert site_problems_by_site([record("m1", site="store-1")], GROUPS) == {}
