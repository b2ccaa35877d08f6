"""End-to-end on the site site.yml built: traffic through kube-proxy-lite, and edge autonomy.

The masters' `k3s` is the TEST STAND-IN serving the project's test Kubernetes API server; the
workers run the real edge agent and kube-proxy-lite against the first master's API. Objects
are created through that API's admin interface (loopback on the first master). Backends are
real HTTP servers on the workers, each on its own address on a dummy interface (or a veth
pair kept on the worker where the kernel has no dummy driver). That stands in for a pod
network: no CNI runs, so the workers get a route to each other's pod address.

Tests run in file order against one site: they build on each other.
"""

from __future__ import annotations

import base64
import json
import shlex
import time

import pytest
import testinfra

MASTERS = ["e2e-m1", "e2e-m2", "e2e-m3"]
WORKERS = ["e2e-w1", "e2e-w2"]
HOSTS = {name: testinfra.get_host(f"podman://{name}") for name in MASTERS + WORKERS}
FIRST = HOSTS[MASTERS[0]]
ADMIN = "http://127.0.0.1:6080"  # the stand-in's test API admin interface, loopback only
AGENT_API = "http://127.0.0.1:10260"

POD_IPS = {"e2e-w1": "10.244.1.10", "e2e-w2": "10.244.2.10"}
BACKEND_PORT = 8080
WEB_IP, LATE_IP, GONE_IP = "10.43.100.10", "10.43.100.20", "10.43.100.30"
WEB_NODEPORT = 30080
SERVICE_CIDR = "10.43.0.0/16"
# Bounded waits: a watch event and a batched proxy sync take well under a second; after the
# link returns, an agent reconnects within its backoff (at most 30 s) or its watch idle
# timeout (90 s) when a stalled stream has to be given up first.
SYNC_WAIT = 30
RESTART_WAIT = 10
RECONNECT_WAIT = 150

