"""The agent as installed by the role: hardened unit, ready, serving, programming rules."""

import json
import time

ADMIN = "http://127.0.0.1:6080"
LOCAL_API = "http://127.0.0.1:10260"


def http(host, method, url, body=None):
    script = (
        "import json,sys,urllib.request;"
        f"req=urllib.request.Request({url!r},method={method!r},"
        f"data={json.dumps(body).encode() if body is not None else None!r},"
        "headers={'Content-Type':'application/json'});"
        "r=urllib.request.urlopen(req,timeout=5);print(r.status);print(r.read().decode())"
    )
    out = host.check_output(f"python3 -c {json.dumps(script)}")
    status, _, payload = out.partition("\n")
    return int(status), payload


def test_service_active_and_enabled(host):
    service = host.service("edgesite-agent")
    assert service.is_running
    assert service.is_enabled


def test_ready(host):
    status, _ = http(host, "GET", LOCAL_API + "/readyz")
    assert status == 200


def test_unit_is_hardened(host):
    props = host.check_output(
        "systemctl show edgesite-agent -p CapabilityBoundingSet -p ProtectSystem "
        "-p NoNewPrivileges -p PrivateTmp -p MemoryMax -p Restart"
    )
    values = dict(line.split("=", 1) for line in props.splitlines())
    assert set(values["CapabilityBoundingSet"].split()) == {"cap_net_admin", "cap_net_raw"}
    assert values["ProtectSystem"] == "strict"
    assert values["NoNewPrivileges"] == "yes"
    assert values["PrivateTmp"] == "yes"
    assert values["Restart"] == "on-failure"
    assert values["MemoryMax"] != "infinity"


def test_files_and_modes(host):
    config = host.file("/etc/edgesite/agent.json")
    assert config.mode == 0o640
    assert json.loads(config.content_string)["node_name"] == "agent-worker"
    store = host.file("/var/lib/edgesite-agent")
    assert store.is_directory
    assert store.mode == 0o700
    assert host.file("/usr/local/lib/edgesite/edgesite-agent.pyz").mode == 0o755


def test_service_from_the_api_is_programmed_and_served(host):
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.43.7.7",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
        },
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-abc",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.42.1.5"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
    http(host, "POST", ADMIN + "/objects/services", service)
    http(host, "POST", ADMIN + "/objects/endpointslices", endpoints)
    # Bounded wait for the watch event and the batched sync to reach the kernel.
    for _ in range(30):
        rules = host.run("nft list table ip edgesite")
        if rules.rc == 0 and "10.43.7.7" in rules.stdout and "10.42.1.5" in rules.stdout:
            break
        time.sleep(1)
    assert "10.43.7.7" in rules.stdout
    assert "10.42.1.5" in rules.stdout
    status, body = http(host, "GET", LOCAL_API + "/api/v1/namespaces/default/services/web")
    assert status == 200
    assert json.loads(body)["spec"]["clusterIP"] == "10.43.7.7"
