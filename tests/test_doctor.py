"""`nurture doctor`: a healthy deployment passes; each problem is named with its fix.

The checks are plain functions of a `Deployment` (built here from real Airflow Connection
objects); `gather` is tested against the real thing: Airflow's metadata database with
airflow_settings.yaml loaded, connections from the environment, the embedded warehouse.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from airflow.models.connection import Connection
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nurture import cli, doctor
from nurture.doctor import Deployment, diagnose
from nurture.runner import LOCAL_SIGNING_KEY
from nurture.tokens import generate_key

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
SIGNING_KEY = generate_key()


def verification_key() -> str:
    der = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


VERIFICATION_KEY = verification_key()


def connections(**overrides: dict | None) -> dict[str, Connection | None]:
    fields = {
        "sendgrid_default": dict(conn_type="sendgrid", password="SG.abc.def",
                                 extra={"webhook_verification_key": VERIFICATION_KEY}),
        "twilio_default": dict(conn_type="twilio", login="AC" + "0a" * 16, password="t0ken",
                               extra={"messaging_service_sid": "MG" + "1b" * 16}),
        "nurture_signing": dict(conn_type="generic", password=SIGNING_KEY,
                                extra={"previous_keys": []}),
    }
    fields.update(overrides)
    return {conn_id: None if spec is None else Connection(
        conn_id=conn_id, **{k: json.dumps(v) if k == "extra" and not isinstance(v, str) else v
                            for k, v in spec.items()})
        for conn_id, spec in fields.items()}


def healthy(**overrides) -> Deployment:
    deployment = Deployment(
        connections=connections(),
        pools={"provider_dispatch": 4},
        variables={"nurture_dispatch_concurrency": "16", "nurture_provider_concurrency": None},
        public_url="https://airflow.example.com/nurture",
        warehouse_url="postgresql://nurture:secret@db.example.com:5432/warehouse",
        warehouse_error=None,
        manifest_mtime=2_000.0,
        newest_dbt_source=("models/marts/contacts.sql", 1_000.0),
        now=NOW,
    )
    return replace(deployment, **overrides)


def test_a_healthy_deployment_has_no_findings():
    assert diagnose(healthy()) == []
    assert doctor.report([]) == "nurture doctor: everything checked is ready"


def sendgrid(**fields) -> dict:
    return {"sendgrid_default": {"conn_type": "sendgrid", "password": "SG.abc.def",
                                 "extra": {"webhook_verification_key": VERIFICATION_KEY},
                                 **fields}}


def twilio(**fields) -> dict:
    return {"twilio_default": {"conn_type": "twilio", "login": "AC" + "0a" * 16,
                               "password": "t0ken",
                               "extra": {"messaging_service_sid": "MG" + "1b" * 16}, **fields}}


def signing(**fields) -> dict:
    return {"nurture_signing": {"conn_type": "generic", "password": SIGNING_KEY, **fields}}


PROBLEMS = {
    "sendgrid missing": (dict(connections=connections(sendgrid_default=None)),
                         "connection sendgrid_default", "missing"),
    "sendgrid without key": (dict(connections=connections(**sendgrid(password=None))),
                             "connection sendgrid_default", "no API key"),
    "sendgrid over plain http": (
        dict(connections=connections(**sendgrid(host="http://api.sendgrid.com"))),
        "connection sendgrid_default", "plain http"),
    "sendgrid without verification key": (
        dict(connections=connections(**sendgrid(extra={}))),
        "connection sendgrid_default", "no webhook_verification_key"),
    "sendgrid with a bad verification key": (
        dict(connections=connections(**sendgrid(extra={"webhook_verification_key": "abc"}))),
        "connection sendgrid_default", "not a SendGrid webhook verification key"),
    "sendgrid with too many personalizations a request": (
        dict(connections=connections(**sendgrid(extra={
            "webhook_verification_key": VERIFICATION_KEY, "personalizations_per_request": 5000}))),
        "connection sendgrid_default", "personalizations_per_request 5000"),
    "twilio missing": (dict(connections=connections(twilio_default=None)),
                       "connection twilio_default", "missing"),
    "twilio bad account sid": (dict(connections=connections(**twilio(login="me@example.com"))),
                               "connection twilio_default", "not an Account SID"),
    "twilio without token": (dict(connections=connections(**twilio(password=""))),
                             "connection twilio_default", "no auth token"),
    "twilio without sender": (dict(connections=connections(**twilio(extra={}))),
                              "connection twilio_default", "no sender"),
    "twilio bad from number": (
        dict(connections=connections(**twilio(extra={"from_number": "040 123 4567"}))),
        "connection twilio_default", "not an E.164 number"),
    "signing missing": (dict(connections=connections(nurture_signing=None)),
                        "connection nurture_signing", "no signing key"),
    "signing key malformed": (dict(connections=connections(**signing(password="hunter2"))),
                              "connection nurture_signing", "not a Fernet key"),
    "signing key is the repository's placeholder": (
        dict(connections=connections(**signing(password=LOCAL_SIGNING_KEY))),
        "connection nurture_signing", "local placeholder"),
    "signing previous_keys malformed": (
        dict(connections=connections(**signing(extra={"previous_keys": [{"until": "x"}]}))),
        "connection nurture_signing", "previous_keys #0"),
    "public url missing": (dict(public_url=None), "NURTURE_PUBLIC_URL", "not set"),
    "public url relative": (dict(public_url="/nurture"), "NURTURE_PUBLIC_URL",
                            "not an absolute"),
    "public url over plain http": (dict(public_url="http://hooks.example.com"),
                                   "NURTURE_PUBLIC_URL", "plain http"),
    "public url with a query": (dict(public_url="https://hooks.example.com/?a=1"),
                                "NURTURE_PUBLIC_URL", "query or fragment"),
    "metadata database unreadable": (
        dict(airflow_error="no such table: slot_pool", pools={}, variables={}),
        "Airflow metadata database", "cannot be read"),
    "pool missing": (dict(pools={}), "pool provider_dispatch", "missing"),
    "pool without slots": (dict(pools={"provider_dispatch": 0}), "pool provider_dispatch",
                           "no send task can run"),
    "pool over twilio's limit": (dict(pools={"provider_dispatch": 8}),
                                 "pool provider_dispatch", "over twilio's limit of 100"),
    "pool over a configured limit": (
        dict(variables={"nurture_provider_concurrency": '{"sendgrid": 32}'}),
        "pool provider_dispatch", "over sendgrid's limit of 32"),
    "limits malformed": (dict(variables={"nurture_provider_concurrency": '{"mailgun": 5}'}),
                         "variable nurture_provider_concurrency", "must be JSON"),
    "concurrency not a number": (dict(variables={"nurture_dispatch_concurrency": "lots"}),
                                 "variable nurture_dispatch_concurrency",
                                 "not a positive integer"),
    "warehouse unreachable": (dict(warehouse_error="connection refused"), "warehouse",
                              "cannot be reached"),
    "no warehouse at all": (dict(warehouse_url=None, warehouse_error="not running"),
                            "warehouse", "NURTURE_WAREHOUSE_URL is not set"),
    "manifest missing": (dict(manifest_mtime=None), "dbt manifest", "missing"),
    "manifest older than a model": (
        dict(newest_dbt_source=("models/marts/contacts.sql", 2_600.0)), "dbt manifest",
        "older than models/marts/contacts.sql (changed 10 min after"),
}


@pytest.mark.parametrize("name", PROBLEMS)
def test_each_problem_is_an_error_that_says_how_to_fix_it(name):
    overrides, subject, problem = PROBLEMS[name]
    findings = diagnose(healthy(**overrides))
    assert [(f.severity, f.subject) for f in findings] == [("error", subject)], findings
    assert problem in findings[0].problem
    assert findings[0].fix
    assert "error(s)" in doctor.report(findings) and "fix: " in doctor.report(findings)


def test_warnings_do_not_hide_errors_and_come_last():
    old = generate_key()
    expired = {"key": old, "until": (NOW - timedelta(days=1)).isoformat()}
    findings = diagnose(healthy(
        connections=connections(**signing(extra={"previous_keys": [expired]}),
                                **sendgrid(password="not-a-sendgrid-key")),
        public_url=None))
    assert [(f.severity, f.subject) for f in findings] == [
        ("error", "NURTURE_PUBLIC_URL"),
        ("warning", "connection sendgrid_default"),
        ("warning", "connection nurture_signing"),
    ]
    assert "previous_keys #0 is past its until" in findings[2].problem


def test_no_secret_is_printed():
    password = "s3cr3t-pw"
    findings = diagnose(healthy(
        warehouse_url=f"postgresql://nurture:{password}@db.example.com/w",
        warehouse_error="timeout expired",
        connections=connections(**sendgrid(password="SG.k3y", host="http://x.example.com"),
                                **signing(password="not-a-key-but-secret"))))
    text = doctor.report(findings)
    assert password not in text and "SG.k3y" not in text and "not-a-key-but-secret" not in text
    assert "postgresql://nurture:***@db.example.com/w" in text


def test_the_manifest_is_stale_when_a_model_changed_after_it(tmp_path: Path):
    (tmp_path / "models").mkdir()
    (tmp_path / "target").mkdir()
    model, manifest = tmp_path / "models" / "a.sql", tmp_path / "target" / "manifest.json"
    model.write_text("select 1")
    manifest.write_text("{}")
    os.utime(model, (1_000, 1_000))
    os.utime(manifest, (2_000, 2_000))
    assert doctor._dbt_facts(tmp_path) == {"manifest_mtime": 2_000,
                                           "newest_dbt_source": ("models/a.sql", 1_000)}
    os.utime(model, (3_000, 3_000))
    facts = doctor._dbt_facts(tmp_path)
    assert [f.problem.split(" (")[0] for f in diagnose(healthy(**facts))] == [
        "older than models/a.sql"]


@pytest.fixture
def deployed(airflow_db, warehouse_url, monkeypatch):
    """The local Airflow (airflow_settings.yaml loaded: pool, variables, placeholder
    connections), overridden from the environment as a production deployment would."""
    for conn_id, spec in {**sendgrid(), **twilio(), **signing()}.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(spec))
    monkeypatch.setenv("NURTURE_PUBLIC_URL", "https://airflow.example.com/nurture")
    monkeypatch.setenv("NURTURE_WAREHOUSE_URL", warehouse_url)


def test_the_command_passes_a_healthy_deployment(deployed, capsys):
    assert cli.main(["doctor"]) == 0
    assert capsys.readouterr().out.strip() == "nurture doctor: everything checked is ready"


def test_the_command_fails_and_explains(deployed, monkeypatch, capsys):
    """The metadata database's own connection (the placeholder key) and a warehouse that
    does not answer."""
    monkeypatch.delenv("AIRFLOW_CONN_NURTURE_SIGNING")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("NURTURE_WAREHOUSE_URL", f"postgresql://u:pw@127.0.0.1:{port}/x")
    started = time.monotonic()
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "error: connection nurture_signing: the key is the local placeholder" in out
    assert f"error: warehouse: postgresql://u:***@127.0.0.1:{port}/x cannot be reached" in out
    assert "2 error(s), 0 warning(s)" in out
    assert time.monotonic() - started < 30
