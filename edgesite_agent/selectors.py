"""Label and field selectors with the API server's grammar and per-resource field sets.

Label selectors follow k8s.io/apimachinery/pkg/labels/selector.go (Parse, Lexer, Parser:
`key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (a,b)`, `key notin (a,b)`, `key>N`,
`key<N`; terms ANDed; `!=`/`notin` also match objects without the key; Requirement.Matches).
Keys and values are checked like NewRequirement does (validation.IsQualifiedName,
IsValidLabelValue), so a malformed selector is a 400, never an empty answer.

Field selectors follow k8s.io/apimachinery/pkg/fields/selector.go (ParseSelector: `f=v`,
`f==v`, `f!=v`, ANDed, `\\` escapes). Which fields a resource offers is what its registry's
field label conversion accepts (pkg/apis/core/v1/conversion.go AddFieldLabelConversionsFor*,
pkg/registry/core/pod/strategy.go ToSelectableFields, node/strategy.go
NodeToSelectableFields, secret/strategy.go SelectableFields, service/strategy.go; other
kinds: runtime.DefaultMetaV1FieldSelectorConversion). Any other field is refused with the
API server's words: `field label not supported: X` (apiserver handlers/get.go ListResource
turns it into a 400 BadRequest).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see events.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Obj = dict[str, Any]


class SelectorError(ValueError):
    """A selector the API server would refuse (HTTP 400, reason BadRequest)."""


# --- labels -------------------------------------------------------------------------------
# validation.IsQualifiedName: optional DNS-1123 subdomain prefix + "/" + name of 1-63 chars.
_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# selector.go Lexer: these characters end an identifier.
_SPECIAL = frozenset("!=<>(), \t\n")


def _check_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    ok = bool(_NAME.match(name)) and len(name) <= 63
    if slash:
        ok = ok and 0 < len(prefix) <= 253 and bool(_PREFIX.match(prefix))
    if not ok:
        raise SelectorError(f"invalid label key {key!r}: a qualified name must consist of "
                            "alphanumeric characters, '-', '_' or '.', and must start and end "
                            "with an alphanumeric character")  # fmt: skip


def _check_value(value: str) -> None:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(f"invalid label value {value!r}: must be 63 characters or less "
                            "and consist of alphanumeric characters, '-', '_' or '.'")  # fmt: skip


def _lex(text: str) -> list[str]:
    """selector.go Lexer.Lex: operators and punctuation, identifiers, whitespace skipped."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\n":
            i += 1
        elif text.startswith(("!=", "=="), i):
            out.append(text[i : i + 2])
            i += 2
        elif c in "!=<>(),":
            out.append(c)
            i += 1
        else:
            j = i
            while j < n and text[j] not in _SPECIAL:
                j += 1
            out.append(text[i:j])
            i = j
    return out


Requirement = tuple  # (key, operator, values): operator in exists, !, =, !=, in, notin, gt, lt


def parse_labels(text: str) -> list[Requirement]:
    """selector.go Parser.parse: requirements separated by commas (an empty text: all)."""
    toks, pos, reqs = _lex(text), 0, []

    def take() -> str:
        nonlocal pos
        if pos >= len(toks):
            raise SelectorError(f"unable to parse requirement: found '', in selector {text!r}")
        pos += 1
        return toks[pos - 1]

    def peek() -> str:
        return toks[pos] if pos < len(toks) else ""

    while pos < len(toks):
        tok = take()
        if tok == "!":
            key = take()
            _check_key(key)
            reqs.append((key, "!", ()))
        else:
            if tok in "!=<>(),":
                raise SelectorError(f"found '{tok}', expected: !, identifier, or 'end of string'")
            key = tok
            _check_key(key)
            op = peek()
            if op in ("", ","):
                reqs.append((key, "exists", ()))
            else:
                take()
                if op in ("=", "==", "!="):
                    value = "" if peek() in ("", ",") else take()
                    _check_value(value)
                    reqs.append((key, "!=" if op == "!=" else "=", (value,)))
                elif op in ("in", "notin"):
                    if take() != "(":
                        raise SelectorError(f"found '{toks[pos - 1]}', expected: '('")
                    values: list[str] = []
                    while True:
                        v = "" if peek() in (",", ")") else take()
                        _check_value(v)
                        values.append(v)
                        sep = take()
                        if sep == ")":
                            break
                        if sep != ",":
                            raise SelectorError(f"found '{sep}', expected: ',' or ')'")
                    reqs.append((key, op, tuple(values)))
                elif op in ("<", ">"):
                    num = take()
                    if not num.lstrip("-").isdigit():
                        raise SelectorError(f"for 'Gt', 'Lt' operators, the value must be an "
                                            f"integer: {num!r}")  # fmt: skip
                    reqs.append((key, "gt" if op == ">" else "lt", (int(num),)))
                else:
                    raise SelectorError(f"found '{op}', expected: '=', '!=', '==', 'in', "
                                        "'notin', '<' or '>'")  # fmt: skip
        sep = peek()
        if sep == ",":
            take()
            if pos >= len(toks):
                raise SelectorError(f"found '', expected: identifier after ',' in {text!r}")
        elif sep:
            raise SelectorError(f"found '{sep}', expected: ',' or 'end of string'")
    return reqs


