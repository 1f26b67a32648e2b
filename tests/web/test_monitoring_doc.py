"""docs/monitoring.md: its Prometheus configuration and alert rules are valid YAML, and every
metric name the rules use is served by a real scrape of a running server."""

from __future__ import annotations

import re
import smtplib

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO
from tests.web.test_monitor import METRICS_ON, get

DOC = REPO / "docs" / "monitoring.md"


def yaml_blocks() -> list[dict]:
    text = DOC.read_text()
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def test_scrape_config_and_rules_are_valid_yaml():
    config, rules = yaml_blocks()
    job = config["scrape_configs"][0]
    assert job["job_name"] == "mailsuite"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9025"]
    assert config["rule_files"] == ["/etc/prometheus/rules/mailsuite.yml"]
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {
        "MailsuiteCertificateExpiresSoon",
        "MailsuiteQueueStuck",
        "MailsuiteDeliveryFailures",
    } <= names
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["labels"]["severity"] in ("warning", "critical")


def test_every_metric_in_the_rules_and_the_table_is_in_a_real_scrape(server_factory):
    srv = server_factory(**METRICS_ON)
    srv.add_user("alice@example.test")
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=15) as s:
        s.sendmail("bob@example.test", ["alice@example.test"], b"Subject: x\r\n\r\nx\r\n")
    status, body = get(srv.port("metrics"), "/metrics")
    assert status == 200
    served = set()
    for family in text_string_to_metric_families(body.decode()):
        served.add(family.name)
        if family.type == "counter":  # declared (HELP, TYPE) even before its first event
            served.add(family.name + "_total")
        served.update(s.name for s in family.samples)
    _, rules = yaml_blocks()
    used = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            used.update(re.findall(r"\bmailsuite_[a-z_]+", rule["expr"]))
    assert used and used <= served, used - served
    table = set(re.findall(r"^\| `(mailsuite_[a-z_]+)`", DOC.read_text(), re.M))
    assert len(table) >= 14
    assert table <= served, table - served
