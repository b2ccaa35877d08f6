"""The integration-test order for a state-changing module call."""

from __future__ import annotations

from typing import Any

from .ansible_run import run_module


def converge_twice(module: str, args: dict[str, Any]) -> dict[str, Any]:
    """check mode -> changed, real run -> changed, check again -> not changed, run again -> not
    changed. Returns the result of the first real run."""
    first_check = run_module(module, args, check=True, diff=True)
    assert not first_check.get("failed"), first_check
    assert first_check["changed"] is True, f"check mode should predict a change: {first_check}"

    applied = run_module(module, args, diff=True)
    assert not applied.get("failed"), applied
    assert applied["changed"] is True, applied

    second_check = run_module(module, args, check=True)
    assert not second_check.get("failed"), second_check
    assert second_check["changed"] is False, f"not idempotent in check mode: {second_check}"

    second = run_module(module, args)
    assert not second.get("failed"), second
    assert second["changed"] is False, f"second run changed again: {second}"
    return applied
