#!/usr/bin/env python3
"""Local test hosts for EdgeSite: systemd-booted Debian 12 containers under podman.

Subcommands:
  deps      install podman, runc and debootstrap when missing (apt, needs root)
  image     build the base image once; cached by a hash of its recipe
  up        start N masters + M workers on a private podman network, write an inventory
  down      remove the hosts and their network
  env       print the environment (CONTAINERS_CONF, EDGESITE_BASE_IMAGE) for shell eval

Podman always runs with the project-local tools/containers.conf (CONTAINERS_CONF), so
nothing under /etc is touched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONTAINERS_CONF = REPO / "tools" / "containers.conf"
CACHE_DIR = REPO / ".cache" / "testhosts"
IMAGE_REPO = "localhost/edgesite-base"

# Everything that shapes the image. Changing any of it changes the tag, so a stale image
# is never reused and an unchanged recipe is never rebuilt.
RECIPE: dict[str, object] = {
    "suite": "bookworm",
    "variant": "minbase",
    "mirror": os.environ.get("EDGESITE_DEBIAN_MIRROR", "http://deb.debian.org/debian"),
    "include": [
        "systemd",
        "systemd-sysv",
        "dbus",
        "python3",
        "python3-apt",
        "openssh-server",
        "iproute2",
        "iptables",
        "sudo",
        "procps",
        "ca-certificates",
        "kmod",
    ],
    # Bump when the customisation steps below change.
    "customise_version": 3,
}

# Shared host keys would let one test host impersonate another; regenerate them on first boot.
SSH_KEYGEN_DROPIN = """[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""

HOST_PACKAGES = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}


def log(message: str) -> None:
    print(f"testhosts: {message}", file=sys.stderr, flush=True)


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return env


def podman(*args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args],
        env=podman_env(),
        check=check,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )


def recipe_hash() -> str:
    blob = json.dumps(RECIPE, sort_keys=True) + SSH_KEYGEN_DROPIN
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def image_tag() -> str:
    return f"{IMAGE_REPO}:{recipe_hash()}"


def cmd_deps(_: argparse.Namespace) -> int:
    missing = [pkg for tool, pkg in HOST_PACKAGES.items() if shutil.which(tool) is None]
    if not missing:
        log("podman, runc and debootstrap are present")
        return 0
    if os.geteuid() != 0:
        packages = " ".join(missing)
        log(f"missing {packages}; run as root, or: sudo apt-get install -y {packages}")
        return 1
    log(f"installing {', '.join(missing)} with apt")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
    return 0


def image_exists(tag: str) -> bool:
    return podman("image", "exists", tag, check=False).returncode == 0


def customise_rootfs(rootfs: Path) -> None:
    # An empty machine-id makes systemd generate a distinct one per container.
    (rootfs / "etc" / "machine-id").write_text("")
    for key in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    dropin = rootfs / "etc" / "systemd" / "system" / "ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "10-edgesite-hostkeys.conf").write_text(SSH_KEYGEN_DROPIN)
    shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (rootfs / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)


def cmd_image(args: argparse.Namespace) -> int:
    tag = image_tag()
    latest = f"{IMAGE_REPO}:latest"
    if image_exists(tag) and not args.rebuild:
        log(f"{tag} is cached (recipe unchanged)")
    else:
        if shutil.which("debootstrap") is None:
            log("debootstrap is missing: run `tools/testhosts.py deps` first")
            return 1
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            log(f"debootstrap {RECIPE['suite']} into {rootfs} (about a minute)")
            subprocess.run(
                [
                    "debootstrap",
                    f"--variant={RECIPE['variant']}",
                    f"--include={','.join(RECIPE['include'])}",  # type: ignore[arg-type]
                    str(RECIPE["suite"]),
                    str(rootfs),
                    str(RECIPE["mirror"]),
                ],
                check=True,
                stdout=subprocess.DEVNULL if not args.verbose else None,
            )
            customise_rootfs(rootfs)
            log(f"importing {tag}")
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            subprocess.run(
                ["podman", "import", "--change", "CMD=/sbin/init", "-", tag],
                stdin=tar.stdout,
                env=podman_env(),
                check=True,
                stdout=subprocess.DEVNULL,
            )
            if tar.wait() != 0:
                raise SystemExit("testhosts: tar of the root filesystem failed")
    podman("tag", tag, latest)
    print(tag)
    return 0


