"""The relay command: check-config, version, and bad configs refusing to start."""

from __future__ import annotations

import json
from pathlib import Path

from tests.process import run_cli, write_config


def test_check_config_prints_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    config = write_config(tmp_path / "relay.toml", tmp_path / "relay.db", "http://127.0.0.1:9/")
    config.write_text(config.read_text().replace('"test-secret"', '"env:RELAY_TEST_SECRET"'))
    result = run_cli("check-config", str(config), env={"RELAY_TEST_SECRET": "s3cr3t-value"})
    assert result.returncode == 0, result.stderr
    assert "s3cr3t-value" not in result.stdout
    effective = json.loads(result.stdout)
    assert effective["sources"][0]["secret"] == "env:RELAY_TEST_SECRET (***)"
    assert effective["storage"]["durability"] == "full"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path / "relay.toml", tmp_path / "relay.db", "http://127.0.0.1:9/")
    result = run_cli("check-config", str(config), env={"RELAY_SERVER__LISTEN": "127.0.0.1:9999"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["server"]["listen"] == "127.0.0.1:9999"


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    config = write_config(tmp_path / "relay.toml", tmp_path / "relay.db", "http://127.0.0.1:9/")
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))
    return config


def _refused(config: Path, *needles: str) -> None:
    for command in (["check-config", str(config)], ["serve", "--config", str(config)]):
        result = run_cli(*command)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        for needle in needles:
            assert needle in lines[0], lines[0]


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    config = _broken(tmp_path, 'timeout = "2s"', 'timeout = "2s"\ntimeuot = "3s"')
    _refused(config, "destinations[0].timeuot", "unknown key")


def test_missing_secret_reference_is_refused(tmp_path: Path) -> None:
    config = _broken(tmp_path, '"test-secret"', '"env:RELAY_TEST_UNSET_SECRET"')
    _refused(config, "sources[0].secret", "RELAY_TEST_UNSET_SECRET is not set")


def test_missing_secret_file_is_refused(tmp_path: Path) -> None:
    config = _broken(tmp_path, '"test-secret"', f'"file:{tmp_path}/nope.secret"')
    _refused(config, "sources[0].secret", "nope.secret")


def test_route_to_undefined_destination_is_refused(tmp_path: Path) -> None:
    config = _broken(tmp_path, 'destinations = ["app"]', 'destinations = ["billing"]')
    _refused(config, "routes[0].destinations[0]", "'billing' is not a defined destination")


def test_missing_file_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path / "absent.toml", "no such file")


def test_bad_duration_is_refused(tmp_path: Path) -> None:
    config = _broken(tmp_path, 'timeout = "2s"', 'timeout = "soon"')
    _refused(config, "destinations[0].timeout", "not a duration")


def test_version_names_python_and_sqlite() -> None:
    result = run_cli("version")
    assert result.returncode == 0
    assert result.stdout.startswith("relay ")
    assert "Python 3." in result.stdout
    assert "SQLite 3." in result.stdout


def test_bad_provider_keys_are_refused_together(tmp_path: Path) -> None:
    """Every source's problem is reported at once, each naming the source and the key."""
    extra = (
        '\n[[sources]]\nname = "d"\nverify = "discord"\npublic_key = "zz"\n'
        '\n[[sources]]\nname = "s"\nverify = "sendgrid"\npublic_key = "abc"\n'
    )
    config = _broken(tmp_path, "[[destinations]]", extra + "\n[[destinations]]")
    result = run_cli("check-config", str(config))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert "sources[1] (d): public_key" in lines[0]
    assert "sources[2] (s): public_key" in lines[1]


def test_check_config_says_every_kind_of_problem_at_once(tmp_path: Path) -> None:
    """Issue 29: a missing env secret hid an undefined route destination until it was
    fixed; the README promises one line per problem."""
    config = write_config(tmp_path / "relay.toml", tmp_path / "relay.db", "http://127.0.0.1:9/")
    text = config.read_text().replace('secret = "test-secret"', 'secret = "env:RELAY_NOT_SET"')
    config.write_text(text.replace('destinations = ["app"]', 'destinations = ["app", "nope"]'))
    for command in (["check-config", str(config)], ["serve", "--config", str(config)]):
        result = run_cli(*command)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert any("RELAY_NOT_SET" in line and "sources[0]" in line for line in lines), lines
        assert any("'nope' is not a defined destination" in line for line in lines), lines
        assert all(line.startswith("relay: ") for line in lines), lines


def test_check_config_reports_a_postgresql_url_without_the_driver(tmp_path: Path) -> None:
    """Issue 29/32: check-config said OK, then serve refused for want of psycopg."""
    import subprocess
    import sys

    config = write_config(tmp_path / "relay.toml", tmp_path / "relay.db", "http://127.0.0.1:9/")
    text = config.read_text().replace(
        f'path = "{tmp_path / "relay.db"}"',
        'url = "postgresql://relay@/relay?host=/run/postgresql"',
    )
    config.write_text(text)
    without = (
        "import sys; sys.modules['psycopg'] = None; from relay.cli import main; "
        f"sys.exit(main(['check-config', {str(config)!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", without], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1, result.stderr
    assert "storage.url names PostgreSQL, but psycopg is not installed" in result.stderr
    assert run_cli("check-config", str(config)).returncode == 0  # with the driver: fine
