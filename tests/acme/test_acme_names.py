"""The names the certificate covers, and the `[acme]` table's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsuite.acme.names import certificate_names
from mailsuite.config import ACME_DIRECTORIES, ConfigError, config_from_dict


def make(tmp_path: Path, acme: dict | None = None, **top):
    data = {"hostname": "Mail.Example.org", "domains": ["example.org"], **top}
    if acme is not None:
        data["acme"] = acme
    return config_from_dict(data, base=tmp_path)


def test_no_acme_table_means_acme_off(tmp_path):
    assert make(tmp_path).acme is None


def test_default_names_are_the_host_and_each_domains_web_names(tmp_path):
    config = make(tmp_path, {})
    assert certificate_names(config, ["example.org", "Other.NET", "example.org"]) == [
        "mail.example.org",
        "mta-sts.example.org",
        "autoconfig.example.org",
        "autodiscover.example.org",
        "mta-sts.other.net",
        "autoconfig.other.net",
        "autodiscover.other.net",
    ]


def test_without_web_listeners_only_the_host_name(tmp_path):
    config = make(
        tmp_path, {"challenge": "tls-alpn-01"}, listen={"http": [], "https": ["127.0.0.1:0"]}
    )
    assert "mta-sts.example.org" in certificate_names(config, ["example.org"])
    config = make(tmp_path, {"hosts": ["b.example.org"]}, listen={"http": ["127.0.0.1:0"]})
    assert certificate_names(config, ["example.org"]) == ["b.example.org"]


def test_configured_hosts_replace_the_default(tmp_path):
    config = make(tmp_path, {"hosts": ["mail.example.org", "MX2.example.org.", "mail.example.org"]})
    assert certificate_names(config, ["example.org"]) == ["mail.example.org", "mx2.example.org"]


def test_directory_by_name_or_url(tmp_path):
    assert make(tmp_path, {}).acme.directory_url == ACME_DIRECTORIES["letsencrypt"]
    staging = make(tmp_path, {"directory": "letsencrypt-staging"}).acme.directory_url
    assert staging == "https://acme-staging-v02.api.letsencrypt.org/directory"
    url = "https://ca.internal/acme/directory"
    assert make(tmp_path, {"directory": url}).acme.directory_url == url


def test_ca_file_is_relative_to_the_config_and_must_exist(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    assert make(tmp_path, {"ca_file": "ca.pem"}).acme.ca_file == tmp_path / "ca.pem"
    with pytest.raises(ConfigError, match="acme.ca_file"):
        make(tmp_path, {"ca_file": "missing.pem"})


@pytest.mark.parametrize(
    ("acme", "listen", "key"),
    [
        ({"challenge": "dns-01"}, {}, "acme.challenge"),
        ({"challenge": "http-01"}, {"http": []}, "acme.challenge"),
        ({"challenge": "tls-alpn-01"}, {"https": []}, "acme.challenge"),
        ({"directory": "letsencrypt-prod"}, {}, "acme.directory"),
        ({"hosts": ["a b"]}, {}, "acme.hosts[0]"),
        ({"mail": "x"}, {}, "acme.mail"),
    ],
)
def test_bad_acme_settings_name_their_key(tmp_path, acme, listen, key):
    with pytest.raises(ConfigError) as e:
        make(tmp_path, acme, listen=listen)
    assert e.value.key == key
