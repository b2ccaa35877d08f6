"""Kubernetes objects for each Service shape the proxy handles (shared by the tests)."""

from __future__ import annotations

from typing import Any

NODE = "edge-1"


def service(
    name: str,
    cluster_ip: str,
    ports: list[dict[str, Any]],
    namespace: str = "default",
    **spec: Any,
) -> dict[str, Any]:
    status = spec.pop("status", {})
    labels = spec.pop("labels", {})
    body: dict[str, Any] = {
        "type": "ClusterIP",
        "clusterIP": cluster_ip,
        "clusterIPs": [cluster_ip],
        "ports": ports,
    }
    body.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels},
        "spec": body,
        "status": status,
    }


def endpoint(ip: str, node: str = NODE, ready: bool = True, **cond: bool) -> dict[str, Any]:
    return {
        "addresses": [ip],
        "conditions": {"ready": ready, **cond},
        "nodeName": node,
    }


def endpoint_slice(
    service_name: str,
    endpoints: list[dict[str, Any]],
    ports: list[dict[str, Any]],
    namespace: str = "default",
    suffix: str = "abcde",
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "addressType": "IPv4",
        "metadata": {
            "name": f"{service_name}-{suffix}",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "endpoints": endpoints,
        "ports": ports,
    }


def tcp(port: int, name: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": name, "protocol": "TCP", "port": port, **extra}


# One entry per shape: name -> list of objects. Golden files are named after the shape.
SHAPES: dict[str, list[dict[str, Any]]] = {
    "clusterip": [
        service("web", "10.96.0.10", [tcp(80, "http", targetPort=8080)]),
        endpoint_slice(
            "web",
            [endpoint("10.244.1.5"), endpoint("10.244.2.7", node="edge-2")],
            [tcp(8080, "http")],
        ),
    ],
    "named-target-port-multi-port": [
        service(
            "api",
            "10.96.0.11",
            [tcp(443, "https", targetPort="https"), tcp(9090, "metrics", targetPort=9090)],
        ),
        endpoint_slice("api", [endpoint("10.244.1.8")], [tcp(8443, "https"), tcp(9090, "metrics")]),
    ],
    "udp-and-sctp": [
        service(
            "dns",
            "10.96.0.53",
            [
                {"name": "dns", "protocol": "UDP", "port": 53},
                {"name": "dns-tcp", "protocol": "TCP", "port": 53},
                {"name": "sig", "protocol": "SCTP", "port": 3868},
            ],
        ),
        endpoint_slice(
            "dns",
            [endpoint("10.244.1.9")],
            [
                {"name": "dns", "protocol": "UDP", "port": 5353},
                {"name": "dns-tcp", "protocol": "TCP", "port": 5353},
                {"name": "sig", "protocol": "SCTP", "port": 3868},
            ],
        ),
    ],
    "nodeport": [
        service("np", "10.96.0.20", [tcp(80, "http", nodePort=30080)], type="NodePort"),
        endpoint_slice(
            "np",
            [endpoint("10.244.1.5"), endpoint("10.244.2.5", node="edge-2")],
            [tcp(8080, "http")],
        ),
    ],
    "nodeport-local": [
        service(
            "npl",
            "10.96.0.21",
            [tcp(80, "http", nodePort=30081)],
            type="NodePort",
            externalTrafficPolicy="Local",
        ),
        endpoint_slice(
            "npl",
            [endpoint("10.244.1.6"), endpoint("10.244.2.6", node="edge-2")],
            [tcp(8080, "http")],
        ),
    ],
    "loadbalancer-externalip": [
        service(
            "lb",
            "10.96.0.30",
            [tcp(443, "https", nodePort=30443)],
            type="LoadBalancer",
            externalIPs=["192.0.2.10"],
            status={"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}},
        ),
        endpoint_slice("lb", [endpoint("10.244.1.10")], [tcp(8443, "https")]),
    ],
    "affinity": [
        service(
            "sticky",
            "10.96.0.40",
            [tcp(80, "http")],
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}},
        ),
        endpoint_slice(
            "sticky", [endpoint("10.244.1.11"), endpoint("10.244.1.12")], [tcp(8080, "http")]
        ),
    ],
    "internal-local": [
        service("itl", "10.96.0.50", [tcp(80, "http")], internalTrafficPolicy="Local"),
        endpoint_slice("itl", [endpoint("10.244.2.13", node="edge-2")], [tcp(8080, "http")]),
    ],
    "terminating-fallback": [
        service("term", "10.96.0.60", [tcp(80, "http")]),
        endpoint_slice(
            "term",
            [
                endpoint("10.244.1.14", ready=False, serving=True, terminating=True),
                endpoint("10.244.1.15", ready=False, serving=False, terminating=True),
                endpoint("10.244.1.16", ready=False, serving=False, terminating=False),
            ],
            [tcp(8080, "http")],
        ),
    ],
    "no-endpoints": [
        service("empty", "10.96.0.70", [tcp(80, "http", nodePort=30070)], type="NodePort"),
    ],
    "ignored-headless-and-other-proxy": [
        service("headless", "None", [tcp(80, "http")]),
        service(
            "other",
            "10.96.0.80",
            [tcp(80, "http")],
            labels={"service.kubernetes.io/service-proxy-name": "cilium"},
        ),
        endpoint_slice("headless", [endpoint("10.244.1.17")], [tcp(8080, "http")]),
    ],
}