@dataclass
class Site:
    name: str
    masters: list[tuple[str, str]]
    workers: list[tuple[str, str]]


@dataclass
class SshAccess:
    key: Path
    known_hosts: Path


def site_names(count: int) -> list[str]:
    return [f"site{i}" for i in range(1, count + 1)] if count > 1 else ["default"]


def host_names(
    name: str, masters: int, workers: int, site: str = "default", sites: int = 1
) -> tuple[list[str], list[str]]:
    prefix = f"edgesite-{name}" + (f"-{site}" if sites > 1 else "")
    return (
        [f"{prefix}-m{i}" for i in range(1, masters + 1)],
        [f"{prefix}-w{i}" for i in range(1, workers + 1)],
    )


def container_ip(container: str, network: str) -> str:
    out = podman("inspect", container, capture=True).stdout
    networks = json.loads(out)[0]["NetworkSettings"]["Networks"]
    return networks[network]["IPAddress"]


def ensure_container(container: str, network: str, image: str) -> None:
    state = podman(
        "container",
        "inspect",
        "--format",
        "{{.State.Running}}",
        container,
        check=False,
        capture=True,
    )
    if state.returncode == 0 and state.stdout.strip() == "true":
        return
    if state.returncode == 0:
        podman("start", container, capture=True)
        return
    podman(
        "run", "-d", "--name", container, "--hostname", container,
        "--network", network, "--privileged", "--systemd=always",
        "--label", "io.edgesite.testhost=1",
        image, "/sbin/init",
        capture=True,
    )  # fmt: skip


def wait_booted(container: str, attempts: int = 60) -> None:
    # `is-system-running --wait` returns once boot finished; "degraded" still means booted.
    for _ in range(attempts):
        result = podman(
            "exec", container, "systemctl", "is-system-running", "--wait", check=False, capture=True
        )
        if result.stdout.strip() in {"running", "degraded"}:
            return
    raise SystemExit(f"testhosts: {container} did not finish booting systemd")


def render_inventory(name: str, sites: list[Site], ssh: SshAccess | None = None) -> str:
    """Inventory of the test hosts: one `edgesite_site` per site, podman or SSH connection."""

    def host_vars(site: Site, ip: str) -> dict:
        entry: dict[str, str] = {"edgesite_node_ip": ip}
        if len(sites) > 1:
            entry["edgesite_site"] = site.name
        if ssh is not None:
            entry["ansible_host"] = ip
        return entry

    if ssh is None:
        connection = {"ansible_connection": "containers.podman.podman"}
    else:
        connection = {
            "ansible_connection": "ssh",
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(ssh.key),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={ssh.known_hosts}",
        }
    inventory = {
        "all": {
            "vars": {**connection, "ansible_python_interpreter": "/usr/bin/python3"},
            "children": {
                "edgesite_masters": {
                    "hosts": {h: host_vars(site, ip) for site in sites for h, ip in site.masters}
                },
                "edgesite_workers": {
                    "hosts": {h: host_vars(site, ip) for site in sites for h, ip in site.workers}
                },
            },
        }
    }
    header = f"# Generated by `tools/testhosts.py up --name {name}`: local podman test hosts.\n"
    # JSON is valid YAML and keeps this tool free of a YAML dependency.
    return header + json.dumps(inventory, indent=2) + "\n"


