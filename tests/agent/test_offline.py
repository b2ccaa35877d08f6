"""Edge autonomy: dropped streams, API outages, offline restarts, corrupt stores, kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import urllib.request
from pathlib import Path
from typing import Any

from edgesite_agent.dispatch import Dispatcher
from edgesite_agent.events import EventType
from tests.agent.conftest import (
    agent_process,
    assert_store_equals_api,
    configmap,
    endpointslice,
    pod,
    populate,
    running_agent,
    service,
    store_matches_api,
    store_state,
    wait_until,
)
from tests.kubeapi import KubeAPIServer


def test_stream_dropped_mid_event(api: KubeAPIServer, make_config: Any) -> None:
    populate(api)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready, what="synced")
        for round_ in range(2):
            # Make sure the Pod watch is live (a bookmark past a fresh rv arrived) first.
            target = api.upsert("configmaps", configmap(f"tick{round_}"))["metadata"]
            rv = int(target["resourceVersion"])
            wait_until(
                lambda t=rv: int(agent.store.resource_version("Pod") or 0) >= t, what="live watch"
            )
            api.drop_streams(mid_event=True)
            api.upsert("pods", pod(f"mid{round_}"))
            api.delete("endpointslices", "default", f"s{round_}-abc")
            wait_until(lambda r=round_: store_matches_api(api, agent.cfg.store_path)
                       and agent.status.counter("watch_restarts_total", kind="Pod") > r,
                       what="store == API after the stream was cut")  # fmt: skip
        assert ("default", "half") not in store_state(agent.cfg.store_path, "Pod")


def test_api_down_with_changes_meanwhile(api: KubeAPIServer, make_config: Any) -> None:
    populate(api, n_pods=5, n_services=5)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready, what="synced")
        api.stop()
        # While down: creations, updates and deletions, some created-then-deleted.
        api.upsert("pods", pod("new-while-down"))
        api.upsert("pods", pod("short-lived"))
        api.delete("pods", "default", "short-lived")
        api.delete("pods", "default", "p3")
        api.upsert("services", service("s1", cluster_ip="10.43.9.9"))
        api.delete("services", "default", "s4")
        api.delete("endpointslices", "default", "s4-abc")
        api.upsert("endpointslices", endpointslice("s2", ips=("10.42.1.50", "10.42.1.51")))
        # Still serving the old state while the API is unreachable.
        assert agent.status.ready()
        assert ("default", "p3") in store_state(agent.cfg.store_path, "Pod")
        api.start()
        wait_until(lambda: store_matches_api(api, agent.cfg.store_path), what="store == API")
        assert_store_equals_api(api, agent.cfg.store_path)


def test_restart_while_offline_replays_then_reconciles(
    api: KubeAPIServer, make_config: Any
) -> None:
    populate(api, n_services=4)
    cfg = make_config()
    with running_agent(cfg) as agent:
        wait_until(agent.status.ready, what="synced")
        wait_until(lambda: store_state(agent.cfg.store_path, "ConfigMap"), what="configmaps")
    api.stop()
    api.delete("services", "default", "s3")
    api.upsert("services", service("s0", cluster_ip="10.43.7.7"))
    api.upsert("services", service("brand-new", cluster_ip="10.43.7.8"))

    events: list[tuple[str, str, str]] = []

    class Recorder:
        def on_event(self, kind: str, et: EventType, obj: dict[str, Any]) -> None:
            events.append((kind, str(et), obj["metadata"]["name"]))

        def on_synced(self, kind: str) -> None:
            events.append((kind, "SYNCED", ""))

    orig = Dispatcher.replay

    def replay(self: Dispatcher, kinds: list[str]) -> int:
        self.register(Recorder(), ["Service"])
        return orig(self, kinds)

    Dispatcher.replay = replay  # type: ignore[method-assign]
    try:
        with running_agent(cfg) as agent:
            # Offline: ready from the store, stored Services replayed as ADDED then synced.
            assert agent.status.ready()
            assert events[-1] == ("Service", "SYNCED", "")
            assert sorted(e[2] for e in events[:-1]) == ["s0", "s1", "s2", "s3"]
            assert {e[1] for e in events[:-1]} == {"ADDED"}
            with urllib.request.urlopen(agent.localapi.url + "/api/v1/pods") as r:
                assert len(json.load(r)["items"]) == 3
            with urllib.request.urlopen(agent.localapi.url + "/readyz") as r:
                assert r.status == 200
            replayed = len(events)
            api.start()
            wait_until(lambda: store_matches_api(api, agent.cfg.store_path), what="reconciled")
            wait_until(lambda: ("Service", "SYNCED", "") in events[replayed:])
            after = [e for e in events[replayed:] if e[1] != "SYNCED"]
            # Only real changes: no ADDED churn for unchanged s1, s2.
            assert sorted(after) == [
                ("Service", "ADDED", "brand-new"),
                ("Service", "DELETED", "s3"),
                ("Service", "MODIFIED", "s0"),
            ]
    finally:
        Dispatcher.replay = orig  # type: ignore[method-assign]


def test_corrupt_and_foreign_store_moved_aside_and_rebuilt(
    api: KubeAPIServer, make_config: Any, tmp_path: Path
) -> None:
    populate(api)
    for label, content in (("garbage", b"this is not a database" * 100), ("foreign", None)):
        store = tmp_path / f"{label}.db"
        if content is not None:
            store.write_bytes(content)
        else:
            db = sqlite3.connect(store)
            db.execute("CREATE TABLE something_else (x)")
            db.commit()
            db.close()
        with running_agent(make_config(store_path=str(store))) as agent:
            wait_until(agent.status.ready, what="synced")
            assert agent.store.moved_aside is not None and os.path.exists(agent.store.moved_aside)
            wait_until(lambda s=store: store_matches_api(api, s), what="rebuilt")
        assert stat.S_IMODE(store.stat().st_mode) == 0o600


def test_store_file_mode_and_secrets_opt_in(api: KubeAPIServer, make_config: Any) -> None:
    populate(api)
    with running_agent(make_config()) as agent:
        wait_until(agent.status.ready)
        path = Path(agent.cfg.store_path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for side in (Path(str(path) + "-wal"), Path(str(path) + "-shm")):
            if side.exists():
                assert stat.S_IMODE(side.stat().st_mode) & 0o077 == 0


def test_kill_9_while_applying_leaves_consistent_store(
    api: KubeAPIServer, make_config: Any, tmp_path: Path
) -> None:
    populate(api)
    cfg = make_config(log_level="WARNING")
    store_path = json.loads(cfg.read_text())["store_path"]
    with agent_process(cfg, tmp_path / "agent.log") as proc:
        wait_until(lambda: Path(store_path).exists() and store_state(store_path, "Pod"),
                   timeout=30, what="first sync")  # fmt: skip
        # A bounded burst of events; the agent is killed while applying them.
        for i in range(400):
            api.upsert("pods", pod(f"burst{i}"))
            if i == 300:
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    db = sqlite3.connect(store_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for _kind, ns, name, rv, text in db.execute(
        "SELECT kind, namespace, name, resource_version, json FROM objects"
    ):
        obj = json.loads(text)  # every row is a whole object
        assert (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]) == (ns, name)
        assert obj["metadata"]["resourceVersion"] == rv
    db.close()
    with agent_process(cfg, tmp_path / "agent2.log"):
        wait_until(lambda: store_matches_api(api, store_path), timeout=30, what="recovered")
