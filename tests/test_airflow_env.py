"""airflow_settings.yaml (the Astro CLI's format) converted for, and loaded into, plain
Airflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nurture import airflow_env


def test_conversion_keeps_every_connection_variable_and_pool(tmp_path):
    files = airflow_env.to_import_files(airflow_env.read_settings(), tmp_path)
    connections = json.loads(files["connections"].read_text())
    assert connections["sendgrid_default"]["password"]
    twilio = connections["twilio_default"]
    assert twilio["login"].startswith("AC")
    assert json.loads(twilio["extra"])["messaging_service_sid"].startswith("MG")
    pools = json.loads(files["pools"].read_text())
    assert pools["provider_dispatch"]["slots"] >= 1
    assert "nurture_dispatch_concurrency" in json.loads(files["variables"].read_text())


def airflow_json(*args: str):
    airflow = Path(sys.executable).with_name("airflow")
    out = subprocess.run([str(airflow), *args, "-o", "json"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out[out.index("["):])


def test_settings_are_loaded_into_the_metadata_database(airflow_db):
    pools = {pool["pool"]: pool for pool in airflow_json("pools", "list")}
    assert int(pools["provider_dispatch"]["slots"]) == 4
    (twilio,) = airflow_json("connections", "get", "twilio_default")
    assert twilio["conn_type"] == "twilio"
    assert twilio["extra_dejson"]["messaging_service_sid"].startswith("MG")
    (sendgrid,) = airflow_json("connections", "get", "sendgrid_default")
    assert sendgrid["host"].startswith("http://127.0.0.1")
