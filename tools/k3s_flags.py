#!/usr/bin/env python3
"""Generate EdgeSite's table of k3s CLI flags from k3s's own Go source.

k3s reads /etc/rancher/k3s/config.yaml as if every key were a command-line flag
(pkg/configfilearg). What happens to a key depends on the command:

- ``k3s server`` (and ``k3s etcd-snapshot``): pkg/configfilearg/defaultparser.go lists the
  command's flags in ``ValidFlags``; parser.go ``stripInvalidFlags`` drops every key that is not
  one of them (or an alias) and only logs
  ``logrus.Warnf("Unknown flag %s found in config.yaml, skipping\\n", ...)``.
- ``k3s agent`` has no ``ValidFlags`` entry, so every key is passed on to urfave/cli, which
  stops the agent with ``flag provided but not defined: -<key>``.

Both then parse the values with the flag's type (a bool flag given "yes" fails to start).
This tool reads the flag definitions (``&cli.StringFlag{Name: ..., Aliases: ...}`` literals,
urfave/cli v1 ``Name: "data-dir,d"`` or v2 ``Aliases: []string{"d"}``, hidden flags included)
from the Go files given, resolves the flag lists of ``ServerFlags``, ``NewAgentCommand`` and
``EtcdSnapshotFlags``, and writes a pure-data Python module for the edgesite.fleet collection
(and for the k3s test stand-in).

The committed data module was generated with (the Go files taken from k3s main at commit
66a14f0e872c3fa6f7817ad4d81d3c15134dfb56, saved under /tmp/k3s-src/tree with their repository
paths; see SOURCE in the generated module for what that commit is and is not):

    python3 tools/k3s_flags.py --root /tmp/k3s-src/tree \\
        --commit 66a14f0e872c3fa6f7817ad4d81d3c15134dfb56 \\
        --repository https://github.com/k3s-io/k3s \\
        --note "k3s main as of 2026-07-28 (go.mod: k8s.io/kubernetes v1.36.3, the 1.36 line), \\
read from the fork manuelbuil/k3s, which mirrors k3s-io/k3s main; not the v1.36.4+k3s1 tag \\
nor the release-1.36 branch" \\
        --output collections/ansible_collections/edgesite/fleet/plugins/module_utils/k3s_flags.py \\
        pkg/cli/cmds/*.go pkg/configfilearg/parser.go pkg/configfilearg/defaultparser.go

The output needs no formatting: it is written as ruff format would write it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

K3S_VERSION = "v1.36.4+k3s1"

# urfave/cli flag types (v1 and v2) -> the value kind EdgeSite checks.
FLAG_TYPES = {
    "StringFlag": "string",
    "PathFlag": "string",
    "BoolFlag": "bool",
    "BoolTFlag": "bool",
    "BoolWithInverseFlag": "bool",
    "IntFlag": "int",
    "Int64Flag": "int",
    "UintFlag": "int",
    "Uint64Flag": "int",
    "DurationFlag": "duration",
    "Float64Flag": "float",
    "StringSliceFlag": "string-slice",
    "IntSliceFlag": "int-slice",
    "Int64SliceFlag": "int-slice",
    "Float64SliceFlag": "float-slice",
    "GenericFlag": "generic",
    "TimestampFlag": "timestamp",
}

_FLAG_LITERAL = re.compile(r"&?cli\.(\w+Flag)\s*\{")
_VAR_FLAG = re.compile(r"\b([A-Za-z_]\w*)\s*=\s*&?cli\.(\w+Flag)\s*\{")
_FLAG_LIST = re.compile(r"\[\]cli\.Flag\s*\{")


def _skip_string(text: str, i: int) -> int:
    """Return the index just after the Go string literal starting at text[i]."""
    quote = text[i]
    i += 1
    while i < len(text):
        if quote == '"' and text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    raise ValueError("unterminated string literal")


def _block(text: str, start: int) -> tuple[str, int]:
    """text[start] is '{': return the block's inner text and the index after its '}'."""
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch in '"`':
            i = _skip_string(text, i)
            continue
        if text.startswith("//", i):
            i = text.index("\n", i)
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    raise ValueError("unbalanced braces")


def _split_items(body: str) -> list[str]:
    """Split a composite literal's body at its top-level commas."""
    items, depth, current, i = [], 0, [], 0
    while i < len(body):
        ch = body[i]
        if ch in '"`':
            end = _skip_string(body, i)
            current.append(body[i:end])
            i = end
            continue
        if body.startswith("//", i):
            i = body.find("\n", i)
            if i < 0:
                break
            continue
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    if "".join(current).strip():
        items.append("".join(current).strip())
    return [item for item in items if item]


def _go_string(expr: str) -> str:
    expr = expr.strip()
    match = re.fullmatch(r'"((?:[^"\\]|\\.)*)"|`([^`]*)`', expr)
    if not match:
        raise ValueError(f"not a string literal: {expr!r}")
    return match.group(1) if match.group(1) is not None else match.group(2)


