"""A minimal logger with the calls the agent (and the proxy it hands loggers to) makes:
debug/info/warning/error/exception with %-style arguments, getChild, isEnabledFor.

Why not logging: the module (with traceback, tokenize, linecache, string, weakref it pulls
in) stays resident for the agent's life, about 0.7 MiB of a 24 MiB budget
(docs/agent.md). Lines look like logging's "%(asctime)s %(levelname)s %(name)s: %(message)s",
so journald output is unchanged. A logging.Logger can be passed wherever this one is.
"""

from __future__ import annotations

import sys
import threading
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from typing import Any, TextIO

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}


class _Sink:
    """Where every logger of one tree writes: one stream, one level, one lock."""

    def __init__(self, level: int, stream: TextIO | None) -> None:
        self.level, self._stream = level, stream
        self._lock = threading.Lock()

    def write(self, level: str, name: str, msg: object, args: tuple[Any, ...], exc: bool) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError) as err:  # a bad format must not kill the caller
            text = f"{msg!r} % {args!r} ({err})"
        line = f"{stamp},{int(now * 1000) % 1000:03d} {level} {name}: {text}\n"
        if exc:
            import traceback  # only once something failed: it pulls in linecache, tokenize

            line += "".join(traceback.format_exception(*sys.exc_info()))
        stream = self._stream or sys.stderr
        with self._lock:
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError):  # closed or broken stderr: nothing better to do
                pass


class Logger:
    __slots__ = ("_sink", "name")

    def __init__(self, name: str, sink: _Sink) -> None:
        self.name, self._sink = name, sink

    def getChild(self, suffix: str) -> Logger:  # logging.Logger's name
        return Logger(f"{self.name}.{suffix}", self._sink)

    def isEnabledFor(self, level: int) -> bool:  # logging.Logger's name
        return level >= self._sink.level

    def _log(self, level: int, label: str, msg: object, args: tuple[Any, ...], exc: bool) -> None:
        if level >= self._sink.level:
            self._sink.write(label, self.name, msg, args, exc)

    def debug(self, msg: object, *args: Any) -> None:
        self._log(10, "DEBUG", msg, args, False)

    def info(self, msg: object, *args: Any) -> None:
        self._log(20, "INFO", msg, args, False)

    def warning(self, msg: object, *args: Any) -> None:
        self._log(30, "WARNING", msg, args, False)

    def error(self, msg: object, *args: Any) -> None:
        self._log(40, "ERROR", msg, args, False)

    def exception(self, msg: object, *args: Any) -> None:
        """error() plus the traceback of the exception being handled."""
        self._log(40, "ERROR", msg, args, True)


def get_logger(name: str, level: str = "INFO", stream: TextIO | None = None) -> Logger:
    """A root logger writing lines at `level` and above to `stream` (stderr by default)."""
    return Logger(name, _Sink(LEVELS[level.upper()], stream))
