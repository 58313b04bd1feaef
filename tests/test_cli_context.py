"""What the operator's commands read of the config (relay.cli.context): the same file and
RELAY_… variables as relay, only the keys they need, no source secret resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.cli.context import load_context
from relay.errors import RelayError

CONFIG = """
[storage]
path = "{db}"

[admin]
listen = "127.0.0.1:9999"
token = "env:OPERATOR_TOKEN"

[[sources]]
name = "stripe"
verify = "stripe"
secret = "env:NOT_SET_ANYWHERE"

[[destinations]]
name = "app"
url = "http://127.0.0.1:1/hook"
paused = true

[[destinations]]
name = "crm"
url = "http://127.0.0.1:1/crm"
"""


def write(tmp_path: Path) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(CONFIG.format(db=tmp_path / "relay.db"))
    return path


def test_the_file_is_read_without_its_source_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPERATOR_TOKEN", "t0ken")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    ctx = load_context(str(write(tmp_path)), None)
    assert ctx.database == tmp_path / "relay.db"
    assert (ctx.admin_listen, ctx.admin_token) == ("127.0.0.1:9999", "t0ken")
    assert ctx.sources == ("stripe",)
    assert ctx.destinations == (("app", True), ("crm", None))


def test_relay_variables_win_over_the_file_and_db_over_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPERATOR_TOKEN", "t0ken")
    monkeypatch.setenv("RELAY_STORAGE__PATH", str(tmp_path / "other.db"))
    monkeypatch.setenv("RELAY_ADMIN__LISTEN", "unix:/run/relay/admin.sock")
    monkeypatch.setenv("RELAY_ADMIN__TOKEN", "from-env")
    config = str(write(tmp_path))
    ctx = load_context(config, None)
    assert ctx.database == tmp_path / "other.db"
    assert (ctx.admin_listen, ctx.admin_token) == ("unix:/run/relay/admin.sock", "from-env")
    assert load_context(config, str(tmp_path / "given.db")).database == tmp_path / "given.db"


def test_a_wrong_type_names_its_key(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text("[admin]\nlisten = 8081\n")
    with pytest.raises(RelayError, match=r"admin\.listen"):
        load_context(str(path), None)


def test_a_missing_file_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(RelayError, match="--config PATH"):
        load_context(str(tmp_path / "nowhere.toml"), None)
    assert load_context(str(tmp_path / "nowhere.toml"), str(tmp_path / "r.db")).sources == ()
