"""DAG integrity: every program in dags/ imports cleanly, is configured as the team's DAGs
must be, and compiles to the task graph the program definition describes."""

from __future__ import annotations

import copy
import subprocess
import sys
from datetime import timedelta

import pytest

from nurture import settings

AUDIENCE_MODELS = {
    "stg_crm__contacts", "stg_crm__consents", "stg_crm__users", "stg_app__signups",
    "stg_app__events",
    "int_contacts_deduplicated", "int_consents_pivoted_to_contacts",
    "int_onboarding_enrollments", "int_contact_activations", "contacts", "onboarding_audience",
    # consent comes from every source, provider events and unsubscribe links included
    "int_consent_events", "stg_sendgrid__events", "stg_twilio__inbound_messages",
    "stg_nurture__unsubscribe_requests", "stg_nurture__message_ledger",
}
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
    # The doc is the marketer's: who, which steps when, what stops them, the guard, the form.
    for part in ("Who it reaches", "| when | channel | step |", "What stops a",
                 "**The guard:** before anything is sent", "Trigger it yourself"):
        assert part in dag.doc_md, part
    assert dag.default_args["owner"]
    assert dag.default_args["retries"] >= 1
    assert "catchup" not in dag.default_args
    # The form starts as a dry run, so a mis-click mails nobody; scheduled runs still send
    # (the plan task decides from the run type: tests/test_run_options.py).
    assert dag.params["dry_run"] is True


@pytest.mark.parametrize("dag_id", PROGRAMS)
def test_the_trigger_form_offers_the_programs_own_steps_and_refuses_others(dagbag, dag_id):
    from airflow.sdk.exceptions import ParamValidationError

    from nurture.catalog import program

    steps = copy.copy(dagbag.dags[dag_id].params.get_param("steps"))  # resolve() sets it
    assert steps.schema["examples"] == [step.name for step in program(dag_id).steps]
    assert steps.resolve([program(dag_id).steps[-1].name])
    with pytest.raises(ParamValidationError):
        steps.resolve(["no_such_step"])


def upstream_models(*models: str) -> set[str]:
    """The models `+model` selects, from dbt's manifest."""
    import json

    parents = json.loads(settings.DBT_MANIFEST.read_text())["parent_map"]
    found, todo = set(), [f"model.nurture.{model}" for model in models]
    while todo:
        node = todo.pop()
        if node.startswith("model.") and node not in found:
            found.add(node)
            todo.extend(parents[node])
    return {node.removeprefix("model.nurture.") for node in found}


def test_onboarding_compiles_to_the_expected_graph(dagbag):
    dag = dagbag.dags["onboarding"]

    def downstream(task_id: str) -> set[str]:
        return dag.get_task(task_id).downstream_task_ids

    assert downstream("prepare") == {"dbt_audience"}
    assert downstream("dbt_audience") == {"guard"}
    assert downstream("guard") == {"plan"}
    assert downstream("plan") == {"send"}
    assert downstream("send") == {"dbt_report", "summarize"}
    assert downstream("summarize") == set()  # a leaf: its verdict is the run's
    assert downstream("dbt_report") == set()  # and so is this one
    assert dag.get_task("summarize").trigger_rule == "all_done"
    assert dag.get_task("dbt_report").trigger_rule == "all_done"
    assert dag.get_task("send").pool == "provider_dispatch"


def test_dbt_tasks_build_the_audience_and_the_report_with_their_parents(dagbag):
    dag = dagbag.dags["onboarding"]
    audience, report = dag.get_task("dbt_audience"), dag.get_task("dbt_report")
    assert audience.select == ["+onboarding_audience", "+contacts_quarantined"]
    assert audience.indirect_selection == "cautious"
    # CI runs the unit tests; an hourly build only builds and tests the data.
    assert audience.dbt_cmd_flags == report.dbt_cmd_flags == [
        "--exclude-resource-type", "unit_test"]
    assert upstream_models("onboarding_audience") == AUDIENCE_MODELS
    assert report.select == ["+message_sends", "+consent_history",
                             "+int_consents_pivoted_to_contacts"]
    # After sends: outcomes and consent, rebuilt from the provider events that came in.
    assert {"stg_sendgrid__events", "stg_twilio__status_callbacks",
            "stg_nurture__unsubscribe_requests", "stg_nurture__message_ledger",
            "int_consent_events"} <= upstream_models("message_sends", "consent_history")


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
