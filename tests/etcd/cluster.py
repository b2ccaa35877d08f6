"""Real etcd processes on loopback for the tests: TLS everywhere, client-cert auth, v2 off."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .gateway import Gateway
from .pki import TestPki

ETCD_BIN = shutil.which("etcd") or "/usr/bin/etcd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class EtcdCluster:
    base: Path
    pki: TestPki
    token: str
    members: list[Member] = field(default_factory=list)
    extra_flags: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, base: Path, pki: TestPki, size: int, token: str) -> EtcdCluster:
        cluster = cls(base=base, pki=pki, token=token)
        for i in range(size):
            cluster.members.append(cluster.new_member(f"m{i + 1}"))
        return cluster

    def new_member(self, name: str) -> Member:
        return Member(
            name=name,
            client_port=free_port(),
            peer_port=free_port(),
            data_dir=self.base / name / "data",
            log_path=self.base / f"{name}.log",
        )

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def conn_args(self, endpoints: list[str] | None = None) -> dict[str, object]:
        """Connection options of the edgesite.fleet.etcd_* modules."""
        return {
            "endpoints": endpoints or self.endpoints,
            "ca_cert": str(self.pki.ca),
            "client_cert": str(self.pki.client.cert),
            "client_key": str(self.pki.client.key),
        }

    def gateway(self) -> Gateway:
        return Gateway(str(self.pki.ca), str(self.pki.client.cert), str(self.pki.client.key))

    def initial_cluster(self, members: list[Member] | None = None) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in members or self.members)

    def start(self, member: Member, state: str = "new", initial_cluster: str | None = None) -> None:
        member.data_dir.parent.mkdir(parents=True, exist_ok=True)
        tls = self.pki
        args = [
            ETCD_BIN,
            f"--name={member.name}",
            f"--data-dir={member.data_dir}",
            f"--listen-client-urls={member.client_url}",
            f"--advertise-client-urls={member.client_url}",
            f"--listen-peer-urls={member.peer_url}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={initial_cluster or self.initial_cluster()}",
            f"--initial-cluster-state={state}",
            f"--initial-cluster-token={self.token}",
            "--enable-v2=false",
            "--client-cert-auth",
            f"--trusted-ca-file={tls.ca}",
            f"--cert-file={tls.server.cert}",
            f"--key-file={tls.server.key}",
            "--peer-client-cert-auth",
            f"--peer-trusted-ca-file={tls.ca}",
            f"--peer-cert-file={tls.server.cert}",
            f"--peer-key-file={tls.server.key}",
            "--logger=zap",
            *self.extra_flags,
        ]
        log = member.log_path.open("ab")
        member.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        log.close()

    def start_all(self, state: str = "new") -> None:
        for member in self.members:
            self.start(member, state)
        self.wait_healthy(self.members)

    def stop(self, member: Member, timeout: float = 15.0) -> None:
        if member.proc is None:
            return
        if member.proc.poll() is None:
            member.proc.terminate()
            try:
                member.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                member.proc.kill()
                member.proc.wait(5)
        member.proc = None

    def stop_all(self) -> None:
        for member in self.members:
            self.stop(member)

    def wait_healthy(self, members: list[Member], timeout: float = 30.0) -> None:
        gw = self.gateway()
        deadline = time.monotonic() + timeout
        try:
            for member in members:
                while not gw.healthy(member.client_url):
                    if member.proc is not None and member.proc.poll() is not None:
                        raise RuntimeError(
                            f"etcd {member.name} exited: {member.log_path.read_text()[-2000:]}"
                        )
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"etcd {member.name} not healthy within {timeout}s")
                    time.sleep(0.2)
        finally:
            gw.close()

    def leader(self) -> Member:
        gw = self.gateway()
        try:
            for member in self.members:
                if not member.running:
                    continue
                status = gw.status(member.client_url)
                if status["leader"] == status["header"]["member_id"]:
                    return member
        finally:
            gw.close()
        raise RuntimeError("no leader among running members")
