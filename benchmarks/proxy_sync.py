#!/usr/bin/env python3
"""Benchmark of kube-proxy-lite syncs, for the nftables and the iptables backend.

For 1,000 / 5,000 / 10,000 services x 10 endpoints, each in a throwaway network namespace
(`unshare --net`, gone when the measuring process exits; the host's rules are never touched):
  full sync    the real Proxy from "both kinds synced" to "rules applied" (model -> ruleset ->
               applied), including reading back what the kernel has; median of 3. With
               nftables the ruleset is streamed into nft while services are built, so on
               an idle machine model building and nft's parsing overlap on two cores;
  raw apply    `nft -f` (or `iptables-restore --noflush`) of the same ruleset file into an
               empty namespace: the floor any implementation pays; median of 3;
  overhead     full / raw per (raw, full) pair run back to back, median of the ratios
               (robust against a machine shared with other work), with their spread;
               5 pairs at the smallest size, 3 above;
  cpu_overhead the same ratio in CPU time (this process and its children): on a machine
               shared with other sessions the kernel gives our session a roughly fixed share
               (autogroup), so the wall ratio there follows the CPU ratio and overlap cannot
               show; this line tells the two effects apart;
  one change   one endpoint removed from one service's EndpointSlice, event to applied
               (median of several changes, and the slowest), while the other services stay
               programmed. Applied means the kernel reported the commit (nlcommit): nft
               itself exits a grace period later. Changes are 1 s apart, as the proxy's
               default min_sync_interval spaces its syncs; "back to back" are the same
               changes without a pause, each waiting for the previous nft's cleanup. The
               first changes to a new endpoint count also create that count's shared pick
               chain (a rule, so the kernel re-validates the table): the slowest figure
               shows that case.
Last lines: `proxy_one_change_ms: X` (1k services) and `proxy_sync_overhead_1k: X`
(nftables, total / raw at 1k services); the same figures for iptables (the system's
`iptables`, here iptables-nft) and iptables-legacy come before them, with per-size lines.
A backend whose full sync exceeds --skip-after seconds, or whose run exceeds --size-timeout
seconds (killed), is not run at larger sizes: the reason is printed instead of hanging.

Run as root: python3 benchmarks/proxy_sync.py [--sizes 1000,5000,10000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ENDPOINTS = 10
CHANGES = 7
DEFAULT_MIN_SYNC_INTERVAL = 1.0  # ProxySettings' default
REPEATS_FIRST = 5  # pairs at the smallest size, where the overhead figure is taken
REPEATS = 3


def objects(n: int) -> list[dict]:
    out = []
    for s in range(n):
        name = f"svc-{s}"
        out.append(
            {
                "kind": "Service",
                "metadata": {"name": name, "namespace": "bench"},
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": f"10.{96 + s // 65536}.{s // 256 % 256}.{s % 256}",
                    "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
                },
            }
        )
        eps = []
        for e in range(ENDPOINTS):
            k = s * ENDPOINTS + e
            eps.append(
                {
                    "addresses": [f"10.{128 + k // 65536}.{k // 256 % 256}.{k % 256}"],
                    "conditions": {"ready": True},
                    "nodeName": "edge-1" if e == 0 else "edge-2",
                }
            )
        out.append(
            {
                "kind": "EndpointSlice",
                "addressType": "IPv4",
                "metadata": {
                    "name": f"{name}-x",
                    "namespace": "bench",
                    "labels": {"kubernetes.io/service-name": name},
                },
                "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
                "endpoints": eps,
            }
        )
    return out


def wait_syncs(proxy, count: int, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while proxy.stats["syncs"] < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"sync did not finish: {proxy.last_error}")
        time.sleep(0.0005)


def inner(backend: str, n: int, repeats: int) -> dict:
    """Runs inside a fresh network namespace."""
    from edgesite_agent.events import EventType
    from edgesite_agent.proxy import iptables, nft
    from edgesite_agent.proxy.config import IPTABLES_VARIANTS, parse_settings
    from edgesite_agent.proxy.proxy import Proxy
    from edgesite_agent.proxy.render import render
    from edgesite_agent.proxy.runner import Runner

    variant = "system"
    if backend == "iptables-legacy":
        backend, variant = "iptables", "legacy"
    settings = parse_settings(
        {
            "backend": backend,
            "iptables_variant": variant,
            "min_sync_interval": 0.0,
            "cluster_cidrs": ["10.128.0.0/10"],
        }
    )
    log = logging.getLogger("bench")
    objs = objects(n)
    # The ruleset file for the raw apply: the same text the proxy renders for these objects.
    text = render(objs, "nft" if backend == "nftables" else "iptables", "edge-1", settings)
    with tempfile.NamedTemporaryFile("w", suffix=".rules", delete=False) as fh:
        fh.write(text)
        path = fh.name
    binary = IPTABLES_VARIANTS[variant]
    if backend == "nftables":
        raw_argv = ["nft", "-f", path]
    else:
        raw_argv = [f"{binary}-restore", "-w", "5", "--noflush", path]

    def clean() -> None:
        if backend == "nftables":
            nft.cleanup(Runner())
        else:
            iptables.cleanup(Runner(), binary)

    def cpu() -> float:
        # This process (all threads) and its children (nft, iptables-restore): on a loaded
        # machine the CPU spent is steadier than the wall time.
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    # Pairs of (raw apply, full sync), each from an empty namespace; the machine may be
    # shared, so the ratio is taken per pair (same moment, same load) and the median kept.
    fulls, raws, cpu_ratios = [], [], []
    proxy = None
    for rep in range(repeats):
        clean()
        c = cpu()
        t = time.perf_counter()
        subprocess.run(raw_argv, check=True)
        raws.append(time.perf_counter() - t)
        raw_cpu = cpu() - c
        clean()
        proxy = Proxy(settings, "edge-1", log, Runner())
        for obj in objs:
            proxy.on_event(obj["kind"], EventType.ADDED, obj)
        proxy.start()
        time.sleep(0.2)  # backend probe done before the clock starts
        c = cpu()
        t0 = time.perf_counter()
        proxy.on_synced("Service")
        proxy.on_synced("EndpointSlice")
        # Blocks on an event: a polling loop here would take the GIL from the sync thread.
        if not proxy.wait_ready(600):
            raise RuntimeError(f"sync did not finish: {proxy.last_error}")
        fulls.append(time.perf_counter() - t0)
        cpu_ratios.append((cpu() - c) / raw_cpu)
        assert proxy.stats["failures"] == 0, proxy.last_error
        if rep < repeats - 1:
            proxy.stop()
    assert proxy is not None
    size = os.path.getsize(path)
    os.unlink(path)

    def one_change(i: int) -> float:
        sl = dict(objs[2 * (i * 37 % n) + 1])
        sl["endpoints"] = sl["endpoints"][: ENDPOINTS - 1 - i % 3]
        before = proxy.stats["syncs"]
        t = time.perf_counter()
        proxy.on_event("EndpointSlice", EventType.MODIFIED, sl)
        wait_syncs(proxy, before + 1)
        return time.perf_counter() - t

    # Isolated changes, as the proxy meets them: its syncs are at least min_sync_interval
    # (default 1 s) apart, so the previous nft has long finished its cleanup.
    changes = []
    for i in range(CHANGES):
        time.sleep(DEFAULT_MIN_SYNC_INTERVAL)
        changes.append(one_change(i))
    # Back to back (min_sync_interval 0, as this benchmark's settings): each change waits
    # for the previous nft's cleanup in the kernel (an RCU grace period, see nlcommit).
    burst = [one_change(CHANGES + i) for i in range(CHANGES)]
    assert proxy.stats["failures"] == 0, proxy.last_error
    proxy.stop()
    ratios = [f / r for f, r in zip(fulls, raws, strict=True)]
    return {
        "full_s": statistics.median(fulls),
        "raw_s": statistics.median(raws),
        "overhead": statistics.median(ratios),
        "overhead_min": min(ratios),
        "overhead_max": max(ratios),
        "cpu_overhead": statistics.median(cpu_ratios),
        "one_change_ms": statistics.median(changes) * 1000,
        "one_change_max_ms": max(changes) * 1000,
        "burst_change_ms": statistics.median(burst) * 1000,
        "ruleset_bytes": size,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,5000,10000")
    ap.add_argument("--backends", default="nftables,iptables-legacy,iptables")
    ap.add_argument(
        "--skip-after",
        type=float,
        default=60.0,
        help="skip larger sizes of a backend once a full sync took longer than this (s)",
    )
    ap.add_argument(
        "--size-timeout",
        type=float,
        default=300.0,
        help="kill one backend/size run after this many seconds and skip larger sizes",
    )
    ap.add_argument("--inner", nargs=3, metavar=("BACKEND", "N", "REPEATS"))
    args = ap.parse_args()
    if args.inner:
        print(json.dumps(inner(args.inner[0], int(args.inner[1]), int(args.inner[2]))))
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    system_iptables = subprocess.run(
        ["iptables", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"# iptables = {system_iptables}; nft = ", end="")
    print(subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip())
    results: dict[str, dict[int, dict]] = {}
    sizes = [int(x) for x in args.sizes.split(",")]
    for backend in args.backends.split(","):
        slow = None
        for n in sizes:
            if slow is not None:
                print(f"{backend:15s} services={n:6d} skipped: {slow}", flush=True)
                continue
            repeats = REPEATS_FIRST if n == sizes[0] else REPEATS
            argv = [sys.executable, __file__, "--inner", backend, str(n), str(repeats)]
            try:
                proc = subprocess.run(
                    ["unshare", "--net", *argv],
                    capture_output=True,
                    text=True,
                    timeout=args.size_timeout,
                )
            except subprocess.TimeoutExpired:
                print(
                    f"{backend:15s} services={n:6d} STOPPED: not done within "
                    f"--size-timeout {args.size_timeout:.0f} s",
                    flush=True,
                )
                slow = f"{n} services did not finish within {args.size_timeout:.0f} s"
                continue
            if proc.returncode != 0:
                # Reported, not hidden: e.g. iptables-nft exceeding the apply timeout.
                why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"{backend:15s} services={n:6d} FAILED: {why}", flush=True)
                slow = f"{n} services failed"
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.setdefault(backend, {})[n] = r
            print(
                f"{backend:15s} services={n:6d} endpoints={n * ENDPOINTS:7d} "
                f"full_sync_s={r['full_s']:.3f} raw_apply_s={r['raw_s']:.3f} "
                f"overhead={r['overhead']:.2f} (spread {r['overhead_min']:.2f}-"
                f"{r['overhead_max']:.2f} over {repeats}) cpu_overhead={r['cpu_overhead']:.2f} "
                f"one_change_ms={r['one_change_ms']:.1f} (slowest {r['one_change_max_ms']:.1f}; "
                f"back to back {r['burst_change_ms']:.1f}) "
                f"ruleset_kib={r['ruleset_bytes'] / 1024:.0f}",
                flush=True,
            )
            if r["full_s"] > args.skip_after:
                slow = f"{n} services took {r['full_s']:.0f} s (> --skip-after)"
    # Summary lines; the nftables (default backend) ones come last, as the issue asks.
    prefixes = {"iptables": "proxy_iptables_", "iptables-legacy": "proxy_iptables_legacy_"}
    for backend in (*prefixes, "nftables"):
        res = results.get(backend)
        if not res:
            continue
        prefix = prefixes.get(backend, "proxy_")
        for n, r in sorted(res.items()):
            print(f"{prefix}full_sync_s_{n // 1000}k: {r['full_s']:.3f}")
            print(f"{prefix}one_change_ms_{n // 1000}k: {r['one_change_ms']:.1f}")
            print(f"{prefix}one_change_back_to_back_ms_{n // 1000}k: {r['burst_change_ms']:.1f}")
        first = res[min(res)]
        print(f"{prefix}one_change_ms: {first['one_change_ms']:.1f}")
        print(
            f"{prefix}sync_overhead_spread_1k: {first['overhead_min']:.2f}-"
            f"{first['overhead_max']:.2f}"
        )
        print(f"{prefix}sync_cpu_overhead_1k: {first['cpu_overhead']:.2f}")
        print(f"{prefix}sync_overhead_1k: {first['overhead']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
