"""DAG integrity: every program in dags/ imports cleanly, is configured as the team's DAGs
must be, and compiles to the task graph the program definition describes."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from nurture import settings

AUDIENCE_MODELS = {
    "stg_crm__contacts", "stg_crm__consents", "stg_crm__users", "stg_app__signups",
    "stg_app__events",
    "int_contacts_deduplicated", "int_consents_pivoted_to_contacts",
    "int_onboarding_enrollments", "contacts", "onboarding_audience",
    # consent comes from every source, provider events and unsubscribe links included
    "int_consent_events", "stg_sendgrid__events", "stg_twilio__inbound_messages",
    "stg_nurture__unsubscribe_requests", "stg_nurture__message_ledger",
}
# After sends: outcomes (message_sends) and consent (consent_history), from their sources.
REPORT_ROOTS = {f"dbt_report.{model}_model_build" for model in (
    "stg_nurture__message_ledger", "stg_sendgrid__events", "stg_twilio__status_callbacks",
    "stg_twilio__inbound_messages", "stg_nurture__unsubscribe_requests", "stg_crm__consents",
    "stg_crm__contacts")}


PROGRAMS = ("onboarding", "webinar", "satisfaction_survey", "nurture")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(settings.DAGS_FOLDER))


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(PROGRAMS) <= set(dagbag.dag_ids)


@pytest.mark.parametrize("dag_id", PROGRAMS)
def test_dag_follows_the_house_rules(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert "nurture" in dag.tags
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.start_date.tzinfo is not None
    assert dag.doc_md and "Who it reaches" in dag.doc_md
    assert dag.default_args["owner"]
    assert dag.default_args["retries"] >= 1
    assert "catchup" not in dag.default_args
    assert dag.params["dry_run"] is False


def test_onboarding_compiles_to_the_expected_graph(dagbag):
    dag = dagbag.dags["onboarding"]
    dbt_tasks = {t.task_id for t in dag.tasks if t.task_id.startswith("dbt.")}
    assert {t.removeprefix("dbt.").removesuffix("_model_build") for t in dbt_tasks} == \
        AUDIENCE_MODELS

    def downstream(task_id: str) -> set[str]:
        return dag.get_task(task_id).downstream_task_ids

    assert downstream("prepare") == {f"dbt.{model}_model_build" for model in AUDIENCE_MODELS
                                     if model.startswith("stg_")}
    assert downstream("dbt.onboarding_audience_model_build") == {"guard"}
    assert downstream("guard") == {"plan"}
    assert downstream("plan") == {"send"}
    assert downstream("send") == REPORT_ROOTS | {"summarize"}
    assert downstream("summarize") == set()  # a leaf: its verdict is the run's
    assert downstream("dbt_report.message_sends_model_build") == set()  # and so are these
    assert downstream("dbt_report.consent_history_model_build") == set()
    assert dag.get_task("summarize").trigger_rule == "all_done"
    assert {dag.get_task(root).trigger_rule for root in REPORT_ROOTS} == {"all_done"}
    assert dag.get_task("send").pool == "provider_dispatch"


def test_a_new_program_is_a_definition_away(dagbag):
    """The factory compiles any valid program; its steps live in data, not in tasks."""
    from nurture.dag_factory import build_dag
    from nurture.program import Program, Sender, email

    program = Program(
        name="winback", audience="onboarding_audience",
        steps=(email("we_miss_you", after=timedelta(days=30)),),
        sender=Sender("hello@nurture.example", "Nurture"), schedule="@daily",
    )
    dag = build_dag(program)
    assert dag.dag_id == "winback"
    assert dag.schedule == "@daily" or str(dag.timetable.summary) == "@daily"
    assert {"prepare", "guard", "plan", "send", "summarize"} <= set(dag.task_ids)


def test_a_marketer_can_run_the_webinar_program_for_one_webinar(dagbag):
    dag = dagbag.dags["webinar"]
    assert dag.params["webinar_id"] is None
    assert dag.params.get_param("webinar_id").schema["title"] == "Webinar id"


@pytest.mark.parametrize("dag_id", PROGRAMS)
def test_parsing_dags_imports_nothing_heavy(dag_id):
    """Parsing must stay fast and hermetic: no provider SDKs, GX or database drivers."""
    code = (
        "import sys, runpy, time; start = time.perf_counter();"
        f"runpy.run_path({str(settings.DAGS_FOLDER / f'{dag_id}.py')!r});"
        "heavy = {'sendgrid', 'twilio', 'great_expectations', 'psycopg2', 'pandas'};"
        "print(sorted(heavy & set(sys.modules)), round(time.perf_counter() - start, 2))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    loaded, _seconds = result.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert loaded == "[]"
