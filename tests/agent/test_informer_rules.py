"""Informer rules 1-8 (edgesite_agent/informer.py), each driven through the TLS test API."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from edgesite_agent.client import ApiError, KubeClient
from edgesite_agent.dispatch import Dispatcher
from edgesite_agent.events import EventType
from edgesite_agent.informer import Backoff, Reflector, ResourceSpec
from edgesite_agent.kubeconfig import load_kubeconfig
from edgesite_agent.status import Status
from edgesite_agent.store import Store
from tests.agent.conftest import (
    NODE,
    api_state,
    assert_store_equals_api,
    configmap,
    endpointslice,
    in_scope,
    kubeconfigs,
    node,
    pod,
    populate,
    running_agent,
    secret,
    service,
    store_matches_api,
    store_state,
    wait_until,
)
from tests.kubeapi import KubeAPIServer

log = logging.getLogger("test")


def _watches(api: KubeAPIServer, path: str) -> list[dict[str, str]]:
    return [r.query for r in list(api.requests) if r.path == path and r.query.get("watch")]


def _lists(api: KubeAPIServer, path: str) -> list[dict[str, str]]:
    return [r.query for r in list(api.requests) if r.path == path and not r.query.get("watch")]


def test_rule1_list_at_rv0_then_watch_from_list_rv_and_bookmarks_advance(
    api: KubeAPIServer, make_config: Any
) -> None:
    populate(api)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready, what="synced")
        first_list = _lists(api, "/api/v1/pods")[0]
        assert first_list["resourceVersion"] == "0"
        list_rv = store_state(agent.cfg.store_path, "Pod")  # objects present
        assert list_rv
        watch = wait_until(lambda: _watches(api, "/api/v1/pods"), what="watch")[0]
        assert watch["allowWatchBookmarks"] == "true"
        synced_rv = int(watch["resourceVersion"])
        assert synced_rv >= int(api_state(api, "Pod", in_scope("Pod"))[("default", "p0")])
        # Changes to other kinds only: Pods get no event, yet bookmarks move their rv on.
        for i in range(3):
            api.upsert("configmaps", configmap(f"noise{i}"))
        target = api.state.rv
        wait_until(lambda: int(agent.store.resource_version("Pod") or 0) >= target,
                   what="bookmark to advance the Pod resourceVersion")  # fmt: skip
        # An event advances it as well, and is applied.
        api.upsert("pods", pod("late"))
        wait_until(lambda: ("default", "late") in store_state(agent.cfg.store_path, "Pod"))
        assert int(agent.store.resource_version("Pod")) >= int(
            api.state.get("pods", "default", "late")["metadata"]["resourceVersion"]
        )


def test_rule2_gone_relists_from_scratch_and_removes_deleted(
    api: KubeAPIServer, make_config: Any
) -> None:
    populate(api)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready, what="synced")
        n_lists = len(_lists(api, "/api/v1/pods"))
        api.stop()
        api.delete("pods", "default", "p1")
        api.upsert("pods", pod("p9"))
        api.delete("services", "default", "s0")
        api.compact()  # the agent's resourceVersion is now too old
        api.start()
        wait_until(lambda: store_matches_api(api, agent.cfg.store_path), what="store == API")
        relists = _lists(api, "/api/v1/pods")[n_lists:]
        assert relists and relists[0]["resourceVersion"] == ""
        # Never retried the compacted version after the 410.
        watches = _watches(api, "/api/v1/pods")
        gone_rv = watches[0]["resourceVersion"]
        assert sum(1 for w in watches if w["resourceVersion"] == gone_rv) <= 2
        assert agent.status.counter("relists_total", kind="Pod") >= 2


def _reflector(api: KubeAPIServer, tls_dir: Path, tmp_path: Path, kind: str = "Pod",
               **kw: Any) -> tuple[Reflector, Store, threading.Event]:  # fmt: skip
    creds = load_kubeconfig(kubeconfigs(tls_dir, api, tmp_path)["kubeconfig"])
    client = KubeClient(creds, read_timeout=5)
    store = Store(tmp_path / "r.db", log)
    status = Status()
    disp = Dispatcher(store, status, log)
    stop = threading.Event()
    spec = ResourceSpec(kind, "v1", "/api/v1/pods", field_selector=f"spec.nodeName={NODE}")
    r = Reflector(spec, client, disp, store.versions(kind), status, log, stop,
                  idle_timeout=5, **kw)  # fmt: skip
    return r, store, stop


def test_rule3_expired_continue_token_restarts_list(
    api: KubeAPIServer, tls_dir: Path, tmp_path: Path
) -> None:
    api.options.paginate_rv0 = True
    for i in range(7):
        api.upsert("pods", pod(f"p{i}"))
    r, store, _stop = _reflector(api, tls_dir, tmp_path, page_size=2)

    class ExpireOnce:
        def __init__(self) -> None:
            self.done = False

        def on_event(self, kind: str, et: EventType, obj: dict[str, Any]) -> None:
            if not self.done:  # after the first page: the server forgets its tokens
                self.done = True
                api.expire_tokens()
                api.delete("pods", "default", "p6")

        def on_synced(self, kind: str) -> None:
            pass

    assert isinstance(r.sink, Dispatcher)
    r.sink.register(ExpireOnce(), ["Pod"])
    r._list()
    lists = _lists(api, "/api/v1/pods")
    assert any("continue" in q for q in lists)
    restarted = [q for q in lists if "continue" not in q][1:]
    assert restarted and restarted[0]["resourceVersion"] == ""
    assert store_state(tmp_path / "r.db", "Pod") == api_state(api, "Pod")
    store.close()


def test_rule4_backoff_doubles_caps_jitters_and_resets() -> None:
    now = [0.0]
    b = Backoff(clock=lambda: now[0], rand=lambda: 0.0)
    delays = []
    for _ in range(8):
        delays.append(b.next())
        now[0] += 1
    assert delays == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]
    now[0] += 121  # two healthy minutes
    assert b.next() == 0.8
    jittery = Backoff(clock=lambda: now[0], rand=lambda: 1.0)
    assert 0.8 < jittery.next() <= 0.8 * 1.1 + 1e-9


def test_rule5_watch_timeout_randomised_and_reads_time_out(
    api: KubeAPIServer, make_config: Any, tls_dir: Path, tmp_path: Path
) -> None:
    populate(api)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready, what="synced")
        for kind_path in ("/api/v1/pods", "/api/v1/services", "/api/v1/nodes"):
            w = wait_until(lambda p=kind_path: _watches(api, p), what="watch")[0]
            assert 300 <= int(w["timeoutSeconds"]) <= 600
    # A server that accepts but never answers: the read timeout ends the request.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        creds = load_kubeconfig(kubeconfigs(tls_dir, api, tmp_path)["kubeconfig"])
        port = silent.getsockname()[1]
        creds = type(creds)(**{**creds.__dict__, "server": f"https://127.0.0.1:{port}"})
        client = KubeClient(creds, connect_timeout=0.5, read_timeout=0.5)
        result: list[BaseException] = []
        t = threading.Thread(target=lambda: _capture(result, client.get, "/api/v1/pods"))
        t.start()
        t.join(30)
        assert not t.is_alive(), "request without a read timeout hung"
        assert result and isinstance(result[0], ApiError)


def _capture(out: list[BaseException], fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except BaseException as exc:
        out.append(exc)


def test_rule6_watch_list_streams_initial_events(api: KubeAPIServer, make_config: Any) -> None:
    populate(api)
    with running_agent(make_config(watch_list=True)) as agent:
        # Every kind compared below must have finished its initial events first.
        wait_until(
            lambda: agent.status.synced >= {"Pod", "Node", "Service", "EndpointSlice"},
            what="initial events of every listed kind",
        )
        assert_store_equals_api(api, agent.cfg.store_path)
        assert not _lists(api, "/api/v1/pods"), "watch-list must replace the list"
        w = _watches(api, "/api/v1/pods")[0]
        assert w["sendInitialEvents"] == "true"
        assert w["resourceVersionMatch"] == "NotOlderThan"
        api.upsert("pods", pod("after"))
        wait_until(lambda: store_matches_api(api, agent.cfg.store_path))


def test_rule6_falls_back_to_list_watch_when_refused(api: KubeAPIServer, make_config: Any) -> None:
    populate(api)
    api.options.refuse_watch_list = True
    with running_agent(make_config(watch_list=True)) as agent:
        wait_until(agent.status.ready, what="synced")
        assert_store_equals_api(api, agent.cfg.store_path)
        assert _lists(api, "/api/v1/pods")[0]["resourceVersion"] == "0"


def test_rule7_scope(api: KubeAPIServer, make_config: Any, tls_dir: Path, tmp_path: Path) -> None:
    populate(api)
    proxy_label = {"service.kubernetes.io/service-proxy-name": "other-proxy"}
    api.upsert("services", service("foreign", labels=proxy_label))
    api.upsert("services", service("headless", cluster_ip="None"))
    api.upsert("endpointslices", endpointslice("headless",
               labels={"service.kubernetes.io/headless": ""}))  # fmt: skip
    api.upsert("secrets", secret("sec0"))
    api.upsert("pods", pod("with-secret", secrets=("sec0",)))
    for cache in (False, True):
        cfg = make_config(cache_secrets=cache, store_path=str(tmp_path / f"s{cache}.db"))
        with running_agent(cfg) as agent:
            sp = agent.cfg.store_path
            wait_until(agent.status.ready, what="synced")
            wait_until(lambda sp=sp: len(store_state(sp, "ConfigMap")) == 3, what="configmaps")
            assert set(store_state(sp, "Pod")) == {("default", f"p{i}") for i in range(3)} | {
                ("default", "with-secret")
            }
            assert set(store_state(sp, "Node")) == {("", NODE)}
            assert ("default", "foreign") not in store_state(sp, "Service")
            assert ("default", "headless") not in store_state(sp, "Service")
            assert ("default", "headless-abc") not in store_state(sp, "EndpointSlice")
            assert set(store_state(sp, "ConfigMap")) == {("default", f"cm{i}") for i in range(3)}
            if cache:
                wait_until(lambda sp=sp: store_state(sp, "Secret"), what="secret cached")
            else:
                assert store_state(sp, "Secret") == {}
            # A Service turning headless leaves the scope: it is deleted locally.
            api.upsert("services", service("s1", cluster_ip="None"))
            wait_until(lambda sp=sp: ("default", "s1") not in store_state(sp, "Service"))
            api.upsert("services", service("s1", cluster_ip="10.43.0.11"))
            # A pod that stops referencing a ConfigMap: the ConfigMap leaves the store.
            api.upsert("pods", pod("p2"))
            wait_until(lambda sp=sp: ("default", "cm2") not in store_state(sp, "ConfigMap"))
            api.upsert("pods", pod("p2", configmaps=("cm2",)))
    # Least privilege: the node identity cannot read EndpointSlices or other nodes' pods.
    node_client = KubeClient(load_kubeconfig(kubeconfigs(tls_dir, api, tmp_path)["kubeconfig"]))
    for path, params in (("/apis/discovery.k8s.io/v1/endpointslices", {}),
                         ("/api/v1/pods", {"fieldSelector": "spec.nodeName=edge-2"}),
                         ("/api/v1/namespaces/default/configmaps/unreferenced", {})):  # fmt: skip
        with pytest.raises(ApiError) as err:
            node_client.get(path, params)
        assert err.value.code == 403


def test_rule8_handlers_get_add_update_delete(api: KubeAPIServer, make_config: Any) -> None:
    populate(api)
    seen: list[tuple[str, str, str]] = []
    synced: list[str] = []

    class Recorder:
        def on_event(self, kind: str, et: EventType, obj: dict[str, Any]) -> None:
            seen.append((kind, str(et), obj["metadata"]["name"]))

        def on_synced(self, kind: str) -> None:
            synced.append(kind)

    from edgesite_agent.agent import Agent
    from edgesite_agent.config import load_config

    agent = Agent(load_config(make_config()), log)
    orig = Dispatcher.replay

    def replay_with_recorder(self: Dispatcher, kinds: list[str]) -> int:
        self.register(Recorder(), ["Service", "EndpointSlice"])
        return orig(self, kinds)

    Dispatcher.replay = replay_with_recorder  # type: ignore[method-assign]
    try:
        agent.start()
    finally:
        Dispatcher.replay = orig  # type: ignore[method-assign]
    try:
        wait_until(lambda: synced.count("Service") >= 2 and "EndpointSlice" in synced)
        assert ("Service", "ADDED", "s0") in seen
        api.upsert("services", service("s0", cluster_ip="10.43.0.99"))
        api.delete("endpointslices", "default", "s2-abc")
        wait_until(lambda: ("Service", "MODIFIED", "s0") in seen)
        wait_until(lambda: ("EndpointSlice", "DELETED", "s2-abc") in seen)
    finally:
        agent.stop()


def test_unknown_watch_resources_are_status_objects(api: KubeAPIServer, tls_dir: Path,
                                                    tmp_path: Path) -> None:  # fmt: skip
    client = KubeClient(load_kubeconfig(kubeconfigs(tls_dir, api, tmp_path)["kubeconfig"]))
    with pytest.raises(ApiError) as err:
        client.get("/api/v1/namespaces/default/pods/missing-but-forbidden",
                   {"fieldSelector": "bad.field=1"})  # fmt: skip
    assert err.value.code in (400, 403, 404)
    assert err.value.reason in ("BadRequest", "Forbidden", "NotFound")
    api.upsert("nodes", node())
    assert client.get(f"/api/v1/nodes/{NODE}")["metadata"]["name"] == NODE


def test_rule7_referenced_configmaps_follow_changes_and_deletion_by_name(
    api: KubeAPIServer, make_config: Any
) -> None:
    populate(api)
    api.upsert("pods", pod("late-ref", configmaps=("not-yet",)))  # referenced before it exists
    with running_agent(make_config()) as agent:
        sp = agent.cfg.store_path
        wait_until(agent.status.ready, what="synced")
        wait_until(lambda: len(store_state(sp, "ConfigMap")) == 3, what="configmaps")
        assert ("default", "not-yet") not in store_state(sp, "ConfigMap")  # 404: nothing
        # Created later: the next round of per-name GETs finds it.
        api.upsert("configmaps", configmap("not-yet"))
        wait_until(lambda: ("default", "not-yet") in store_state(sp, "ConfigMap"))
        # Changed in the API: the store follows, with the new content.
        new = api.upsert("configmaps", configmap("cm0", data={"k": "changed"}))["metadata"]
        wait_until(lambda: store_state(sp, "ConfigMap").get(("default", "cm0"))
                   == new["resourceVersion"], what="cm0 modified")  # fmt: skip
        assert '"changed"' in (agent.store.get_json("ConfigMap", "default", "cm0") or "")
        # Deleted in the API while still referenced: gone from the store too.
        api.delete("configmaps", "default", "cm1")
        wait_until(lambda: ("default", "cm1") not in store_state(sp, "ConfigMap"))
        # Only GETs by name, never a collection list or watch (the Node authorizer's rule).
        cm_requests = [r for r in list(api.requests) if "/configmaps" in r.path]
        assert cm_requests and all(r.path.rsplit("/", 2)[-2] == "configmaps"
                                   and not r.query for r in cm_requests)  # fmt: skip


_OLD_PODS = [{"metadata": {"name": n, "namespace": "default", "resourceVersion": "5"},
              "spec": {"nodeName": NODE}} for n in ("p0", "p1")]  # fmt: skip


class _OldApiServer:
    """A TLS peer answering like a kube-apiserver older than 1.27: `sendInitialEvents` is
    ignored, so a watch from resourceVersion "" sends the current objects as ADDED and
    periodic bookmarks without the initial-events-end annotation, then ends at its
    timeout. Lists and ordinary watches answer normally."""

    def __init__(self, tls_dir: Path) -> None:
        import socketserver
        import ssl

        from tests.kubeapi import certs

        srv_cert = certs.server_cert(tls_dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(srv_cert.cert, srv_cert.key)
        self.queries: list[str] = []
        self.closing = threading.Event()
        peer = self

        class Handler(socketserver.StreamRequestHandler):
            def setup(self) -> None:
                self.request = ctx.wrap_socket(self.request, server_side=True)
                super().setup()

            def handle(self) -> None:
                while not peer.closing.is_set():
                    line = self.rfile.readline()
                    if not line:
                        return
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    query = line.split()[1].decode().partition("?")[2]
                    peer.queries.append(query)
                    self.answer(query)

            def send(self, *chunks: bytes, end: bool = True) -> None:
                out = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
                self.wfile.write(out + (b"0\r\n\r\n" if end else b""))
                self.wfile.flush()

            def answer(self, query: str) -> None:
                import json

                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
                if "watch=1" not in query:
                    doc = {"kind": "PodList", "metadata": {"resourceVersion": "5"},
                           "items": _OLD_PODS}  # fmt: skip
                    return self.send(json.dumps(doc).encode())
                if "sendInitialEvents=true" in query:
                    events = [{"type": "ADDED", "object": p} for p in _OLD_PODS]
                    events.append({"type": "BOOKMARK", "object": {
                        "kind": "Pod", "metadata": {"resourceVersion": "5"}}})  # fmt: skip
                    return self.send(*(json.dumps(e).encode() + b"\n" for e in events))
                self.send(end=False)  # an ordinary watch: quiet until the test ends
                peer.closing.wait(30)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


def test_rule6_falls_back_when_the_server_ignores_send_initial_events(
    tls_dir: Path, tmp_path: Path
) -> None:
    from tests.kubeapi import certs

    old = _OldApiServer(tls_dir)
    kc = certs.write_kubeconfig(tmp_path / "kc", old.url, tls_dir / "ca.crt",
                                certs.node_cert(tls_dir, NODE))  # fmt: skip
    store = Store(tmp_path / "old.db", log)
    status = Status()
    stop = threading.Event()
    spec = ResourceSpec("Pod", "v1", "/api/v1/pods", field_selector=f"spec.nodeName={NODE}")
    r = Reflector(spec, KubeClient(load_kubeconfig(kc), read_timeout=5),
                  Dispatcher(store, status, log), store.versions("Pod"), status, log, stop,
                  watch_list=True, idle_timeout=5)  # fmt: skip
    t = threading.Thread(target=r.run, daemon=True)
    t.start()
    try:
        wait_until(lambda: "Pod" in status.synced, what="synced after falling back")
        assert store_state(tmp_path / "old.db", "Pod") == {("default", "p0"): "5",
                                                           ("default", "p1"): "5"}  # fmt: skip
        wait_until(lambda: len(old.queries) >= 3, what="the watch after the list")
        first, listed, watched = old.queries[:3]
        assert "sendInitialEvents=true" in first
        assert "watch=1" not in listed and "resourceVersion=0" in listed
        assert "watch=1" in watched and "resourceVersion=5" in watched
        assert "sendInitialEvents" not in watched and not r.watch_list
    finally:
        stop.set()
        r.close()
        old.stop()
        t.join(10)
        store.close()