# urfave/cli v2 flag.go: FlagNames cuts every name at its first comma or space.
_V2_NAME_CUT = re.compile(r"[, ]+.*", re.S)


def flag_names(name: str, aliases: list[str], cli_v2: bool = True) -> list[str]:
    """The names a flag answers to (and a config file key may be), its name first.

    urfave/cli v1 spells aliases in the Name: "data-dir,d" is data-dir with alias d (eachName
    splits at commas and trims spaces). v2 lists aliases in Aliases and cuts every name, the
    Name and each alias, at its first comma or space (FlagNames, commaWhitespace "[, ]+.*"), so
    k3s's v2 Name "snapshot-retention," is snapshot-retention, and a v1-style "data-dir,d" there
    would be data-dir alone.
    """
    if cli_v2:
        parts = [_V2_NAME_CUT.sub("", part) for part in [name, *aliases]]
    else:
        parts = [part.strip(" ") for part in name.split(",")] + aliases
    names = []
    for part in parts:
        if part and part not in names:
            names.append(part)
    return names


def parse_flag(go_type: str, body: str, cli_v2: bool = True) -> dict:
    """One flag literal's fields -> {"names": [...], "type": ..., "hidden": bool}."""
    if go_type not in FLAG_TYPES:
        raise ValueError(f"unknown urfave/cli flag type {go_type}")
    fields = {}
    for item in _split_items(body):
        key, _, value = item.partition(":")
        fields[key.strip()] = value.strip()
    if "Name" not in fields:
        raise ValueError(f"flag without a Name: {body!r}")
    aliases = fields.get("Aliases", "")
    alias_list = []
    if aliases:
        inner = aliases[aliases.index("{") + 1 : aliases.rindex("}")]
        alias_list = [_go_string(a) for a in _split_items(inner)]
    return {
        "names": flag_names(_go_string(fields["Name"]), alias_list, cli_v2),
        "type": FLAG_TYPES[go_type],
        "hidden": fields.get("Hidden", "false") == "true",
    }


def parse_sources(texts: dict[str, str]) -> tuple[dict, dict]:
    """Return (flag variables by name, flag lists by name) over all the given Go files."""
    variables, lists = {}, {}
    for text in texts.values():
        cli_v2 = '"github.com/urfave/cli/v2"' in text
        for match in _VAR_FLAG.finditer(text):
            body, _ = _block(text, match.end() - 1)
            variables[match.group(1)] = parse_flag(match.group(2), body, cli_v2)
        for match in _FLAG_LIST.finditer(text):
            body, _ = _block(text, match.end() - 1)
            owner = _list_owner(text, match.start())
            if owner:
                lists[owner] = (body, cli_v2)
    return variables, lists


def _list_owner(text: str, pos: int) -> str | None:
    """Name a []cli.Flag{...} literal: 'var ServerFlags = ...' or the enclosing NewXCommand."""
    line_start = text.rfind("\n", 0, pos) + 1
    declared = re.match(r"\s*(?:var\s+)?(\w+)\s*=\s*$", text[line_start:pos])
    if declared:
        return declared.group(1)
    func = None
    for func_match in re.finditer(r"^func\s+(\w+)\s*\(", text[:pos], re.M):
        func = func_match.group(1)
    return func


def resolve(flag_list: tuple[str, bool], variables: dict) -> list[dict]:
    list_body, cli_v2 = flag_list
    flags = []
    for item in _split_items(list_body):
        item = item.strip()
        literal = _FLAG_LITERAL.match(item)
        if literal:
            body, _ = _block(item, literal.end() - 1)
            flags.append(parse_flag(literal.group(1), body, cli_v2))
            continue
        name = item.lstrip("&").strip()
        if name not in variables:
            raise ValueError(f"flag variable {name} is not defined in the files given")
        flags.append(variables[name])
    return flags


def table(flags: list[dict]) -> dict[str, str]:
    result = {}
    for flag in flags:
        for name in flag["names"]:
            if name in result and result[name] != flag["type"]:
                raise ValueError(f"flag {name} defined twice with different types")
            result[name] = flag["type"]
    return dict(sorted(result.items()))


def aliases(flags: list[dict]) -> dict[str, str]:
    return dict(sorted((alias, f["names"][0]) for f in flags for alias in f["names"][1:]))


def _dict_literal(name: str, annotation: str, data: dict) -> str:
    lines = [f"{name}: {annotation} = {{"]
    lines += [f'    "{key}": "{value}",' for key, value in data.items()]
    lines.append("}")
    return "\n".join(lines)


