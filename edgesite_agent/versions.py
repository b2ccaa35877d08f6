"""The informers' diff state: (namespace, name) -> resourceVersion for every known object.

It lives in memory for the life of the agent (thousands of entries on a busy node), so it
is kept compact: one "namespace/name" string per key (namespaces and names never contain
"/") instead of a tuple of two strings, and decimal resourceVersions (etcd revisions, what
every real API server sends) as ints. About 130 bytes per object instead of about 280.
resourceVersions stay opaque: anything else is kept as the string it is, and `get` always
gives back exactly the string that was stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


def _pack_rv(rv: str) -> int | str:
    # Only canonical decimals ("0", "123"; not "0123" or "+1") round-trip through int.
    if rv.isascii() and rv.isdigit() and (rv == "0" or rv[0] != "0"):
        return int(rv)
    return rv


class Versions:
    """A mapping (namespace, name) -> resourceVersion with the dict methods the agent uses."""

    __slots__ = ("_d",)

    def __init__(self, items: Iterable[tuple[Key, str]] = ()) -> None:
        self._d: dict[str, int | str] = {}
        for key, rv in items:
            self[key] = rv

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and f"{key[0]}/{key[1]}" in self._d

    def __iter__(self) -> Iterator[Key]:
        for packed in self._d:
            ns, _, name = packed.partition("/")
            yield ns, name

    def __setitem__(self, key: Key, rv: str) -> None:
        self._d[f"{key[0]}/{key[1]}"] = _pack_rv(rv)

    def __getitem__(self, key: Key) -> str:
        return str(self._d[f"{key[0]}/{key[1]}"])

    def get(self, key: Key, default: str | None = None) -> str | None:
        rv = self._d.get(f"{key[0]}/{key[1]}")
        return default if rv is None else str(rv)

    def pop(self, key: Key, default: str | None = None) -> str | None:
        rv = self._d.pop(f"{key[0]}/{key[1]}", None)
        return default if rv is None else str(rv)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Versions):
            return self._d == other._d
        if isinstance(other, dict):
            return len(other) == len(self) and all(self.get(k) == v for k, v in other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like dict

    def __repr__(self) -> str:
        return f"Versions({dict(zip(self, map(str, self._d.values()), strict=True))!r})"
