"""Point Airflow at this project, and load `airflow_settings.yaml` into it.

Plain Airflow cannot read `airflow_settings.yaml` (the Astro CLI's format), so this converts
its connections, variables and pools into Airflow's own import files and imports them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nurture import settings


def configure(airflow_home: Path | None = None) -> Path:
    """Environment for Airflow run from here: this project's dags/ and plugins/, SQLite
    metadata under the state folder unless AIRFLOW_HOME is set, no examples, no telemetry."""
    home = Path(os.environ.get("AIRFLOW_HOME") or airflow_home or settings.STATE_DIR / "airflow")
    home.mkdir(parents=True, exist_ok=True)
    defaults = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.DAGS_FOLDER),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.PLUGINS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__PROPAGATE_LOGS": "False",
        # Cosmos caches dbt's partial parse per DAG id; under /tmp (its default) two
        # checkouts of the project would overwrite each other's and re-parse every task.
        "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos"),
        "SCARF_ANALYTICS": "false",
        "DO_NOT_TRACK": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", _fernet_key(home))
    return home


def _fernet_key(home: Path) -> str:
    """One key per Airflow home, shared by every process: this one reads connections and
    variables that `airflow ... import` (another process) encrypted."""
    key_file = home / "fernet.key"
    if not key_file.exists():
        from cryptography.fernet import Fernet

        key_file.write_bytes(Fernet.generate_key())
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def airflow(*args: str) -> None:
    """Run the `airflow` command of this virtualenv."""
    executable = Path(sys.executable).with_name("airflow")
    subprocess.run([str(executable), *args], check=True, stdout=subprocess.DEVNULL)


def migrate() -> None:
    """Create or upgrade the metadata database (idempotent)."""
    airflow("db", "migrate")


def read_settings(path: Path = settings.AIRFLOW_SETTINGS_FILE) -> dict:
    import yaml

    return (yaml.safe_load(path.read_text()) or {}).get("airflow", {})


def to_import_files(config: dict, folder: Path) -> dict[str, Path]:
    """Write Airflow's own import formats for what `config` holds; returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    connections = {
        c["conn_id"]: {
            "conn_type": c.get("conn_type"),
            "host": c.get("conn_host"),
            "schema": c.get("conn_schema"),
            "login": c.get("conn_login"),
            "password": c.get("conn_password"),
            "port": c.get("conn_port"),
            "extra": json.dumps(c.get("conn_extra") or {}),
        }
        for c in config.get("connections") or []
    }
    variables = {v["variable_name"]: v["variable_value"] for v in config.get("variables") or []}
    pools = {
        p["pool_name"]: {"slots": p["pool_slot"], "description": p.get("pool_description", ""),
                         "include_deferred": False}
        for p in config.get("pools") or []
    }
    for name, content in (("connections", connections), ("variables", variables),
                          ("pools", pools)):
        if content:
            files[name] = folder / f"{name}.json"
            files[name].write_text(json.dumps(content, indent=2))
    return files


def load_settings(path: Path = settings.AIRFLOW_SETTINGS_FILE) -> dict[str, int]:
    """Import connections, variables and pools into the configured metadata database."""
    config = read_settings(path)
    files = to_import_files(config, Path(os.environ["AIRFLOW_HOME"]) / "settings-import")
    if "connections" in files:
        airflow("connections", "import", "--overwrite", str(files["connections"]))
    if "variables" in files:
        airflow("variables", "import", "--action-on-existing-key", "overwrite",
                str(files["variables"]))
    if "pools" in files:
        airflow("pools", "import", str(files["pools"]))
    return {kind: len(config.get(kind) or []) for kind in ("connections", "variables", "pools")}


def connection_env(conn_id: str, **fields) -> dict[str, str]:
    """An AIRFLOW_CONN_* variable, which takes precedence over the metadata database."""
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(fields)}


def connection_env_with_extra(conn_id: str, **extra) -> dict[str, str]:
    """The AIRFLOW_CONN_* variable of `conn_id` now in the environment, `extra` added."""
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    fields = json.loads(os.environ[variable])
    return connection_env(conn_id, **{**fields, "extra": {**(fields.get("extra") or {}),
                                                           **extra}})
