"""Nurture's Airflow plugin: the API server mounts the signed webhook receiver (SendGrid
events, Twilio callbacks, unsubscribe pages) under /nurture, so providers can reach it
wherever the Airflow UI is reachable. Set NURTURE_PUBLIC_URL to the URL they call."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from nurture.webhooks.config import DeferredReceiver

URL_PREFIX = "/nurture"


class NurturePlugin(AirflowPlugin):
    name = "nurture"
    fastapi_apps = [{"app": DeferredReceiver(URL_PREFIX), "url_prefix": URL_PREFIX,
                     "name": "Nurture webhook receiver"}]
