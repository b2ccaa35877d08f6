"""etcd memory footprint: the role's `default` profile against its `edge` profile.

Starts one etcd per profile from the config file the role renders (roles/etcd/templates/
etcd.conf.yml.j2 with the profile settings from roles/edgesite/defaults/main.yml, which k3s's
embedded etcd is slimmed from as well), TLS with client certificates as deployed, writes the
same 50,000 keys (1 KiB values, one put per request, so every key is its own raft entry as with
API-server traffic) and prints the resident memory of each. Last line: `etcd_rss_ratio: X`
(edge / default). Target: at most 0.5.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import jinja2
import yaml

ROLES = Path(__file__).resolve().parents[1] / "roles"
ROLE = ROLES / "etcd"
# The profile definitions are site-wide (role edgesite); the etcd role reads them from there.
SITE_DEFAULTS = ROLES / "edgesite" / "defaults" / "main.yml"
ADDRESS = "127.0.0.2"  # the "node address"; the role also listens on 127.0.0.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_pki(directory: Path) -> None:
    """CA, a server cert for both loopback addresses and a client cert, with the openssl CLI."""

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ossl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=bench-ca",
    )
    ext = {
        "server": f"subjectAltName=IP:127.0.0.1,IP:{ADDRESS}\n"
        "extendedKeyUsage=serverAuth,clientAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for name, extension in ext.items():
        (directory / f"{name}.ext").write_text(extension)
        ossl(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN=bench-{name}",
        )
        ossl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.crt",
            "-extfile",
            f"{name}.ext",
        )
    for peer in ("peer.crt", "peer.key"):
        shutil.copy(directory / peer.replace("peer", "server"), directory / peer)


def render_config(profile: str, workdir: Path, client_port: int, peer_port: int) -> str:
    defaults = yaml.safe_load(SITE_DEFAULTS.read_text())
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ROLE / "templates")), undefined=jinja2.StrictUndefined
    )
    # The two filters the template uses, with Ansible's semantics for these inputs.
    env.filters["combine"] = lambda a, b: {**a, **b}
    env.filters["to_json"] = json.dumps
    values: dict[str, Any] = {
        "ansible_managed": "rendered by benchmarks/etcd_footprint.py",
        "etcd_name": "bench",
        "etcd_address": ADDRESS,
        "etcd_client_port": client_port,
        "etcd_peer_port": peer_port,
        "etcd_metrics_urls": [f"http://127.0.0.1:{free_port()}"],
        "etcd_data_dir": str(workdir / "data"),
        "etcd_pki_dir": str(workdir / "pki"),
        "etcd_profile": profile,
        "etcd_network": "lan",
        "etcd_profiles": defaults["edgesite_etcd_profiles"],
        "etcd_networks": defaults["edgesite_etcd_networks"],
        "etcd_extra_config": {},
        "__etcd_initial_cluster": f"bench=https://{ADDRESS}:{peer_port}",
        "__etcd_initial_cluster_state": "new",
        "__etcd_initial_cluster_token": "bench",
    }
    return env.get_template("etcd.conf.yml.j2").render(**values)


def memory_mib(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def write_keys(port: int, pki: Path, count: int, threads: int) -> None:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
    value = base64.b64encode(b"v" * 1024).decode()
    errors: list[str] = []

    def worker(first: int) -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=ctx)
        try:
            for i in range(first, count, threads):
                key = base64.b64encode(f"/registry/bench/{i:06d}".encode()).decode()
                conn.request("POST", "/v3/kv/put", json.dumps({"key": key, "value": value}))
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    errors.append(body.decode(errors="replace"))
                    return
        finally:
            conn.close()

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if errors:
        raise RuntimeError(f"writes failed: {errors[0]}")


def wait_healthy(port: int, pki: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
    for _ in range(150):
        if proc.poll() is not None:
            raise RuntimeError(f"etcd exited:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=ctx)
            conn.request("GET", "/health")
            if json.loads(conn.getresponse().read()).get("health") == "true":
                return
        except (OSError, ValueError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    raise RuntimeError("etcd did not become healthy")


def measure(profile: str, keys: int, threads: int, base: Path, pki_src: Path) -> dict[str, float]:
    workdir = base / profile
    shutil.copytree(pki_src, workdir / "pki")
    client_port, peer_port = free_port(), free_port()
    config = workdir / "etcd.conf.yml"
    config.write_text(render_config(profile, workdir, client_port, peer_port))
    log = workdir / "etcd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [shutil.which("etcd") or "/usr/bin/etcd", "--config-file", str(config)],
            stdout=out,
            stderr=out,
        )
    try:
        wait_healthy(client_port, workdir / "pki", proc, log)
        started = time.monotonic()
        write_keys(client_port, workdir / "pki", keys, threads)
        elapsed = time.monotonic() - started
        time.sleep(3)  # let etcd finish any snapshot/compaction triggered by the last writes
        figures = memory_mib(proc.pid)
        figures["write_seconds"] = elapsed
        figures["db_bytes"] = (workdir / "data" / "member" / "snap" / "db").stat().st_size
        return figures
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="etcd-footprint-", dir=os.environ.get("TMPDIR")))
    try:
        pki = base / "pki"
        pki.mkdir()
        make_pki(pki)
        results = {p: measure(p, args.keys, args.threads, base, pki) for p in ("default", "edge")}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for profile, fig in results.items():
        print(
            f"{profile:8s} VmRSS {fig['VmRSS']:.1f} MiB  (anon {fig['RssAnon']:.1f}, file "
            f"{fig['RssFile']:.1f}), peak VmHWM {fig['VmHWM']:.1f} MiB, db {fig['db_bytes']} B, "
            f"{args.keys} puts in {fig['write_seconds']:.1f} s"
        )
    print(f"etcd_rss_ratio: {results['edge']['VmRSS'] / results['default']['VmRSS']:.3f}")


if __name__ == "__main__":
    main()
