"""The contract between the informers and their consumers (store, proxy, local API).

Informers deliver Kubernetes objects as plain JSON dictionaries, exactly as the API
server sent them, so every consumer sees the same shape whether the object came from
a live watch or from the local store after an offline restart.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


# Type-only names live under TYPE_CHECKING: importing `typing` costs the long-running
# agent about 0.5 MiB resident, and annotations are never evaluated at run time
# (`from __future__ import annotations`). Type checkers treat the name TYPE_CHECKING as
# true whatever its value, the way typing.TYPE_CHECKING is meant to be used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    KubeObject = dict[str, Any]

    class EventHandler(Protocol):
        """Receives object changes for one or more kinds ("Pod", "Service", ...)."""

        def on_event(self, kind: str, event_type: EventType, obj: KubeObject) -> None:
            """One object changed. Called from the informer's thread; must not block long."""

        def on_synced(self, kind: str) -> None:
            """The handler has seen a complete state of `kind` (first list done, or store
            loaded)."""
else:
    KubeObject = dict
    EventHandler = object  # structural: handlers need not inherit from anything
