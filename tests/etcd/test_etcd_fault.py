"""A 3-member etcd keeps accepting writes with one member down, and the member catches up."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .cluster import EtcdCluster, Member
from .gateway import Gateway, GatewayError

MAX_KEYS = 3000  # the writer stops by itself at this bound at the latest


@dataclass
class Writer:
    """Writes /fault/NNNNN keys one by one, round-robin over the endpoints, failing over to the
    next endpoint on any error. Records only what etcd acknowledged."""

    cluster: EtcdCluster
    acked: dict[str, str] = field(default_factory=dict)
    acked_revision: int = 0
    failed_attempts: int = 0
    given_up: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def run(self) -> None:
        gw = self.cluster.gateway()
        endpoints = self.cluster.endpoints
        turn = 0
        try:
            for i in range(MAX_KEYS):
                if self.stop.is_set():
                    return
                key, value = f"/fault/{i:05d}", f"value-{i}"
                for attempt in range(200):  # bounded: about 20 s of retries per key at most
                    endpoint = endpoints[(turn + attempt) % len(endpoints)]
                    try:
                        revision = gw.put(endpoint, key, value)
                    except GatewayError:
                        self.failed_attempts += 1
                        time.sleep(0.1)
                        continue
                    with self.lock:
                        self.acked[key] = value
                        self.acked_revision = max(self.acked_revision, revision)
                    break
                else:
                    self.given_up.append(key)
                turn += 1
        finally:
            gw.close()


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def local_copy(gw: Gateway, member: Member) -> tuple[int, dict[str, str]]:
    """What this member itself holds (serializable read: no round trip to the leader)."""
    return gw.get_prefix(member.client_url, "/fault/", serializable=True)


def test_writes_continue_with_one_member_down_and_it_catches_up(cluster3: EtcdCluster) -> None:
    victim = cluster3.leader()  # the hardest case: losing the leader forces an election
    writer = Writer(cluster3)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: writer.count() >= 100, 30, "100 writes before the failure")
        cluster3.stop(victim)
        down_at = writer.count()
        wait_for(lambda: writer.count() >= down_at + 300, 60, "300 writes with a member down")
        assert not victim.running

        cluster3.start(victim)
        cluster3.wait_healthy([victim])
        up_at = writer.count()
        wait_for(lambda: writer.count() >= up_at + 100, 30, "100 writes after the restart")
    finally:
        writer.stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert writer.given_up == [], f"writes never acknowledged: {writer.given_up[:5]}"

    gw = cluster3.gateway()
    try:
        for member in cluster3.members:
            # The restarted member replays what it missed; wait until it has applied at least
            # the newest acknowledged revision, then compare its own copy key by key.
            wait_for(
                lambda m=member: local_copy(gw, m)[0] >= writer.acked_revision,
                30,
                f"{member.name} to catch up",
            )
            _, data = local_copy(gw, member)
            missing = [k for k in writer.acked if k not in data]
            assert missing == [], f"{member.name} lost acknowledged keys: {missing[:5]}"
            wrong = [k for k, v in writer.acked.items() if data[k] != v]
            assert wrong == [], f"{member.name} has wrong values for {wrong[:5]}"
    finally:
        gw.close()
    assert len(writer.acked) >= 500
