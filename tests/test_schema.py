"""The SQL files agree with each other, and the example config documents every key."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from relay import sql
from relay.configtypes import CatchUpConfig
from relay.normalize.mapping import ItemKind, MappingConfig
from relay.route import Condition, RouteConfig
from relay.sections import (
    AdminConfig,
    AdminUser,
    AgentGroupConfig,
    AlertsConfig,
    CircuitConfig,
    DestinationConfig,
    HeaderTransform,
    ListenerTls,
    LogConfig,
    RejectionsAlert,
    RetentionConfig,
    RetryPolicy,
    ServerConfig,
    ServerTls,
    StorageConfig,
)
from relay.verify.hmac import HmacSource
from relay.verify.token import TokenSource

ROOT = Path(__file__).resolve().parent.parent


def _shape(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    shape: list[tuple[Any, ...]] = []
    for table in sorted(tables):
        shape += [("col", table, *row) for row in conn.execute(f"PRAGMA table_info({table})")]
        shape += [("fk", table, *row) for row in conn.execute(f"PRAGMA foreign_key_list({table})")]
    indexes = conn.execute(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"
    )
    shape += [("index", *row) for row in sorted(indexes)]
    views = conn.execute("SELECT name, sql FROM sqlite_master WHERE type='view'")
    shape += [("view", *row) for row in sorted(views)]
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='view'"):
        shape += [("view-col", name, *row) for row in conn.execute(f"PRAGMA table_info({name})")]
    return shape


def test_migrations_build_exactly_the_schema() -> None:
    with contextlib.closing(sqlite3.connect(":memory:")) as migrated:
        for _, _, script in sql.migrations():
            migrated.executescript(script)
        with contextlib.closing(sqlite3.connect(":memory:")) as fresh:
            fresh.executescript(sql.read("schema.sql"))
            assert _shape(migrated) == _shape(fresh)


def test_migrations_are_numbered_without_gaps() -> None:
    numbers = [n for n, _, _ in sql.migrations()]
    assert numbers == list(range(1, len(numbers) + 1))


def test_named_queries_all_prepare() -> None:
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        conn.executescript(sql.read("schema.sql"))
        for statement in sql.queries().values():
            names = re.findall(r":(\w+)", statement)
            params: Any = dict.fromkeys(names) if names else (None,) * statement.count("?")
            conn.execute("EXPLAIN " + statement, params)


def _keys(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def _uncommented(text: str, header: str) -> str:
    """The commented-out block that starts at ``# <header>``, uncommented."""
    lines = text.splitlines()
    start = lines.index(f"# {header}")
    block = []
    for line in lines[start:]:
        if not line.startswith("# ") or (block and line.startswith("# [")):
            break
        block.append(line[2:])
    return "\n".join(block)


def test_example_config_documents_every_key() -> None:
    text = (ROOT / "config.example.toml").read_text()
    example = tomllib.loads(text)
    # [server.tls] needs real files or a domain, so the example has it commented out.
    assert _keys(ServerConfig) == set(example["server"]) | {"tls"}
    server_tls = tomllib.loads(_uncommented(text, "[server.tls]"))["server"]["tls"]
    assert _keys(ServerTls) == set(server_tls)
    # storage.url replaces path (PostgreSQL), so the example has it commented out.
    assert _keys(StorageConfig) == set(example["storage"]) | {"url"}
    assert "# url = " in text
    assert _keys(LogConfig) == set(example["log"])
    # [admin.tls] needs real files, so the example has it commented out; so are the users.
    assert _keys(AdminConfig) == set(example["admin"]) | {"tls", "users"}
    users = tomllib.loads(_uncommented(text, "[[admin.users]]"))["admin"]["users"]
    assert _keys(AdminUser) == set(users[0]) | {"token_sha256"}  # the other way to say it
    assert "token_sha256 = " in text
    commented = tomllib.loads(_uncommented(text, "[admin.tls]"))
    assert _keys(ListenerTls) == set(commented["admin"]["tls"])
    assert _keys(RetentionConfig) == set(example["retention"])
    assert _keys(AlertsConfig) == set(example["alerts"])
    assert _keys(AgentGroupConfig) == set(example["agents"][0])
    assert _keys(RejectionsAlert) == set(example["alerts"]["rejections"])
    by_scheme = {s["verify"]: s for s in example["sources"]}
    # split and normalize are shown on a commented-out messaging source, with a mapping.
    assert _keys(HmacSource) == set(by_scheme["hmac"]) | {"normalize", "split", "catch_up"}
    # catch_up is for providers with an API: shown commented out, every key of it.
    catch_up = tomllib.loads(_uncommented(text, "[sources.catch_up]"))["sources"]["catch_up"]
    assert _keys(CatchUpConfig) == set(catch_up)
    lines = text.splitlines()
    start = lines.index("# [[sources]]")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            continue  # the blank line between the source and the mapping
        block.append(line[2:])
    toml_lines = [b for b in block if re.match(r"^(\[|[a-z_]+ = )", b)]  # not the prose
    commented = tomllib.loads("\n".join(toml_lines))
    assert "normalize" in commented["sources"][0]
    assert "split = " in text
    mapping = commented["mappings"][0]
    assert _keys(MappingConfig) == set(mapping)
    assert _keys(ItemKind) == set(mapping["items"][0])
    assert _keys(TokenSource) == set(by_scheme["token"]) | {"normalize", "split", "catch_up"}
    destination = example["destinations"][0]
    documented = {key for d in example["destinations"] for key in d}
    assert _keys(DestinationConfig) == documented
    assert _keys(RetryPolicy) == set(destination["retry"])
    assert _keys(HeaderTransform) == set(destination["headers"])
    assert _keys(CircuitConfig) == set(destination["circuit"])
    assert _keys(RouteConfig) == set(example["routes"][0])
    assert _keys(Condition) >= set(example["routes"][0]["when"][0])
