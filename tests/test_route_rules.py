"""Route filters and the circuit breaker: pure logic, no I/O."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict
from pydantic import ValidationError

from relay.circuit import Circuit
from relay.extract import Parsed
from relay.route import Route, RouteConfig, destinations_for


def route(**fields: object) -> Route:
    return Route.build(RouteConfig.model_validate({"source": "s", "destinations": ["d"], **fields}))


def test_types_and_excludes() -> None:
    r = route(types=["invoice.*", "charge.succeeded"], exclude_types=["*.test"])
    none = CIMultiDict[str]()
    parsed = Parsed(b"{}")
    assert r.matches("invoice.paid", none, parsed)
    assert r.matches("charge.succeeded", none, parsed)
    assert not r.matches("invoice.test", none, parsed)
    assert not r.matches("charge.failed", none, parsed)
    assert not r.matches(None, none, parsed)  # types set: an event without one does not match
    assert route(exclude_types=["*.test"]).matches(None, none, parsed)


@pytest.mark.parametrize(
    ("condition", "body", "expected"),
    [
        ({"pointer": "/a", "equals": 1}, b'{"a": 1.0}', True),
        ({"pointer": "/a", "equals": 1}, b'{"a": true}', False),  # true is not 1
        ({"pointer": "/a", "equals": "1"}, b'{"a": 1}', False),
        ({"pointer": "/a", "equals": None}, b'{"a": null}', True),
        ({"pointer": "/a", "equals": None}, b"{}", False),
        ({"pointer": "/a", "exists": True}, b'{"a": null}', True),
        ({"pointer": "/a", "exists": False}, b'{"b": 1}', True),
        ({"pointer": "/a/b~1c", "exists": True}, b'{"a": {"b/c": 0}}', True),
        ({"pointer": "/list/1", "one_of": ["x", "y"]}, b'{"list": [0, "y"]}', True),
        ({"pointer": "/a", "regex": "^ab+$"}, b'{"a": "abbb"}', True),
        ({"pointer": "/a", "regex": "^1"}, b'{"a": 12}', True),
        ({"pointer": "/a", "regex": "."}, b'{"a": {"b": 1}}', False),
        ({"pointer": "/a", "equals": 1}, b"not json", False),
    ],
)
def test_json_conditions(condition: dict[str, object], body: bytes, expected: bool) -> None:
    assert route(when=[condition]).matches("t", CIMultiDict(), Parsed(body)) is expected


def test_header_conditions_and_any() -> None:
    r = route(
        match="any",
        when=[
            {"header": "X-Shop", "equals": "a"},
            {"header": "X-Env", "regex": "^prod"},
        ],
    )
    assert r.matches(None, CIMultiDict({"x-shop": "a"}), Parsed(b""))
    assert r.matches(None, CIMultiDict({"X-Env": "production"}), Parsed(b""))
    assert not r.matches(None, CIMultiDict({"X-Shop": "b"}), Parsed(b""))


def test_destinations_union_in_config_order() -> None:
    routes = [route(types=["a.*"]), Route.build(RouteConfig(source="s", destinations=["e", "d"]))]
    assert destinations_for(routes, "a.b", CIMultiDict(), Parsed(b"")) == ("d", "e")
    assert destinations_for(routes[:1], "b", CIMultiDict(), Parsed(b"")) == ()


@pytest.mark.parametrize(
    "condition",
    [
        {"pointer": "/a"},  # no operator
        {"pointer": "/a", "equals": 1, "exists": True},  # two operators
        {"equals": 1},  # no subject
        {"pointer": "a", "equals": 1},  # not a pointer
        {"pointer": "/a", "regex": "("},  # does not compile
    ],
)
def test_bad_conditions_are_refused(condition: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        route(when=[condition])


def test_circuit_opens_probes_and_closes() -> None:
    c = Circuit(failures=3, cooldown=10.0)
    assert c.allowance(0.0) is None
    c.record(503, 1.0)
    c.record(None, 2.0)
    c.record(404, 3.0)  # the service answered: the streak ends
    c.record(500, 4.0)
    c.record(500, 5.0)
    assert c.state == "closed"
    c.record(500, 6.0)
    assert c.state == "open"
    assert c.failing_since == 4.0
    assert c.allowance(10.0) == 0
    assert c.wait(10.0) == pytest.approx(6.0)
    assert c.allowance(16.0) == 1  # half-open: one probe
    c.started(1)
    assert c.allowance(16.5) == 0  # while the probe is out
    c.record(502, 17.0)
    assert c.state == "open"  # the probe failed: another cooldown
    assert c.allowance(27.0) == 1
    c.started(1)
    c.record(200, 28.0)
    assert c.state == "closed"
    assert c.failing_since is None
    assert c.allowance(28.0) is None
