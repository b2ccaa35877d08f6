"""A base for the proxy's small value classes: what @dataclass would give them.

`dataclasses` imports inspect, ast, dis and tokenize: about 0.6 MiB resident in an agent
that must stay small (docs/agent.md). Subclasses name their fields in `__slots__` and
write their own `__init__`; equality and repr compare and show the fields in that order.
"""

from __future__ import annotations


class Record:
    __slots__ = ()

    def _field_names(self) -> tuple[str, ...]:
        # `_fields` when a class keeps a field in another form than it shows it
        return getattr(self, "_fields", self.__slots__)  # type: ignore[no-any-return]

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._field_names())

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()  # type: ignore[attr-defined]

    __hash__ = None  # mutable containers inside: unhashable, as @dataclass(eq=True)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._field_names())
        return f"{type(self).__name__}({fields})"
