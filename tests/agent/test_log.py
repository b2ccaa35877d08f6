"""The agent's small logger: logging's line format, levels, children, tracebacks."""

from __future__ import annotations

import io
import re

from edgesite_agent.log import get_logger

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) ([\w.]+): ")


def test_lines_levels_and_children() -> None:
    out = io.StringIO()
    log = get_logger("edgesite_agent", "INFO", out)
    child = log.getChild("store")
    log.debug("hidden %s", "x")
    child.info("store %s loaded: %d objects", "/var/lib/s.db", 3)
    log.warning("plain message with a %% sign and no args")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    m = LINE.match(lines[0])
    assert m and m.groups() == ("INFO", "edgesite_agent.store")
    assert lines[0].endswith("store /var/lib/s.db loaded: 3 objects")
    assert lines[1].endswith("WARNING edgesite_agent: plain message with a %% sign and no args")
    assert log.isEnabledFor(20) and not log.isEnabledFor(10)


def test_exception_carries_the_traceback_and_bad_formats_do_not_raise() -> None:
    out = io.StringIO()
    log = get_logger("a", "DEBUG", out)
    try:
        {}["missing"]
    except KeyError:
        log.exception("handler %s failed", "Recorder")
    log.error("needs two %s %s", "only-one")
    text = out.getvalue()
    assert "ERROR a: handler Recorder failed\nTraceback (most recent call last):" in text
    assert "KeyError: 'missing'" in text
    assert "needs two %s %s" in text  # reported, not raised
