"""tools/k3s_flags.py reads a flag's names as urfave/cli does, so the generated table holds the
config file keys k3s accepts (k3s reads config.yaml keys as flag names, pkg/configfilearg)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("tools_k3s_flags", REPO / "tools" / "k3s_flags.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)

# k3s pkg/cli/cmds/etcd_snapshot.go at 66a14f0e (urfave/cli v2): the Name has a trailing comma.
SNAPSHOT_RETENTION = """
		Name:        "snapshot-retention,",
		Aliases:     []string{"etcd-snapshot-retention"},
		Usage:       "(db) Number of snapshots to retain.",
		Destination: &ServerConfig.EtcdSnapshotRetention,
		Value:       defaultSnapshotRentention,
"""


def test_v2_name_with_a_trailing_comma_is_the_name_before_it():
    # urfave/cli v2 FlagNames cuts each name at its first comma or space: k3s etcd-snapshot
    # answers to --snapshot-retention and --etcd-snapshot-retention.
    flag = gen.parse_flag("IntFlag", SNAPSHOT_RETENTION, cli_v2=True)
    assert flag["names"] == ["snapshot-retention", "etcd-snapshot-retention"]
    assert gen.aliases([flag]) == {"etcd-snapshot-retention": "snapshot-retention"}
    assert gen.table([flag]) == {"etcd-snapshot-retention": "int", "snapshot-retention": "int"}


@pytest.mark.parametrize(
    ("name", "aliases", "cli_v2", "names"),
    [
        # v1: the Name carries the aliases, comma-separated, spaces trimmed (eachName).
        ("data-dir,d", [], False, ["data-dir", "d"]),
        ("data-dir, d", [], False, ["data-dir", "d"]),
        ("snapshot-retention,", [], False, ["snapshot-retention"]),
        # v2: aliases come from Aliases; a v1-style Name keeps only its first part.
        ("data-dir", ["d"], True, ["data-dir", "d"]),
        ("data-dir,d", [], True, ["data-dir"]),
        ("token-file, t", ["tf"], True, ["token-file", "tf"]),
    ],
)
def test_names_and_aliases_split_as_urfave_cli_does(name, aliases, cli_v2, names):
    assert gen.flag_names(name, aliases, cli_v2) == names


def test_committed_tables_hold_only_flag_names():
    # A flag name is what follows -- on the command line: no comma, no space.
    module = (
        REPO / "collections/ansible_collections/edgesite/fleet/plugins/module_utils/k3s_flags.py"
    ).read_text()
    data: dict = {}
    exec(compile(module, "k3s_flags.py", "exec"), data)
    for table in ("SERVER", "AGENT", "ETCD_SNAPSHOT"):
        for key, value in data[f"{table}_FLAGS"].items():
            assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", key), (table, key, value)
        for alias, name in data[f"{table}_ALIASES"].items():
            assert name in data[f"{table}_FLAGS"], (table, alias, name)
    assert data["ETCD_SNAPSHOT_ALIASES"]["etcd-snapshot-retention"] == "snapshot-retention"
