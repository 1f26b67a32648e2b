"""`mailsuite dns DOMAIN [--check]` and `mailsuite dkim keygen`, run as the real admin command.

The printed zone text is parsed back with dnspython's zone-file parser, loaded into the stub DNS
server and checked with `--check`.
"""

from __future__ import annotations

import stat
import subprocess
import sys

import dns.rdatatype
import dns.zone
import pytest

from mailsuite.trust import mtasts
from mailsuite.trust.dkim import key_paths
from tests.trust.trust_support import HOSTNAME, on_reactor, trust_config

DOMAIN = "example.test"


@pytest.fixture
def admin(tmp_path, stub_dns_server):
    """Run `mailsuite --config <file> ...` against a config whose resolver is the stub."""
    conf = tmp_path / "mailsuite.toml"
    conf.write_text(
        f'hostname = "{HOSTNAME}"\n'
        f'domains = ["{DOMAIN}"]\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        "[public]\nimaps_port = 10993\n"
        f'[trust]\nresolvers = ["{stub_dns_server.address}"]\ndns_timeout = 1.0\n'
        'dmarc_policy = "reject"\nmta_sts_mode = "enforce"\n'
    )

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mailsuite.cli", "--config", str(conf), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    run.config = trust_config(
        tmp_path,
        stub_dns_server.address,
        dmarc_policy="reject",
        mta_sts_mode="enforce",
    )
    return run


def parse_zone(text: str) -> dns.zone.Zone:
    return dns.zone.from_text(text, origin=DOMAIN + ".", relativize=False, check_origin=False)


def rdatas(z: dns.zone.Zone, name: str, rtype: str) -> list:
    rds = z.get_rdataset(dns.name.from_text(name), dns.rdatatype.from_text(rtype))
    return list(rds) if rds else []


def txts(z, name) -> list[str]:
    return [b"".join(r.strings).decode() for r in rdatas(z, name, "TXT")]


def test_keygen_both_types_prints_records(admin):
    r = admin("dkim", "keygen", DOMAIN)
    assert r.returncode == 0, r.stderr
    z = parse_zone("\n".join(line for line in r.stdout.splitlines()))
    ed = txts(z, f"ed._domainkey.{DOMAIN}.")
    rsa = txts(z, f"rsa._domainkey.{DOMAIN}.")
    assert ed[0].startswith("v=DKIM1; k=ed25519; p=")
    assert rsa[0].startswith("v=DKIM1; k=rsa; p=")
    key_file = key_paths(admin.config, DOMAIN, "rsa")[0]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")


def test_keygen_selector_type_and_errors(admin):
    r = admin("dkim", "keygen", DOMAIN, "--selector", "2026a", "--type", "ed25519")
    assert r.returncode == 0, r.stderr
    assert "2026a._domainkey.example.test." in r.stdout
    again = admin("dkim", "keygen", DOMAIN, "--selector", "2026a", "--type", "rsa")
    assert again.returncode == 73 and "exists" in again.stderr
    foreign = admin("dkim", "keygen", "not-ours.example")
    assert foreign.returncode == 67 and "not a local domain" in foreign.stderr


def test_dns_output_parses_back(admin):
    assert admin("dkim", "keygen", DOMAIN).returncode == 0
    r = admin("dns", DOMAIN)
    assert r.returncode == 0, r.stderr
    z = parse_zone(r.stdout)
    d = DOMAIN + "."
    (mx,) = rdatas(z, d, "MX")
    assert (mx.preference, mx.exchange.to_text()) == (10, HOSTNAME + ".")
    assert txts(z, d) == ["v=spf1 mx -all"]
    for sel in ("ed", "rsa"):
        pub = key_paths(admin.config, DOMAIN, sel)[1].read_text().strip()
        assert txts(z, f"{sel}._domainkey.{d}") == [pub]
    assert txts(z, f"_dmarc.{d}") == [f"v=DMARC1; p=reject; rua=mailto:postmaster@{DOMAIN}"]
    sts_id = mtasts.policy_id(admin.config, DOMAIN)
    assert txts(z, f"_mta-sts.{d}") == [f"v=STSv1; id={sts_id}"]
    assert txts(z, f"_smtp._tls.{d}") == [f"v=TLSRPTv1; rua=mailto:postmaster@{DOMAIN}"]
    srv = {
        name: [(r.priority, r.port, r.target.to_text()) for r in rdatas(z, f"{name}.{d}", "SRV")]
        for name in ("_submissions._tcp", "_submission._tcp", "_imaps._tcp", "_pop3s._tcp")
    }
    assert srv["_submissions._tcp"] == [(0, 465, HOSTNAME + ".")]
    assert srv["_submission._tcp"] == [(10, 587, HOSTNAME + ".")]
    assert srv["_imaps._tcp"] == [(0, 10993, HOSTNAME + ".")]  # [public] imaps_port
    assert srv["_pop3s._tcp"] == [(10, 995, HOSTNAME + ".")]
    assert rdatas(z, f"_autodiscover._tcp.{d}", "SRV")[0].port == 443
    (sieve,) = rdatas(z, f"_sieve._tcp.{d}", "SRV")  # RFC 5804 §1.8
    assert (sieve.priority, sieve.port, sieve.target.to_text()) == (0, 4190, HOSTNAME + ".")
    for name in ("autoconfig", "autodiscover", "mta-sts"):
        (cname,) = rdatas(z, f"{name}.{d}", "CNAME")
        assert cname.target.to_text() == HOSTNAME + "."
    # The MTA-STS policy is printed too, as comments.
    assert "mode: enforce" in r.stdout and f"mx: {HOSTNAME}" in r.stdout


