"""Field and label selectors, the subset the Kubernetes API defines for these resources."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.kubeapi.state import ApiStatusError

Obj = dict[str, Any]

_FIELDS: dict[str, Callable[[Obj], str]] = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name", ""),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace", ""),
    "spec.nodeName": lambda o: o.get("spec", {}).get("nodeName", ""),
}


def parse_fields(selector: str) -> list[tuple[str, str, bool]]:
    """'a=b,c!=d' -> [(a, b, True), (c, d, False)]; unsupported fields are a 400, as upstream."""
    out = []
    for term in filter(None, selector.split(",")):
        neg = "!=" in term
        field, _, value = term.partition("!=" if neg else "==" if "==" in term else "=")
        if field not in _FIELDS:
            raise ApiStatusError(
                400, "BadRequest", f'"{field}" is not a known field selector: only '
                + ", ".join(f'"{f}"' for f in _FIELDS)
            )  # fmt: skip
        out.append((field, value, not neg))
    return out


def parse_labels(selector: str) -> list[tuple[str, str, str | None]]:
    """Terms: key, !key, key=value, key==value, key!=value."""
    out: list[tuple[str, str, str | None]] = []
    for raw in filter(None, (t.strip() for t in selector.split(","))):
        if raw.startswith("!"):
            out.append(("absent", raw[1:], None))
        elif "!=" in raw:
            k, _, v = raw.partition("!=")
            out.append(("ne", k, v))
        elif "=" in raw:
            k, _, v = raw.partition("==" if "==" in raw else "=")
            out.append(("eq", k, v))
        else:
            out.append(("present", raw, None))
    return out


def matcher(field_selector: str, label_selector: str) -> Callable[[Obj], bool]:
    fields = parse_fields(field_selector)
    labels = parse_labels(label_selector)

    def match(obj: Obj) -> bool:
        for field, value, eq in fields:
            if (_FIELDS[field](obj) == value) != eq:
                return False
        have = obj.get("metadata", {}).get("labels") or {}
        for op, key, value in labels:
            if op == "absent" and key in have:
                return False
            if op == "present" and key not in have:
                return False
            if op == "eq" and have.get(key) != value:
                return False
            if op == "ne" and have.get(key) == value:
                return False
        return True

    return match


def field_value(selector: str, field: str) -> str | None:
    """The value an equality selector pins `field` to, if any (used for authorization)."""
    for f, value, eq in parse_fields(selector):
        if f == field and eq:
            return value
    return None


def label_selector_matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector object (matchLabels, matchExpressions) against labels.

    Follows apimachinery/pkg/apis/meta/v1/helpers.go LabelSelectorAsSelector: a nil selector
    matches nothing, an empty one everything (as a PodDisruptionBudget's in policy/v1).
    """
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True
