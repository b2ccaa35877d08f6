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

M_ARENA_MAX = -8  # from glibc's malloc.h


class Allocator:
    """Loads libc lazily through ctypes (about 0.3 MiB, less than what it saves)."""

    def __init__(self) -> None:
        self._libc: object | None = None
        self._loaded = False

    def _lib(self) -> object | None:
        if not self._loaded:
            self._loaded = True
            try:
                import ctypes

                lib = ctypes.CDLL("libc.so.6")
                if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim"):
                    self._libc = lib
            except OSError:  # not glibc
                self._libc = None
        return self._libc

    def limit_arenas(self, n: int) -> bool:
        """Cap malloc arenas; only affects threads started afterwards."""
        lib = self._lib()
        return bool(lib is not None and lib.mallopt(M_ARENA_MAX, n))  # type: ignore[attr-defined]

    def trim(self) -> None:
        lib = self._lib()
        if lib is not None:
            lib.malloc_trim(0)  # type: ignore[attr-defined]

    # EventHandler: give the heap back once a full list has been applied.
    def on_event(self, kind: str, event_type: object, obj: object) -> None:
        pass

    def on_synced(self, kind: str) -> None:
        self.trim()
