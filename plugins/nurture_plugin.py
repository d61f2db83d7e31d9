"""Nurture's Airflow plugin, in the API server:

- /nurture/ui: the marketer's pages (programs and their last runs, a run's summary, a
  message preview), behind Airflow's login; listed in the UI's navigation as "Nurture",
  and as a "Nurture summary" tab on every DAG run.
- /nurture: the signed webhook receiver (SendGrid events, Twilio callbacks, unsubscribe
  pages), so providers can reach it wherever the Airflow UI is reachable. Set
  NURTURE_PUBLIC_URL to the URL they call.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from nurture.ui import create_ui_app
from nurture.webhooks.config import DeferredReceiver

URL_PREFIX = "/nurture"
UI_PREFIX = "/nurture/ui"


class NurturePlugin(AirflowPlugin):
    name = "nurture"
    # Mounted in this order: the pages' longer prefix must match before the receiver's.
    fastapi_apps = [
        {"app": create_ui_app(), "url_prefix": UI_PREFIX, "name": "Nurture pages"},
        {"app": DeferredReceiver(URL_PREFIX), "url_prefix": URL_PREFIX,
         "name": "Nurture webhook receiver"},
    ]
    # hrefs without a leading slash resolve against the UI's base URL (a proxy prefix too).
    external_views = [
        {"name": "Nurture", "href": "nurture/ui/", "url_route": "nurture",
         "destination": "nav", "nav_top_level": True},
        {"name": "Nurture summary", "href": "nurture/ui/runs/{DAG_ID}/{RUN_ID}",
         "url_route": "nurture-summary", "destination": "dag_run"},
    ]
