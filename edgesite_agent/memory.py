"""Tell glibc's allocator how this agent uses memory (a no-op on other C libraries).

Two habits of glibc cost a small long-running Python process RSS it never uses again:
- each thread that allocates gets its own malloc arena (up to 8 per core), and freed memory
  in one arena is not reused by another thread, so a burst in one informer thread stays
  resident next to the others' (M_ARENA_MAX: the same as MALLOC_ARENA_MAX, set from inside
  so the agent behaves the same however it is started);
- freed memory stays in the arenas unless asked back (malloc_trim), e.g. after a full sync.
Measured on benchmarks/agent_footprint.py: see docs/agent.md.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see events.py)
if TYPE_CHECKING:
    from collections.abc import Callable

M_ARENA_MAX = -8  # from glibc's malloc.h
LIBC = "libc.so.6"


def _libc_functions(names: tuple[str, ...]) -> dict[str, Callable[..., int]] | None:
    """libc's functions by name, through `_ctypes`, the C half of ctypes.

    The `ctypes` package on top of it defines dozens of C types and helpers the agent never
    uses: measured 0.5 MiB for `ctypes.CDLL`, 0.27 MiB this way. Falls back to `ctypes` if
    a Python build's `_ctypes` differs; None when there is no glibc.
    """
    try:
        import _ctypes

        class Int(_ctypes._SimpleCData):  # what ctypes.c_int is
            _type_ = "i"

        class Function(_ctypes.CFuncPtr):  # what ctypes.CDLL's function type is
            _flags_ = _ctypes.FUNCFLAG_CDECL
            _restype_ = Int

        class Library:  # CFuncPtr((name, library)) reads `_handle`
            def __init__(self, path: str) -> None:
                self._handle = _ctypes.dlopen(path, os.RTLD_NOW)

        lib = Library(LIBC)
        return {name: Function((name, lib)) for name in names}
    except (ImportError, AttributeError, TypeError):
        pass
    except OSError:  # no glibc
        return None
    try:
        import ctypes

        cdll = ctypes.CDLL(LIBC)
        return {name: getattr(cdll, name) for name in names}
    except (OSError, AttributeError):
        return None


class Allocator:
    """Loads libc's malloc controls lazily (about 0.27 MiB, far less than they save)."""

    def __init__(self) -> None:
        self._libc: dict[str, Callable[..., int]] | None = None
        self._loaded = False

    def _lib(self) -> dict[str, Callable[..., int]] | None:
        if not self._loaded:
            self._loaded = True
            self._libc = _libc_functions(("mallopt", "malloc_trim"))
        return self._libc

    def limit_arenas(self, n: int) -> bool:
        """Cap malloc arenas; only affects threads started afterwards."""
        lib = self._lib()
        return bool(lib is not None and lib["mallopt"](M_ARENA_MAX, n))

    def trim(self) -> None:
        lib = self._lib()
        if lib is not None:
            lib["malloc_trim"](0)

    # EventHandler: give the heap back once a full list has been applied.
    def on_event(self, kind: str, event_type: object, obj: object) -> None:
        pass

    def on_synced(self, kind: str) -> None:
        self.trim()
