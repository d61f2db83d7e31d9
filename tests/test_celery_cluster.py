"""`nurture airflow --executor celery`: the environment and processes it sets up (the
cluster itself runs in tests/e2e/test_celery.py)."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg2

from nurture import celery_cluster


def test_each_worker_has_its_own_name_pid_file_and_no_log_server(tmp_path):
    made = celery_cluster.components(tmp_path, port=8080, workers=3, concurrency=2)

    workers = {name: made[name] for name in made if name.startswith("worker")}
    assert set(made) - set(workers) == {"api-server", "scheduler", "dag-processor", "triggerer"}
    assert len(workers) == 3
    pid_files = {args[args.index("--pid") + 1] for args, _ in workers.values()}
    names = {args[args.index("--celery-hostname") + 1] for args, _ in workers.values()}
    assert len(pid_files) == len(names) == 3
    for name, (args, env) in workers.items():
        assert args[:2] == ["celery", "worker"] and "--skip-serve-logs" in args
        assert env[celery_cluster.WORKER_NAME_ENV] == name
        assert env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == "nurture.celery_cluster.worker_hostname"


def test_a_worker_reports_its_celery_name_as_the_task_instances_host(monkeypatch):
    monkeypatch.setenv(celery_cluster.WORKER_NAME_ENV, "worker2")
    assert celery_cluster.worker_hostname().startswith("worker2@")


def test_the_metadata_database_is_postgresql_beside_the_warehouse(warehouse_url, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setattr(os, "environ", {"AIRFLOW_HOME": str(tmp_path)})

    home = celery_cluster.configure(warehouse_url)

    assert home == tmp_path
    assert os.environ["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    url = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert url.startswith("postgresql+psycopg2://") and url.endswith("/airflow")
    psycopg2.connect(url.replace("+psycopg2", "")).close()  # created, and reachable
    # The same secrets for every component, kept in the home for the next start.
    secret = os.environ["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert secret and (Path(tmp_path) / "jwt.secret").read_text() == secret


def test_what_the_environment_already_names_wins(warehouse_url, tmp_path, monkeypatch):
    given = "postgresql+psycopg2://airflow:secret@metadata.internal:5432/airflow"
    monkeypatch.setattr(os, "environ", {"AIRFLOW_HOME": str(tmp_path),
                                        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": given,
                                        "AIRFLOW__API_AUTH__JWT_SECRET": "from-the-vault"})

    celery_cluster.configure(warehouse_url)

    assert os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == given
    assert os.environ["AIRFLOW__API_AUTH__JWT_SECRET"] == "from-the-vault"
