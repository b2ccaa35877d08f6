"""Throwaway PKI for the test API server, made with the `openssl` CLI (always on Debian).

Identities follow what a k3s worker really holds: the kubelet's client certificate is
CN=system:node:<name>, O=system:nodes; kube-proxy's is CN=system:kube-proxy. The test
server authorizes requests by these names, like the Node authorizer does.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClientCert:
    cert: Path
    key: Path


def _run(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _key(path: Path) -> None:
    # EC keys are fast to generate and to handshake with; TLS cost matters in benchmarks.
    _run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path))
    os.chmod(path, 0o600)


def ensure_ca(directory: Path) -> tuple[Path, Path]:
    """Create (or reuse) ca.crt/ca.key in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / "ca.crt", directory / "ca.key"
    if not crt.exists():
        _key(key)
        _run(
            "req", "-x509", "-new", "-key", str(key), "-sha256", "-days", "2",
            "-subj", "/CN=edgesite-test-ca", "-out", str(crt),
        )  # fmt: skip
    return crt, key


def _sign(directory: Path, name: str, subject: str, ext: str) -> ClientCert:
    ca_crt, ca_key = ensure_ca(directory)
    crt, key, csr = directory / f"{name}.crt", directory / f"{name}.key", directory / f"{name}.csr"
    if crt.exists() and key.exists():
        return ClientCert(crt, key)
    extfile = directory / f"{name}.ext"
    extfile.write_text(ext)
    _key(key)
    _run("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    _run(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(extfile), "-out", str(crt),
    )  # fmt: skip
    csr.unlink()
    extfile.unlink()
    return ClientCert(crt, key)


def server_cert(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> ClientCert:
    sans = ",".join(
        f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts
    )
    ext = f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n"
    return _sign(directory, "server", "/CN=kube-apiserver", ext)


def client_cert(directory: Path, name: str, cn: str, org: str = "") -> ClientCert:
    subject = f"/CN={cn}" + (f"/O={org}" if org else "")
    return _sign(directory, name, subject, "extendedKeyUsage=clientAuth\n")


def node_cert(directory: Path, node: str) -> ClientCert:
    return client_cert(directory, f"node-{node}", f"system:node:{node}", "system:nodes")


def proxy_cert(directory: Path) -> ClientCert:
    return client_cert(directory, "kube-proxy", "system:kube-proxy")


def admin_cert(directory: Path) -> ClientCert:
    return client_cert(directory, "admin", "admin", "system:masters")


def write_kubeconfig(path: Path, server: str, ca: Path, cred: ClientCert) -> Path:
    """A kubeconfig shaped like the ones k3s writes (YAML, files referenced by path)."""
    path.write_text(
        "apiVersion: v1\n"
        "clusters:\n"
        "- cluster:\n"
        f"    server: {server}\n"
        f"    certificate-authority: {ca}\n"
        "  name: local\n"
        "contexts:\n"
        "- context:\n"
        "    cluster: local\n"
        "    namespace: default\n"
        "    user: user\n"
        "  name: Default\n"
        "current-context: Default\n"
        "kind: Config\n"
        "preferences: {}\n"
        "users:\n"
        "- name: user\n"
        "  user:\n"
        f"    client-certificate: {cred.cert}\n"
        f"    client-key: {cred.key}\n"
    )
    os.chmod(path, 0o600)
    return path