def ssh_access(name: str, containers: list[tuple[str, str]]) -> SshAccess:
    """Give root SSH access with a per-sandbox key; pin each host's own key in known_hosts."""
    directory = CACHE_DIR / name
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    if not key.exists():
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"edgesite-{name}",
                "-f",
                str(key),
            ],
            check=True,
        )
    public = key.with_suffix(".pub").read_text()
    known = []
    for container, ip in containers:
        podman(
            "exec", container, "sh", "-c",
            "install -d -m 0700 /root/.ssh && printf '%s' \"$1\" > /root/.ssh/authorized_keys"
            " && chmod 0600 /root/.ssh/authorized_keys && systemctl is-active --quiet ssh",
            "sh", public,
            capture=True,
        )  # fmt: skip
        host_key = podman(
            "exec", container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub", capture=True
        ).stdout.split()
        known.append(f"{ip} {host_key[0]} {host_key[1]}")
    known_hosts = directory / "known_hosts"
    known_hosts.write_text("\n".join(known) + "\n")
    return SshAccess(key, known_hosts)


def cmd_up(args: argparse.Namespace) -> int:
    image = args.image or image_tag()
    if not image_exists(image):
        log(f"image {image} is missing: run `tools/testhosts.py image` first")
        return 1
    network = f"edgesite-{args.name}"
    if podman("network", "exists", network, check=False).returncode != 0:
        podman("network", "create", network, capture=True)
    layout = [
        (site, *host_names(args.name, args.masters, args.workers, site, args.sites))
        for site in site_names(args.sites)
    ]
    containers = [c for _, masters, workers in layout for c in masters + workers]
    for container in containers:
        ensure_container(container, network, image)
    for container in containers:
        wait_booted(container)
    sites = [
        Site(
            site,
            [(c, container_ip(c, network)) for c in masters],
            [(c, container_ip(c, network)) for c in workers],
        )
        for site, masters, workers in layout
    ]
    everyone = [host for site in sites for host in site.masters + site.workers]
    ssh = ssh_access(args.name, everyone) if args.connection == "ssh" else None
    if args.inventory:
        path = Path(args.inventory)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_inventory(args.name, sites, ssh))
        log(f"inventory written to {path}")
    for host, ip in everyone:
        log(f"{host} {ip}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    prefix = f"edgesite-{args.name}-"
    listed = podman("ps", "-a", "--format", "{{.Names}}", capture=True).stdout.split()
    doomed = [c for c in listed if c.startswith(prefix)]
    if doomed:
        podman("rm", "-f", "-t", "0", *doomed, capture=True)
    network = f"edgesite-{args.name}"
    if podman("network", "exists", network, check=False).returncode == 0:
        podman("network", "rm", "-f", network, capture=True)
    log(f"removed {len(doomed)} host(s) of {args.name}")
    return 0


def cmd_env(_: argparse.Namespace) -> int:
    print(f"export CONTAINERS_CONF={CONTAINERS_CONF}")
    print(f"export EDGESITE_BASE_IMAGE={image_tag()}")
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="testhosts", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("deps", help="install podman, runc, debootstrap").set_defaults(func=cmd_deps)
    image = sub.add_parser("image", help="build or reuse the base image")
    image.add_argument("--rebuild", action="store_true")
    image.add_argument("--verbose", action="store_true")
    image.set_defaults(func=cmd_image)
    up = sub.add_parser("up", help="start test hosts and write an inventory")
    up.add_argument("--name", default="sandbox")
    up.add_argument("--masters", type=int, default=3, help="per site")
    up.add_argument("--workers", type=int, default=2, help="per site")
    up.add_argument("--sites", type=int, default=1, help="sites of --masters + --workers each")
    up.add_argument(
        "--connection",
        choices=("podman", "ssh"),
        default="podman",
        help="how Ansible reaches the hosts (ssh: root with a per-sandbox key, pinned host keys)",
    )
    up.add_argument("--image", help="defaults to the cached base image of the current recipe")
    up.add_argument("--inventory", help="path of the inventory file to write")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="remove test hosts")
    down.add_argument("--name", default="sandbox")
    down.set_defaults(func=cmd_down)
    sub.add_parser("env", help="print shell exports").set_defaults(func=cmd_env)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
