"""Configuration: typed and validated once; a bad file is one clear line naming the key, exit
status 2, and nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsuite.config import ConfigError, config_from_dict, load_config, parse_listen_address
from tests.conftest import base_config, run_cli, toml_dumps


def build(tmp_path: Path, **overrides):
    return config_from_dict(base_config(tmp_path, **overrides), base=tmp_path)


def test_defaults_and_relative_paths_resolve_against_the_config_folder(tmp_path):
    conf = tmp_path / "etc" / "mailsuite.toml"
    conf.parent.mkdir()
    conf.write_text('data_dir = "var/data"\n[tls]\ncert = "c.pem"\n')
    cfg = load_config(conf)
    assert cfg.data_dir == tmp_path / "etc" / "var" / "data"
    assert cfg.tls.cert == tmp_path / "etc" / "c.pem"
    assert cfg.tls.key == tmp_path / "etc" / "certs" / "mail.key"  # a default, made relative too
    assert cfg.mail_dir == cfg.data_dir / "mail"
    assert cfg.accounts_db == cfg.data_dir / "accounts.sqlite"
    assert cfg.tls.min_version == "1.2"
    assert cfg.path == conf.resolve()


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"colour": "blue"}, "colour"),  # unknown top-level key
        ({"smtp": {"max_mesage_size": 10}}, "smtp.max_mesage_size"),  # typo in a section
        ({"smtp": {"max_message_size": "10M"}}, "smtp.max_message_size"),  # wrong type
        ({"smtp": {"max_recipients": True}}, "smtp.max_recipients"),  # bool is not an int
        ({"smtp": {"max_recipients": -1}}, "smtp.max_recipients"),
        ({"auth": {"base_delay": "1s"}}, "auth.base_delay"),
        ({"tls": {"session_tickets": "yes"}}, "tls.session_tickets"),
        ({"tls": {"min_version": "1.1"}}, "tls.min_version"),  # unusable value
        ({"tls": "not a table"}, "tls"),
        ({"domains": "example.test"}, "domains"),
        ({"domains": ["ok.test", "bad domain"]}, "domains[1]"),
        ({"data_dir": ""}, "data_dir"),
        ({"hostname": "has space"}, "hostname"),
        ({"listen": {"imap": ["127.0.0.1"]}}, "listen.imap[0]"),
        ({"listen": {"imap": ["127.0.0.1:99999"]}}, "listen.imap[0]"),
        ({"listen": {"smtp": ["mail.example.test:25"]}}, "listen.smtp[0]"),
        ({"auth": {"plaintext": "always"}}, "auth.plaintext"),
        ({"smtp": {"max_command_line": 100}}, "smtp.max_command_line"),
        ({"imap": {"idle_timeout": 60}}, "imap.idle_timeout"),
        ({"pop3": {"idle_timeout": 60}}, "pop3.idle_timeout"),
        ({"log": {"format": "xml"}}, "log.format"),
        ({"relay": {"routes": {"example.net": "host:0"}}}, "relay.routes.example.net"),
        ({"relay": {"smarthost": {"host": "relay.test", "pasword": "x"}}}, "relay.smarthost"),
        (
            {"relay": {"smarthost": {"host": "relay.test", "tls_verify": "yes"}}},
            "relay.smarthost.tls_verify",
        ),
        (
            {"relay": {"smarthost": {"host": "relay.test", "ca_file": "/nonexistent/ca.pem"}}},
            "relay.smarthost.ca_file",
        ),
        ({"storage": {"io": "aio"}}, "storage.io"),
    ],
)
def test_bad_values_name_their_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError) as info:
        build(tmp_path, **overrides)
    assert info.value.key.startswith(key)
    assert str(info.value).startswith(key)


def test_listen_addresses():
    assert parse_listen_address("127.0.0.1:25") == ("127.0.0.1", 25)
    assert parse_listen_address("[::1]:143") == ("::1", 143)
    assert parse_listen_address(":587") == ("0.0.0.0", 587)
    assert parse_listen_address("[::]:993") == ("::", 993)
    assert parse_listen_address("localhost:110") == ("127.0.0.1", 110)


def test_not_toml_and_missing_file_are_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("hostname = \n[[[")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def write_config(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / "mailsuite.toml"
    path.write_text(toml_dumps(base_config(tmp_path, **overrides)))
    return path


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"smtp": {"max_message_size": "big"}}, "smtp.max_message_size"),
        ({"unknown_section": {"a": 1}}, "unknown_section"),
        ({"tls": {"min_version": "1.0"}}, "tls.min_version"),
    ],
)
def test_serve_and_check_with_a_bad_config_exit_78_with_one_line_and_start_nothing(
    tmp_path, overrides, key
):
    conf = write_config(tmp_path, **overrides)
    for command in ("serve", "check"):
        result = run_cli("--config", str(conf), command)
        assert result.returncode == 78  # EX_CONFIG
        err = result.stderr.decode().strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert key in err
        assert result.stdout == b""  # no "listening" line: nothing started
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / "certs").exists()


def test_unwritable_data_dir_is_an_error_at_start(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where data_dir's parent should be")
    conf = write_config(tmp_path, data_dir=str(blocker / "data"))
    for args in (("serve",), ("domain", "list")):
        result = run_cli("--config", str(conf), *args)
        assert result.returncode == 78  # EX_CONFIG
        err = result.stderr.decode().strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert "data_dir" in err and str(blocker / "data") in err
        assert b"listening" not in result.stdout


def test_missing_data_dir_is_created(tmp_path):
    conf = write_config(tmp_path, data_dir=str(tmp_path / "deep" / "er" / "data"))
    result = run_cli("--config", str(conf), "domain", "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["example.test"]
    assert (tmp_path / "deep" / "er" / "data" / "mail").is_dir()
    assert (tmp_path / "deep" / "er" / "data" / "accounts.sqlite").exists()