def test_dns_mentions_missing_dkim_key(admin):
    r = admin("dns", DOMAIN)
    assert r.returncode == 0
    assert "mailsuite dkim keygen example.test" in r.stdout


def publish(zone, z: dns.zone.Zone, skip: set[str] = frozenset()) -> None:
    """Load a parsed zone into the stub DNS server."""

    def load():
        for name, node in z.nodes.items():
            owner = name.to_text().rstrip(".")
            if owner in skip:
                continue
            for rds in node.rdatasets:
                for rd in rds:
                    kind = dns.rdatatype.to_text(rds.rdtype)
                    if kind == "TXT":
                        zone.txt(owner, b"".join(rd.strings))
                    elif kind == "MX":
                        zone.mx(owner, (rd.preference, rd.exchange.to_text().rstrip(".")))
                    elif kind == "SRV":
                        target = rd.target.to_text().rstrip(".")
                        zone.srv(owner, rd.priority, rd.weight, rd.port, target)
                    elif kind == "CNAME":
                        zone.cname(owner, rd.target.to_text().rstrip("."))

    on_reactor(load)


def test_dns_check_all_present(admin, zone):
    assert admin("dkim", "keygen", DOMAIN).returncode == 0
    publish(zone, parse_zone(admin("dns", DOMAIN).stdout))
    r = admin("dns", DOMAIN, "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == "16 of 16 records in place"
    assert all(line.startswith("OK") for line in lines[:-1])


def test_dns_check_reports_missing_and_wrong(admin, zone):
    assert admin("dkim", "keygen", DOMAIN, "--type", "ed25519", "--selector", "ed").returncode == 0
    z = parse_zone(admin("dns", DOMAIN).stdout)
    publish(zone, z, skip={f"_dmarc.{DOMAIN}", f"ed._domainkey.{DOMAIN}", DOMAIN})
    zone.txt(f"ed._domainkey.{DOMAIN}", "v=DKIM1; k=ed25519; p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    zone.txt(DOMAIN, "v=spf1 a mx ~all")  # the user's own SPF: reported, not an error
    zone.mx(DOMAIN, (10, "mx.elsewhere.example"))
    zone.servfail(f"_smtp._tls.{DOMAIN}")
    r = admin("dns", DOMAIN, "--check")
    assert r.returncode == 1
    out = r.stdout
    assert f"MISSING  TXT   _dmarc.{DOMAIN}" in out
    assert f"WRONG    TXT   ed._domainkey.{DOMAIN}" in out
    assert f"WRONG    MX    {DOMAIN}" in out and "mx.elsewhere.example" in out
    assert f"DIFFERS  TXT   {DOMAIN}" in out
    assert f"ERROR    TXT   _smtp._tls.{DOMAIN}" in out
    assert 'want: "v=DMARC1; p=reject; rua=mailto:postmaster@example.test"' in out


def test_dns_says_the_https_records_need_an_https_listener_or_a_proxy(admin, tmp_path):
    r = admin("dns", DOMAIN)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    needs = "needs HTTPS: add a [listen] https listener, or a reverse proxy"
    for record in (f"_mta-sts.{DOMAIN}.", f"mta-sts.{DOMAIN}.", f"_autodiscover._tcp.{DOMAIN}."):
        (i,) = [n for n, line in enumerate(lines) if line.startswith(record + " ")]
        assert needs in lines[i - 1], (record, lines[i - 1])
    # With an https listener the records stand as they are.
    conf = tmp_path / "with-https.toml"
    conf.write_text(
        f'hostname = "{HOSTNAME}"\ndomains = ["{DOMAIN}"]\ndata_dir = "{tmp_path / "data"}"\n'
        '[listen]\nhttps = ["127.0.0.1:0"]\n'
    )
    r = subprocess.run(
        [sys.executable, "-m", "mailsuite.cli", "--config", str(conf), "dns", DOMAIN],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "needs HTTPS" not in r.stdout