def labels_match(reqs: list[Requirement], labels: dict[str, str]) -> bool:
    """selector.go Requirement.Matches, every requirement (internalSelector.Matches)."""
    for key, op, values in reqs:
        have = key in labels
        value = labels.get(key, "")
        if op == "exists":
            ok = have
        elif op == "!":
            ok = not have
        elif op in ("=", "in"):
            ok = have and value in values
        elif op in ("!=", "notin"):
            ok = not have or value not in values
        else:  # gt, lt: the label must be an integer
            try:
                n = int(value)
            except ValueError:
                return False
            ok = have and (n > values[0] if op == "gt" else n < values[0])
        if not ok:
            return False
    return True


# --- fields -------------------------------------------------------------------------------
def _get(obj: Obj, *path: str) -> Any:
    for p in path:
        obj = obj.get(p) if isinstance(obj, dict) else None
    return obj


def _pod_ip(o: Obj) -> str:
    ips = _get(o, "status", "podIPs") or []
    return (ips[0] or {}).get("ip", "") if ips else _get(o, "status", "podIP") or ""


def _bool(v: Any) -> str:
    return "true" if v else "false"


_META: dict[str, Callable[[Obj], str]] = {
    "metadata.name": lambda o: _get(o, "metadata", "name") or "",
    "metadata.namespace": lambda o: _get(o, "metadata", "namespace") or "",
}
# kind -> field -> value, as the registry's selectable fields compute it.
FIELDS: dict[str, dict[str, Callable[[Obj], str]]] = {
    "Pod": _META
    | {  # pod/strategy.go ToSelectableFields
        "spec.nodeName": lambda o: _get(o, "spec", "nodeName") or "",
        "spec.restartPolicy": lambda o: _get(o, "spec", "restartPolicy") or "",
        "spec.schedulerName": lambda o: _get(o, "spec", "schedulerName") or "",
        "spec.serviceAccountName": lambda o: _get(o, "spec", "serviceAccountName") or "",
        "spec.hostNetwork": lambda o: _bool(_get(o, "spec", "hostNetwork")),
        "status.phase": lambda o: _get(o, "status", "phase") or "",
        "status.podIP": _pod_ip,
        "status.nominatedNodeName": lambda o: _get(o, "status", "nominatedNodeName") or "",
    },
    "Node": {  # node/strategy.go NodeToSelectableFields (cluster-scoped: no namespace)
        "metadata.name": _META["metadata.name"],
        "spec.unschedulable": lambda o: _bool(_get(o, "spec", "unschedulable")),
    },
    "Secret": _META | {"type": lambda o: o.get("type") or ""},  # secret/strategy.go
    "Service": _META
    | {  # service/strategy.go ToSelectableFields
        "spec.clusterIP": lambda o: _get(o, "spec", "clusterIP") or "",
        "spec.type": lambda o: _get(o, "spec", "type") or "",
    },
    "ConfigMap": _META,
    "EndpointSlice": _META,
}


def _split_terms(text: str) -> list[str]:
    """fields/selector.go splitTerms: commas not escaped by a backslash separate terms."""
    terms, cur, esc = [], [], False
    for c in text:
        if esc:
            cur.append("\\" + c)
            esc = False
        elif c == "\\":
            esc = True
        elif c == ",":
            terms.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    terms.append("".join(cur))
    return [t for t in terms if t]


def _unescape(value: str) -> str:
    """fields/selector.go UnescapeValue: only \\\\, \\, and \\= are valid escapes."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape in {value!r}")
            out.append(value[i + 1])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


FieldTerm = tuple  # (field, wanted value, equal?)


def parse_fields(text: str, kind: str) -> list[FieldTerm]:
    terms: list[FieldTerm] = []
    allowed = FIELDS[kind]
    for term in _split_terms(text):
        for op in ("!=", "==", "="):  # fields/selector.go splitTerm: this order
            field, sep, value = term.partition(op)
            if sep and "\\" not in field:
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        field = field.strip()
        if field not in allowed:
            raise SelectorError(f"field label not supported: {field}")
        terms.append((field, _unescape(value), op != "!="))
    return terms


def fields_match(terms: list[FieldTerm], kind: str, obj: Obj) -> bool:
    get = FIELDS[kind]
    return all((get[f](obj) == v) == eq for f, v, eq in terms)


class Selector:
    """Both selectors of one request, parsed once; `None` parts select everything."""

    __slots__ = ("fields", "kind", "labels")

    def __init__(self, kind: str, label_selector: str = "", field_selector: str = "") -> None:
        self.kind = kind
        self.labels = parse_labels(label_selector) if label_selector.strip() else None
        self.fields = parse_fields(field_selector, kind) if field_selector.strip() else None

    @property
    def everything(self) -> bool:
        return self.labels is None and self.fields is None

    def matches(self, obj: Obj) -> bool:
        if self.labels is not None:
            labels = _get(obj, "metadata", "labels") or {}
            if not labels_match(self.labels, labels):
                return False
        return self.fields is None or fields_match(self.fields, self.kind, obj)