def render(commands: dict[str, list[dict]], source: dict) -> str:
    files = "\n".join(f'        "{path}",' for path in source["files"])
    out = [
        '"""k3s CLI flags of the pinned release, generated by tools/k3s_flags.py: do not edit.',
        "",
        "Keys of /etc/rancher/k3s/config.yaml are these flags without their leading dashes",
        "(k3s pkg/configfilearg). Each table maps every flag name AND alias to its value kind:",
        '"bool", "string", "int", "duration", "string-slice" (see tools/k3s_flags.py FLAG_TYPES).',
        "Hidden and deprecated flags are included: k3s accepts them.",
        "",
        f"Source: {source['repository']} at commit {source['commit']}.",
        *_wrap(source["note"]),
        '"""',
        "",
        "from __future__ import annotations",
        "",
        f'K3S_VERSION = "{K3S_VERSION}"',
        "",
        "SOURCE = {",
        f'    "repository": "{source["repository"]}",',
        f'    "commit": "{source["commit"]}",',
        '    "note": (',
        *_wrap_string(source["note"], indent=8),
        "    ),",
        '    "generator": "tools/k3s_flags.py",',
        '    "files": [',
        files,
        "    ],",
        "}",
        "",
        "# Commands whose config file keys k3s filters against their flags, skipping unknown keys",
        "# with UNKNOWN_KEY_WARNING (pkg/configfilearg/defaultparser.go ValidFlags); for every",
        "# other command (agent) unknown keys reach urfave/cli, which exits with",
        '# "flag provided but not defined: -<key>".',
        f"CONFIG_FILTERED_COMMANDS = {_py_tuple(source['filtered_commands'])}",
        f"UNKNOWN_KEY_WARNING = {_py_string(source['unknown_key_warning'])}",
        "",
    ]
    for command, flags in commands.items():
        const = command.upper().replace("-", "_")
        out.append(_dict_literal(f"{const}_FLAGS", "dict[str, str]", table(flags)))
        out.append("")
        out.append(f"# Alias -> the flag's name, for {command}.")
        out.append(_dict_literal(f"{const}_ALIASES", "dict[str, str]", aliases(flags)))
        out.append("")
    return "\n".join(out)


def _py_tuple(items: list[str]) -> str:
    inner = ", ".join(_py_string(item) for item in items)
    return f"({inner},)" if len(items) == 1 else f"({inner})"


def _py_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wrap_string(text: str, indent: int) -> list[str]:
    """A long string as implicitly concatenated literals, one per line."""
    chunks = _wrap(text, 100 - indent - 3)
    pad = " " * indent
    return [
        pad + _py_string(chunk + (" " if i < len(chunks) - 1 else ""))
        for i, chunk in enumerate(chunks)
    ]


def config_file_rule(texts: dict[str, str]) -> tuple[list[str], str]:
    """From pkg/configfilearg: the commands in ValidFlags and the unknown-key warning text."""
    default = next((t for p, t in texts.items() if p.endswith("defaultparser.go")), None)
    parser = next((t for p, t in texts.items() if p.endswith("configfilearg/parser.go")), None)
    if default is None or parser is None:
        raise SystemExit("give pkg/configfilearg/parser.go and defaultparser.go too")
    valid = re.search(r"ValidFlags:\s*map\[string\]\[\]cli\.Flag\{(.*?)\},?\n", default)
    commands = re.findall(r'"([\w-]+)"\s*:', valid.group(1))
    warning = re.search(r'Warnf\("(Unknown flag[^"]*)"', parser).group(1)
    return commands, warning.replace("\\n", "").strip()


def _wrap(text: str, width: int = 96) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


# Which flag list each command uses (pkg/cli/cmds: ServerFlags is NewServerCommand's Flags;
# the agent's list is a literal inside NewAgentCommand; EtcdSnapshotFlags is what
# configfilearg filters etcd-snapshot's config keys against).
COMMAND_LISTS = {
    "server": "ServerFlags",
    "agent": "NewAgentCommand",
    "etcd-snapshot": "EtcdSnapshotFlags",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("files", nargs="+", help="Go files, relative to --root")
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--commit", required=True)
    parser.add_argument("--repository", default="https://github.com/k3s-io/k3s")
    parser.add_argument("--note", default="")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)

    texts = {path: (args.root / path).read_text() for path in sorted(args.files)}
    variables, lists = parse_sources(texts)
    commands = {}
    for command, list_name in COMMAND_LISTS.items():
        if list_name not in lists:
            raise SystemExit(f"no flag list {list_name} in the files given (needed for {command})")
        commands[command] = resolve(lists[list_name], variables)
    filtered, warning = config_file_rule(texts)
    source = {
        "repository": args.repository,
        "commit": args.commit,
        "note": args.note,
        "files": sorted(args.files),
        "filtered_commands": filtered,
        "unknown_key_warning": warning,
    }
    args.output.write_text(render(commands, source))
    for command, flags in commands.items():
        print(f"{command}: {len(flags)} flags, {len(table(flags))} names and aliases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