BACKEND = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (sys.argv[2] + "\\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[3])), Handler).serve_forever()
"""

ADMIN_CALL = """
import json, sys, urllib.error, urllib.request
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(sys.argv[2], data=data, method=sys.argv[1],
                             headers={"Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(req, timeout=5).read().decode())
except urllib.error.HTTPError as err:
    if err.code != 404:
        raise
    print("null")
"""


def admin(method: str, path: str, body: object = None) -> object:
    """One call to the admin interface; None for an object that does not exist."""
    args = [method, ADMIN + path] + ([json.dumps(body)] if body is not None else [])
    out = FIRST.check_output(
        "python3 -c " + shlex.quote(ADMIN_CALL) + " " + " ".join(map(shlex.quote, args))
    )
    return json.loads(out)


def get(host, url: str) -> str | None:
    """Body of one HTTP GET from `host`, or None when nothing answered within 2 s."""
    result = host.run(f"curl -s --max-time 2 {shlex.quote(url)}")
    return result.stdout.strip() if result.rc == 0 else None


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds} s: {what}")
        time.sleep(0.5)


def service(name: str, cluster_ip: str, node_port: int | None = None) -> dict:
    port = {"name": "http", "port": 80, "targetPort": BACKEND_PORT, "protocol": "TCP"}
    spec = {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip]}
    if node_port:
        spec["type"], port["nodePort"] = "NodePort", node_port
    spec["ports"] = [port]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}  # fmt: skip


def slice_of(name: str, workers: list[str]) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-e2e",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [POD_IPS[w]], "nodeName": w, "conditions": {"ready": True}}
            for w in workers
        ],
        "ports": [{"name": "http", "port": BACKEND_PORT, "protocol": "TCP"}],
    }


def upsert(*objects: dict) -> None:
    ops = [
        {"op": "upsert", "resource": "services" if o["kind"] == "Service" else "endpointslices",
         "object": o}
        for o in objects
    ]  # fmt: skip
    admin("POST", "/batch", {"ops": ops})


def answers(worker: str, url: str, count: int) -> set[str | None]:
    return {get(HOSTS[worker], url) for _ in range(count)}


@pytest.fixture(scope="module")
def ips() -> dict[str, str]:
    return {name: host.check_output("hostname -I").split()[0] for name, host in HOSTS.items()}


# --- the site site.yml built ----------------------------------------------------------------


def test_masters_run_etcd_and_the_k3s_stand_in_on_the_external_datastore(ips):
    endpoints = ",".join(f"https://{ips[m]}:2379" for m in MASTERS)
    for name in MASTERS:
        host = HOSTS[name]
        assert host.service("etcd").is_running
        assert host.service("k3s").is_running
        config = host.file("/etc/rancher/k3s/config.yaml").content_string
        assert f"datastore-endpoint: {endpoints}" in config
    members = FIRST.check_output(
        "ETCDCTL_API=3 etcdctl --cacert /etc/etcd/pki/ca.crt --cert /etc/etcd/pki/client.crt "
        "--key /etc/etcd/pki/client.key --endpoints https://127.0.0.1:2379 member list -w json"
    )
    assert len(json.loads(members)["members"]) == 3


def test_workers_joined_and_run_the_agent_with_k3s_credential_paths():
    nodes = {n["metadata"]["name"] for n in admin("GET", "/objects/nodes")}
    assert set(WORKERS) <= nodes
    for name in WORKERS:
        host = HOSTS[name]
        assert host.service("k3s-agent").is_running
        assert host.service("edgesite-agent").is_running
        config = json.loads(host.file("/etc/edgesite/agent.json").content_string)
        assert config["kubeconfig"] == "/var/lib/rancher/k3s/agent/kubelet.kubeconfig"
        assert config["proxy_kubeconfig"] == "/var/lib/rancher/k3s/agent/kubeproxy.kubeconfig"
        assert host.file(config["kubeconfig"]).mode == 0o600
        assert get(host, AGENT_API + "/readyz") is not None


# --- services with backends on the workers -------------------------------------------------


@pytest.fixture(scope="module")
def backends(ips):
    """One HTTP server per worker on its pod address; routes to the other worker's."""
    script = base64.b64encode(BACKEND.encode()).decode()
    for name in WORKERS:
        host = HOSTS[name]
        # Service addresses never leave the worker: what the proxy did not translate is
        # refused here (after its DNAT), so "not served" fails fast and reaches no one else.
        host.check_output(
            "nft list table inet e2e_guard >/dev/null 2>&1 || nft -f - <<'EOF'\n"
            "table inet e2e_guard {\n"
            "  chain out { type filter hook output priority 10; "
            f"ip daddr {SERVICE_CIDR} reject; }}\n"
            "}\nEOF"
        )
        host.check_output("systemctl start edgesite-agent")  # a re-run finds it running
        # A dummy interface where the kernel has the driver; else a veth pair whose both ends
        # stay on the worker (CI kernels without the dummy module).
        host.check_output(
            "ip link show e2e-pods >/dev/null 2>&1 || { { ip link add e2e-pods type dummy || "
            "{ ip link add e2e-pods type veth peer name e2e-pods-p && ip link set e2e-pods-p up; "
            f"}}; }} && ip addr add {POD_IPS[name]}/32 dev e2e-pods && ip link set e2e-pods up; }}"
        )
        for other in WORKERS:
            if other != name:
                host.check_output(f"ip route replace {POD_IPS[other]}/32 via {ips[other]}")
        host.check_output(
            f"echo {script} | base64 -d > /usr/local/bin/e2e-backend.py && "
            "{ systemctl is-active -q e2e-backend || systemd-run --unit e2e-backend "
            f"python3 /usr/local/bin/e2e-backend.py {POD_IPS[name]} {name} {BACKEND_PORT}; }}"
        )
    for name in WORKERS:
        url = f"http://{POD_IPS[name]}:{BACKEND_PORT}/"
        wait_for(lambda h=HOSTS[name], u=url: get(h, u), SYNC_WAIT, f"backend {url}")
    admin("DELETE", "/objects/services/default/late")  # left by an earlier verify run
    admin("DELETE", "/objects/endpointslices/default/late-e2e")
    upsert(
        service("web", WEB_IP, WEB_NODEPORT), slice_of("web", WORKERS),
        service("gone", GONE_IP), slice_of("gone", ["e2e-w1"]),
    )  # fmt: skip
    for name in WORKERS:
        for ip in (WEB_IP, GONE_IP):
            wait_for(lambda n=name, ip=ip: get(HOSTS[n], f"http://{ip}/"), SYNC_WAIT,
                     f"{ip} from {name}")  # fmt: skip


def test_clusterip_reaches_backends_on_both_workers_from_both_workers(backends):
    for name in WORKERS:
        # 20 requests spread over two endpoints: both answer (a miss has p = 2**-19).
        assert answers(name, f"http://{WEB_IP}/", 20) == set(WORKERS), name
        assert get(HOSTS[name], f"http://{GONE_IP}/") == "e2e-w1"


def test_nodeport_answers_on_every_worker_from_both_workers(backends, ips):
    for client in WORKERS:
        for target in WORKERS:
            url = f"http://{ips[target]}:{WEB_NODEPORT}/"
            assert answers(client, url, 4) <= set(WORKERS) and get(HOSTS[client], url), (
                client, target)  # fmt: skip


# --- workers cut off from every master -------------------------------------------------------


@pytest.fixture(scope="module")
def cut_off(backends, ips):
    """Drop every packet between the workers and the masters, in both directions."""
    masters = ", ".join(ips[m] for m in MASTERS)
    rules = (
        "table inet e2e_cutoff {\n"
        f"  chain in {{ type filter hook input priority -300; ip saddr {{ {masters} }} drop; }}\n"
        f"  chain out {{ type filter hook output priority -300; ip daddr {{ {masters} }} drop; }}\n"
        "}\n"
    )
    state = {"on": False}

    def apply(on: bool) -> None:
        for name in WORKERS:
            HOSTS[name].run("nft delete table inet e2e_cutoff")
            if on:
                HOSTS[name].check_output(f"printf %s {shlex.quote(rules)} | nft -f -")
        state["on"] = on

    apply(True)
    yield apply
    if state["on"]:
        apply(False)


def test_cut_off_workers_cannot_reach_any_master(cut_off, ips):
    for name in WORKERS:
        for master in MASTERS:
            url = f"https://{ips[master]}:6443/readyz"
            assert HOSTS[name].run(f"curl -sk --max-time 2 {url}").rc != 0, (name, master)


def test_services_keep_answering_while_cut_off(cut_off, ips):
    for name in WORKERS:
        assert answers(name, f"http://{WEB_IP}/", 20) == set(WORKERS), name
        assert get(HOSTS[name], f"http://{ips[name]}:{WEB_NODEPORT}/") in WORKERS


def test_agent_restarted_while_cut_off_rebuilds_rules_from_its_store(cut_off, ips):
    cleanup = "python3 /usr/local/lib/edgesite/edgesite-agent.pyz proxy cleanup"
    for name in WORKERS:
        host = HOSTS[name]
        # Stopped, and its packet rules removed as after a reboot: nothing answers any more.
        host.check_output(f"systemctl stop edgesite-agent && {cleanup}")
        assert get(host, f"http://{WEB_IP}/") is None
        host.check_output("systemctl start edgesite-agent")
        wait_for(lambda h=host: get(h, f"http://{WEB_IP}/"), RESTART_WAIT,
                 f"{WEB_IP} from {name} after the agent restarted offline")  # fmt: skip
        wait_for(lambda h=host: get(h, AGENT_API + "/readyz"), RESTART_WAIT, "agent ready")
        assert answers(name, f"http://{WEB_IP}/", 20) == set(WORKERS), name
        assert get(host, f"http://{ips[name]}:{WEB_NODEPORT}/") in WORKERS
        assert get(host, f"http://{GONE_IP}/") == "e2e-w1"


def test_changes_made_while_cut_off_are_applied_after_the_link_returns(cut_off, ips):
    upsert(service("late", LATE_IP), slice_of("late", ["e2e-w2"]), slice_of("web", ["e2e-w2"]))
    admin("DELETE", "/objects/services/default/gone")
    admin("DELETE", "/objects/endpointslices/default/gone-e2e")
    # Still cut off: the workers run on what they had.
    for name in WORKERS:
        assert get(HOSTS[name], f"http://{LATE_IP}/") is None
        assert get(HOSTS[name], f"http://{GONE_IP}/") == "e2e-w1"

    cut_off(False)

    def applied(name: str) -> bool:
        host = HOSTS[name]
        gone = host.run(f"curl -s -o /dev/null -w %{{http_code}} {AGENT_API}"
                        "/api/v1/namespaces/default/services/gone").stdout  # fmt: skip
        return (
            get(host, f"http://{LATE_IP}/") == "e2e-w2"
            and answers(name, f"http://{WEB_IP}/", 10) == {"e2e-w2"}
            and gone == "404"
        )

    for name in WORKERS:
        wait_for(lambda n=name: applied(n), RECONNECT_WAIT, f"changes applied on {name}")
        host = HOSTS[name]
        # The deleted service left the kernel too, whichever backend the proxy chose.
        rules = host.run("nft list ruleset; iptables-save").stdout
        assert GONE_IP not in rules and LATE_IP in rules
        assert get(host, f"http://{GONE_IP}/") is None


def test_agent_memory_with_the_proxy_enabled():
    """Prints the agent's resident memory on a worker after all of the above."""
    host = HOSTS[WORKERS[0]]
    pid = host.check_output("systemctl show -p MainPID --value edgesite-agent")
    status = dict(
        line.split(":", 1) for line in host.check_output(f"cat /proc/{pid}/status").splitlines()
    )
    rss = int(status["VmRSS"].split()[0]) / 1024
    peak = int(status["VmHWM"].split()[0]) / 1024
    config = json.loads(host.file("/etc/edgesite/agent.json").content_string)
    assert config["proxy"]["enabled"] is True
    print(f"\ne2e_agent_rss_mib: {rss:.1f} (peak {peak:.1f}) on {WORKERS[0]}, proxy enabled")
