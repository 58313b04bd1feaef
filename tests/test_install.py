"""packaging/install.sh into a scratch root (RELAY_INSTALL_ROOT): a fresh install has a
random admin token, no source with a well-known secret, and says what to do next; a second
run keeps an edited config (issue 14: it used to start the service on the example config,
admin-token-change-me included)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _install(root: Path) -> subprocess.CompletedProcess[str]:
    relay = Path(sys.executable).with_name("relay")  # the venv's entry point stands in
    return subprocess.run(
        ["sh", str(ROOT / "packaging" / "install.sh"), "install", str(relay)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RELAY_INSTALL_ROOT": str(root)},
        check=False,
    )


def test_a_fresh_install_has_a_random_token_and_no_sources(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    results = [_install(first), _install(second)]
    assert [r.returncode for r in results] == [0, 0], results[0].stdout + results[0].stderr
    configs = [root / "etc" / "relay" / "relay.toml" for root in (first, second)]
    tokens = [tomllib.loads(c.read_text())["admin"]["token"] for c in configs]
    assert tokens[0] != tokens[1]
    assert all(len(t) >= 40 for t in tokens)
    text = configs[0].read_text()
    assert "change-me" not in text
    assert "sources" not in tomllib.loads(text)  # only commented examples
    assert stat.S_IMODE(configs[0].stat().st_mode) == 0o600
    checked = subprocess.run(
        [sys.executable, "-m", "relay", "check-config", str(configs[0])],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert tokens[0] not in checked.stdout  # masked
    last = results[0].stdout.strip().splitlines()[-5:]
    assert any("[[sources]]" in line for line in last), last
    assert any("systemctl start relay" in line for line in last), last
    assert (first / "usr" / "local" / "bin" / "relay").exists()


def test_a_second_install_keeps_the_edited_config(tmp_path: Path) -> None:
    assert _install(tmp_path).returncode == 0
    config = tmp_path / "etc" / "relay" / "relay.toml"
    config.write_text(config.read_text() + "\n# edited by the operator\n")
    again = _install(tmp_path)
    assert again.returncode == 0
    assert "kept existing" in again.stdout
    assert config.read_text().endswith("# edited by the operator\n")


def test_the_https_drop_in_comes_with_server_tls_and_goes_without(tmp_path: Path) -> None:
    """Binding 443 takes CAP_NET_BIND_SERVICE: granted only when [server.tls] is set."""
    assert _install(tmp_path).returncode == 0
    dropin = tmp_path / "etc" / "systemd" / "system" / "relay.service.d" / "https.conf"
    assert not dropin.exists()
    config = tmp_path / "etc" / "relay" / "relay.toml"
    text = config.read_text()
    config.write_text(text + '\n[server.tls]\nacme = true\ndomains = ["hooks.example.com"]\n')
    assert _install(tmp_path).returncode == 0
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in dropin.read_text()
    socket_dropin = tmp_path / "etc" / "systemd" / "system" / "relay.socket.d" / "https.conf"
    assert "ListenStream=443" in socket_dropin.read_text()  # systemd's socket is 443 then
    config.write_text(text)
    assert _install(tmp_path).returncode == 0
    assert not dropin.exists()
    assert not socket_dropin.exists()


@pytest.mark.timeout(400)
def test_make_run_from_a_clone_installs_only_what_running_needs() -> None:
    """`make run` in a fresh clone of HEAD (on free ports, so a `make run` going on beside
    it does not matter): the README's signed event is accepted and delivered to the demo
    receiver, and the venv holds no test or development tool."""
    from tests.pebble import free_port

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from makerun import once
    finally:
        sys.path.remove(str(ROOT / "bench"))
    ports = (free_port(), free_port(), free_port())
    result = once(cold=False, timeout=300, ports=ports)
    assert result.told == f"http://127.0.0.1:{ports[0]}/in/demo"  # RUN_CONFIG's, not 8080
    assert result.test_only == [], result.packages
    assert "aiohttp" in result.packages
    assert result.event_id.startswith("evt_")
    assert f"event={result.event_id} " in result.printed  # that event, delivered


def test_the_units_and_sockets_are_installed_and_pass_systemd_analyze(tmp_path: Path) -> None:
    """Issue 31: relay.socket and relay-admin.socket hold the listeners across restarts;
    the units pass `systemd-analyze verify` (with the installed paths)."""
    assert _install(tmp_path).returncode == 0
    units = tmp_path / "etc" / "systemd" / "system"
    for name in ("relay.service", "relay.socket", "relay-admin.socket"):
        assert (units / name).exists(), name
    assert "FileDescriptorName=public" in (units / "relay.socket").read_text()
    assert "FileDescriptorName=admin" in (units / "relay-admin.socket").read_text()
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (the units are unchecked)")
    # verify looks for ExecStart's binary: point it at the one this install put down.
    check = tmp_path / "verify"
    check.mkdir()
    binary = tmp_path / "usr" / "local" / "bin" / "relay"
    for name in ("relay.service", "relay.socket", "relay-admin.socket"):
        text = (units / name).read_text().replace("/usr/local/bin/relay", str(binary))
        (check / name).write_text(text)
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            *(str(check / n) for n in sorted(os.listdir(check))),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_litestreams_units_come_with_its_config_and_pass_systemd_analyze(tmp_path: Path) -> None:
    """Issue 31: with /etc/relay/litestream.yml, Litestream runs beside relay (its own unit,
    relay's dynamic user) and a missing database is restored before relay starts."""
    assert _install(tmp_path).returncode == 0
    units = tmp_path / "etc" / "systemd" / "system"
    assert not (units / "relay-litestream.service").exists()
    (tmp_path / "etc" / "relay" / "litestream.yml").write_text(
        (ROOT / "packaging" / "litestream.yml").read_text()
    )
    assert _install(tmp_path).returncode == 0
    dropin = units / "relay.service.d" / "litestream.conf"
    assert "-if-db-not-exists -if-replica-exists" in dropin.read_text()
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (the units are unchecked)")
    check = tmp_path / "verify"
    (check / "relay.service.d").mkdir(parents=True)
    true = shutil.which("true") or "/bin/true"
    for name in ("relay.service", "relay-litestream.service", "relay.service.d/litestream.conf"):
        text = (units / name).read_text()
        text = text.replace("/usr/local/bin/relay", true).replace("/usr/local/bin/litestream", true)
        (check / name).write_text(text)
    (check / "relay.socket").write_text((units / "relay.socket").read_text())
    (check / "relay-admin.socket").write_text((units / "relay-admin.socket").read_text())
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            str(check / "relay-litestream.service"),
            str(check / "relay.service"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    removed = tmp_path / "etc" / "relay" / "litestream.yml"
    removed.unlink()
    assert _install(tmp_path).returncode == 0
    assert not (units / "relay-litestream.service").exists()
