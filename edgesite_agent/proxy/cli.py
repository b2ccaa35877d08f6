"""`edgesite-agent proxy ...`: cleanup and offline rendering."""

from __future__ import annotations

import argparse
import json
import sys

from edgesite_agent.proxy.backends import cleanup_all
from edgesite_agent.proxy.config import parse_settings
from edgesite_agent.proxy.render import render
from edgesite_agent.proxy.runner import ApplyError, Runner


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("proxy", help="kube-proxy-lite tools")
    sub = parser.add_subparsers(dest="proxy_command", required=True)
    clean = sub.add_parser("cleanup", help="remove every rule the proxy installed (both backends)")
    clean.add_argument("--netns", default="", help="clean this named network namespace")
    clean.set_defaults(func=_cleanup)
    show = sub.add_parser("render", help="print the rules for a JSON list of Kubernetes objects")
    show.add_argument("--backend", choices=("nft", "iptables"), default="nft")
    show.add_argument("--input", required=True, help="JSON file: a list of objects, or a List")
    show.add_argument("--node", default="", help="this node's name (decides local endpoints)")
    show.add_argument("--settings", help="JSON file with the proxy settings object")
    show.set_defaults(func=_render)


def _cleanup(args: argparse.Namespace) -> int:
    try:
        prefix = ("ip", "netns", "exec", args.netns) if args.netns else ()
        removed = cleanup_all(Runner(prefix=prefix))
    except ApplyError as exc:
        print(f"proxy cleanup failed: {exc}", file=sys.stderr)
        return 1
    print(f"removed: {', '.join(removed)}" if removed else "nothing to remove")
    return 0


def _render(args: argparse.Namespace) -> int:
    try:
        with open(args.input, encoding="utf-8") as fh:
            data = json.load(fh)
        raw = {}
        if args.settings:
            with open(args.settings, encoding="utf-8") as fh:
                raw = json.load(fh)
        settings = parse_settings(raw)
    except (OSError, ValueError) as exc:
        print(f"proxy render: {exc}", file=sys.stderr)
        return 2
    objects = data.get("items", []) if isinstance(data, dict) else data
    if not isinstance(objects, list):
        print("proxy render: input must be a JSON list of objects or a List", file=sys.stderr)
        return 2
    sys.stdout.write(render(objects, args.backend, args.node, settings))
    return 0
