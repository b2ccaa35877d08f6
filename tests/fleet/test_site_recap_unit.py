"""The site recap's one-line reason for a failed host."""

from __future__ import annotations

from ansible_collections.edgesite.fleet.plugins.callback.site_recap import _first_line


def test_the_reason_is_the_first_line_of_the_message():
    assert _first_line({"msg": "Site 'a' is not valid\n- fix this"}) == "Site 'a' is not valid"
    assert _first_line({"stderr": "kubectl: refused\nmore"}) == "kubectl: refused"


def test_a_no_log_failure_says_its_output_is_hidden():
    censored = {"censored": "the output has been hidden due to the fact that 'no_log: true'"}
    assert _first_line(censored) == "its output is hidden (no_log)"
    assert _first_line({}) == "no message"
