"""The deployed receiver takes its keys from the provider connections."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from nurture.webhooks.config import from_connections

PUBLIC_URL = "https://hooks.nurture.example"
TOKEN = "config-test-token"


def test_twilio_token_from_the_connection_and_sendgrid_refused_without_a_key(
        warehouse_url, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT",
                       json.dumps({"conn_type": "twilio", "login": "AC1", "password": TOKEN}))
    monkeypatch.setenv("AIRFLOW_CONN_SENDGRID_DEFAULT",
                       json.dumps({"conn_type": "sendgrid", "password": "SG.key"}))
    client = TestClient(from_connections(warehouse_url=warehouse_url, public_url=PUBLIC_URL))

    form = {"MessageSid": "SMconfigtest0001", "MessageStatus": "delivered"}
    signature = RequestValidator(TOKEN).compute_signature(
        f"{PUBLIC_URL}/webhooks/twilio/status", form)
    accepted = client.post("/webhooks/twilio/status", data=form,
                           headers={"X-Twilio-Signature": signature})
    assert accepted.status_code == 200
    forged = client.post("/webhooks/twilio/status", data=form,
                         headers={"X-Twilio-Signature": "AAAA" + signature[4:]})
    assert forged.status_code == 403

    refused = client.post("/webhooks/sendgrid", content=b"[]",
                          headers={"Content-Type": "application/json"})
    assert refused.status_code == 503
    assert "webhook_verification_key" in refused.json()["detail"]


def test_the_airflow_plugin_mounts_the_receiver_under_nurture(warehouse_url, monkeypatch):
    """What the API server does with the plugin: mount its app; the receiver is built from
    the connections on the first request and checks Twilio signatures against the public
    URL, prefix included."""
    from fastapi import FastAPI

    from nurture_plugin import UI_PREFIX, URL_PREFIX, NurturePlugin

    # Mounted in the plugin's order, as the API server does: the pages' longer prefix first.
    assert [app["url_prefix"] for app in NurturePlugin.fastapi_apps] == [UI_PREFIX, URL_PREFIX]
    assert URL_PREFIX == "/nurture"
    api_server = FastAPI()
    for mounted in NurturePlugin.fastapi_apps:
        api_server.mount(mounted["url_prefix"], mounted["app"])
    client = TestClient(api_server)
    form = {"MessageSid": "SMplugintest0001", "MessageStatus": "delivered"}
    signature = RequestValidator(TOKEN).compute_signature(
        f"{PUBLIC_URL}/nurture/webhooks/twilio/status", form)

    monkeypatch.delenv("NURTURE_WAREHOUSE_URL")
    unconfigured = client.post("/nurture/webhooks/twilio/status", data=form,
                               headers={"X-Twilio-Signature": signature})
    assert unconfigured.status_code == 503
    assert "NURTURE_WAREHOUSE_URL" in unconfigured.json()["detail"]

    monkeypatch.setenv("NURTURE_WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("NURTURE_PUBLIC_URL", f"{PUBLIC_URL}/nurture")
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT",
                       json.dumps({"conn_type": "twilio", "login": "AC1", "password": TOKEN}))
    accepted = client.post("/nurture/webhooks/twilio/status", data=form,
                           headers={"X-Twilio-Signature": signature})
    assert accepted.status_code == 200
    unsigned = client.post("/nurture/webhooks/twilio/status", data=form)
    assert unsigned.status_code == 403
