"""The contract between the informers and their consumers (store, proxy, local API).

Informers deliver Kubernetes objects as plain JSON dictionaries, exactly as the API
server sent them, so every consumer sees the same shape whether the object came from
a live watch or from the local store after an offline restart.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol


class EventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


KubeObject = dict[str, Any]


class EventHandler(Protocol):
    """Receives object changes for one or more kinds ("Pod", "Service", "EndpointSlice", ...)."""

    def on_event(self, kind: str, event_type: EventType, obj: KubeObject) -> None:
        """One object changed. Called from the informer's thread; must not block for long."""

    def on_synced(self, kind: str) -> None:
        """The handler has seen a complete state of `kind` (first list done, or store loaded)."""
