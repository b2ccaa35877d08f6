"""Network namespaces for the dataplane tests: a node, a client and backends, joined by veths.

    client 10.10.0.2 --- 10.10.0.1 [node: runs the rules] 10.244.N.1 --- 10.244.N.2 backend N

Everything lives in namespaces created here and removed in `destroy`, also after failures;
the host's own namespace and rules are never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
NODE_IP = "10.10.0.1"
CLIENT_IP = "10.10.0.2"
SERVICE_CIDR = "10.96.0.0/16"
BACKEND_PORT = 8080  # fixed is fine: each backend has a namespace of its own
NODE_LISTENER_PORT = 30070


def in_own_namespace(module: str, function: str, *args: object, timeout: float = 300) -> None:
    """Calls `module.function(*args)` in a child process in a network namespace of its own
    (`unshare --net`, gone with the process), where a Runner needs no prefix, as on a node.
    Fails with the child's stderr unless the call returned."""
    call = f"from {module} import {function} as f; f(*{args!r}); print('own-namespace-ok')"
    proc = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", call],
        cwd=HERE.parent.parent, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0 and "own-namespace-ok" in proc.stdout, proc.stderr[-3000:]


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc


class Topology:
    def __init__(self, backends: int = 3) -> None:
        tag = f"es{os.getpid() % 100000}"
        self.node = f"{tag}-node"
        self.client = f"{tag}-client"
        self.backends = [f"{tag}-b{i}" for i in range(1, backends + 1)]
        self.namespaces: list[str] = []
        self.servers: list[subprocess.Popen[str]] = []

    def backend_ip(self, index: int) -> str:
        return f"10.244.{index + 1}.2"

    def name_of(self, index: int) -> str:
        return f"backend-{index + 1}"

    def _ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def _link(self, left: str, right: str, left_ip: str, right_ip: str, prefix: int) -> None:
        a, b = f"v{len(self.namespaces)}a", f"v{len(self.namespaces)}b"
        sh("ip", "link", "add", a, "netns", left, "type", "veth", "peer", b, "netns", right)
        sh("ip", "-n", left, "addr", "add", f"{left_ip}/{prefix}", "dev", a)
        sh("ip", "-n", right, "addr", "add", f"{right_ip}/{prefix}", "dev", b)
        sh("ip", "-n", left, "link", "set", a, "up")
        sh("ip", "-n", right, "link", "set", b, "up")

    def create(self) -> None:
        try:
            self._ns(self.node)
            sh("ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self._ns(self.client)
            self._link(self.node, self.client, NODE_IP, CLIENT_IP, 24)
            sh("ip", "-n", self.client, "route", "add", "default", "via", NODE_IP)
            for i, ns in enumerate(self.backends):
                self._ns(ns)
                self._link(self.node, ns, f"10.244.{i + 1}.1", self.backend_ip(i), 24)
                sh("ip", "-n", ns, "route", "add", "default", "via", f"10.244.{i + 1}.1")
                self._serve(ns, self.name_of(i))
            # A route for the service range, as a node's default route would give: packets to
            # a ClusterIP without endpoints must be routable to reach the forward hook (where
            # iptables can reject). Were they not rejected, backend 1 would silently drop them.
            sh("ip", "-n", self.node, "route", "add", SERVICE_CIDR, "via", self.backend_ip(0))
            # A listener on the node itself at a NodePort: only a rule of ours can refuse it.
            self._serve(self.node, "node-itself", NODE_LISTENER_PORT)
        except BaseException:
            self.destroy()
            raise

    def _serve(self, ns: str, name: str, port: int = BACKEND_PORT) -> None:
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                str(HERE / "netserver.py"),
                name,
                str(port),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.servers.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "listening":
            raise RuntimeError(f"backend server in {ns} did not start")

    def requests(
        self, host: str, port: int, count: int, proto: str = "tcp", timeout: float = 2.0
    ) -> list[str]:
        """`count` requests from the client namespace; one result per request."""
        proc = sh(
            "ip",
            "netns",
            "exec",
            self.client,
            sys.executable,
            str(HERE / "netclient.py"),
            proto,
            host,
            str(port),
            str(count),
            str(timeout),
        )
        return proc.stdout.split()

    def udp_session(self, host: str, port: int) -> subprocess.Popen[str]:
        """A client keeping one UDP socket open: write a line, read the answering backend."""
        return subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.client,
                sys.executable,
                str(HERE / "netclient.py"),
                "udp-session",
                host,
                str(port),
                "2.0",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def destroy(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait(timeout=10)
        self.servers.clear()
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
