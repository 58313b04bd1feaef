"""Routes: which of a source's events go to which destinations. Pure: values in, values out.

A route's filter is declarative (no code runs): event-type globs to include and exclude,
and conditions on a header or a JSON body value (equals, one of, exists, regex), combined
with ``all`` or ``any``. An event goes to the union of the destinations of every route of
its source that matches; an event no route matches is stored and counted, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import Field, model_validator

from relay.configtypes import StrictModel
from relay.extract import Parsed, extract, resolve_pointer

Scalar = str | int | float | bool | None
REGEX_INPUT = 4096  # a regex sees at most this many characters of a value

_OPERATORS = ("equals", "one_of", "exists", "regex")


class Condition(StrictModel):
    """One test on one value: ``pointer`` (into the JSON body) or ``header``, and exactly
    one of ``equals``, ``one_of``, ``exists``, ``regex``."""

    pointer: str | None = Field(None, description="RFC 6901 pointer into the JSON body")
    header: str | None = Field(None, description="a request header's name")
    equals: Scalar = None
    one_of: list[Scalar] | None = None
    exists: bool | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one_subject_one_operator(self) -> Condition:
        if (self.pointer is None) == (self.header is None):
            raise ValueError('give exactly one of pointer = "/json/path" or header = "Name"')
        if self.pointer is not None and self.pointer and not self.pointer.startswith("/"):
            raise ValueError(f"pointer {self.pointer!r} must start with '/'")
        given = [op for op in _OPERATORS if op in self.model_fields_set]
        if len(given) != 1:
            raise ValueError("give exactly one of equals, one_of, exists or regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} does not compile: {exc}") from None
        return self


class RouteConfig(StrictModel):
    source: str = Field(description="name of a [[sources]] entry")
    destinations: list[str] = Field(min_length=1, description="names of [[destinations]]")
    types: list[str] = Field([], description="event-type globs to include; empty: every type")
    exclude_types: list[str] = Field([], description="event-type globs to leave out")
    match: Literal["all", "any"] = Field("all", description="how conditions combine")
    when: list[Condition] = Field([], description="conditions on headers or the JSON body")


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, "5" is not 5, but 5 is 5.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


@dataclass(frozen=True, slots=True)
class Test:
    pointer: str | None
    header: str | None
    operator: str
    operand: Any

    def holds(self, headers: Mapping[str, str], parsed: Parsed) -> bool:
        if self.header is not None:
            found = self.header in headers
            value: Any = headers.get(self.header)
        else:
            assert self.pointer is not None
            found, value = lookup(parsed.json(), self.pointer)
        if self.operator == "exists":
            return bool(found == self.operand)
        if not found:
            return False
        if self.operator == "equals":
            return _same(value, self.operand)
        if self.operator == "one_of":
            return any(_same(value, option) for option in self.operand)
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            return False
        return self.operand.search(str(value)[:REGEX_INPUT]) is not None


def lookup(document: Any, pointer: str) -> tuple[bool, Any]:
    """(found, value) at a JSON pointer; a member whose value is null is found."""
    if pointer == "":
        return document is not None, document
    value = resolve_pointer(document, pointer)
    if value is not None:
        return True, value
    parent, _, last = pointer.rpartition("/")
    container = resolve_pointer(document, parent) if parent else document
    key = last.replace("~1", "/").replace("~0", "~")
    return isinstance(container, dict) and key in container, None


@dataclass(frozen=True, slots=True)
class Route:
    """A compiled route."""

    destinations: tuple[str, ...]
    types: tuple[str, ...]
    exclude_types: tuple[str, ...]
    any_of: bool
    tests: tuple[Test, ...]

    @classmethod
    def build(cls, config: RouteConfig) -> Route:
        tests = []
        for c in config.when:
            operator = next(op for op in _OPERATORS if op in c.model_fields_set)
            operand: Any = getattr(c, operator)
            if operator == "regex":
                operand = re.compile(operand)
            tests.append(Test(c.pointer, c.header, operator, operand))
        return cls(
            tuple(config.destinations),
            tuple(config.types),
            tuple(config.exclude_types),
            config.match == "any",
            tuple(tests),
        )

    def matches(self, event_type: str | None, headers: Mapping[str, str], parsed: Parsed) -> bool:
        if self.types and (event_type is None or not _glob(event_type, self.types)):
            return False
        if event_type is not None and _glob(event_type, self.exclude_types):
            return False
        if not self.tests:
            return True
        results = (test.holds(headers, parsed) for test in self.tests)
        return any(results) if self.any_of else all(results)


def _glob(value: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(value, pattern) for pattern in patterns)


def destinations_for(
    routes: Sequence[Route], event_type: str | None, headers: Mapping[str, str], parsed: Parsed
) -> tuple[str, ...]:
    """The destinations of every matching route, each once, in config order."""
    chosen: dict[str, None] = {}
    for route in routes:
        if route.matches(event_type, headers, parsed):
            chosen.update(dict.fromkeys(route.destinations))
    return tuple(chosen)


Ordering = Mapping[str, tuple[str, str | None]]  # destination: (mode, key rule)


def ordering_keys(
    ordering: Ordering,
    source: str,
    destinations: Sequence[str],
    headers: Mapping[str, str],
    parsed: Parsed,
) -> tuple[str | None, ...]:
    """Per destination: None (unordered), the source (FIFO per source), or the source and
    the event's key (FIFO per key; events without the key are in order among themselves).
    Empty when no destination is ordered."""
    if not ordering or not any(d in ordering for d in destinations):
        return ()
    keys: list[str | None] = []
    for name in destinations:
        mode, rule = ordering.get(name, ("none", None))
        if mode == "source":
            keys.append(source)
        elif mode == "key":
            keys.append(f"{source}:{extract(rule, headers, parsed) or ''}")
        else:
            keys.append(None)
    return tuple(keys)
