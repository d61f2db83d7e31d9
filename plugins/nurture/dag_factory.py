"""Compile a Program into an Airflow DAG.

    prepare ─▶ dbt_audience (the audience and its parents) ─▶ guard ─▶ plan
        ─▶ send[one per batch of 500, email or SMS] ─▶ summarize
                                                   └─▶ dbt_report (message_sends, consent)

Parsing stays cheap: dbt never runs at parse time and the heavy libraries are imported
inside the tasks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nurture import run_options, settings
from nurture.program import Program

DBT_PROFILE = "nurture"
# After sends: outcomes of what was sent, and consent as the providers' events left it.
# Both with all their parents, since rebuilding a view drops the views built on it.
# The consent view the dispatcher reads at send time is rebuilt too: rebuilding its parents
# drops it, and another program's sends must find it.
REPORT_MODELS = ("+message_sends", "+consent_history", "+int_consents_pivoted_to_contacts")
# Before planning, beside the audience: the source rows set aside, counted in the summary.
QUARANTINE_MODEL = "+contacts_quarantined"
DISPATCH_POOL = "provider_dispatch"  # bounds concurrent send tasks across all programs


def build_dag(program: Program):
    from airflow.sdk import DAG, task

    with DAG(
        dag_id=program.name,
        schedule=program.schedule,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["nurture", *program.tags],
        doc_md=program.doc_md + run_options.how_to_run(program),
        default_args={"owner": program.owner, "retries": 2,
                      "retry_delay": timedelta(minutes=1)},
        params=run_options.params(program),
    ) as dag:

        @task(retries=0)
        def prepare() -> dict:
            from nurture import tasks

            return tasks.prepare(program)

        @task(retries=0)
        def guard(run_id=None) -> dict:
            from nurture import tasks

            return tasks.check_audience(program, run_id=run_id)

        @task
        def plan(params=None, run_id=None, dag_run=None, ti=None) -> list[dict]:
            """Record decisions; returns the batches to send, one mapped `send` each."""
            from airflow.exceptions import AirflowNotFoundException
            from airflow.sdk import Variable
            from airflow.sdk.exceptions import AirflowFailException

            from nurture import tasks
            from nurture.exceptions import ConfigurationError, InvalidRunOptions
            from nurture.policies import DEFAULT_FREQUENCY_CAP

            # A bad test address, step name or connection will not fix itself: no retries.
            try:
                options = _run_options(program, params, dag_run)
                made = tasks.plan(
                    program, run_id=run_id, dry_run=options.dry_run, filters=options.filters,
                    steps=options.steps, send_limit=options.send_limit,
                    frequency_cap=int(Variable.get("nurture_frequency_cap",
                                                   default=DEFAULT_FREQUENCY_CAP)),
                    batch_size=int(Variable.get("nurture_batch_size",
                                                default=tasks.BATCH_SIZE)),
                )
                if options.is_test:
                    tasks.send_tests(program, run_id=run_id, options=options)
            except (InvalidRunOptions, ConfigurationError, AirflowNotFoundException) as err:
                raise AirflowFailException(str(err)) from err
            ti.xcom_push(key="counts", value=made["counts"])
            return made["batches"]

        @task(pool=DISPATCH_POOL, map_index_template="{{ channel }} batch {{ batch_no }}")
        def send(channel: str, batch_no: int, run_id=None) -> dict:
            from airflow.exceptions import AirflowNotFoundException
            from airflow.sdk.exceptions import AirflowFailException

            from nurture import tasks
            from nurture.exceptions import ConfigurationError

            try:
                return tasks.send(program, run_id=run_id, channel=channel, batch_no=batch_no)
            except (ConfigurationError, AirflowNotFoundException) as err:
                # A missing connection or key will not fix itself: fail now, no retries.
                # Nothing was claimed, so the next run sends these messages.
                raise AirflowFailException(str(err)) from err

        @task(trigger_rule="all_done", retries=0)
        def summarize(params=None, run_id=None, dag_run=None, ti=None) -> dict:
            from nurture import tasks
            from nurture.exceptions import InvalidRunOptions, RunIncomplete

            try:
                options = _run_options(program, params, dag_run)
            except InvalidRunOptions as err:
                raise RunIncomplete(f"the trigger form was refused: {err}") from err
            counts = ti.xcom_pull(task_ids="plan", key="counts", default=None)
            return tasks.finish(program, run_id=run_id, dry_run=options.dry_run,
                                plan_counts=counts or {}, options=options)

        planned = plan()
        sent = send.expand_kwargs(planned)
        audience = _dbt_build("dbt_audience", [f"+{program.audience}", QUARANTINE_MODEL])
        prepare() >> audience >> guard() >> planned
        # Both are leaves, and Airflow judges a run by its leaves: the summary fails the run
        # when nothing was planned or sent as it should, the report when its models fail.
        sent >> summarize()
        sent >> _dbt_build("dbt_report", list(REPORT_MODELS), trigger_rule="all_done")
    return dag


def _run_options(program: Program, params, dag_run) -> run_options.RunOptions:
    run_type = getattr(dag_run.run_type, "value", dag_run.run_type)  # an enum in the SDK
    return run_options.resolve(program, params, conf=dag_run.conf, run_type=str(run_type))


def _dbt_build(task_id: str, select: list[str], trigger_rule: str = "all_success"):
    """One `dbt build` of the selected models and their tests (Cosmos runs it with the
    connection's profile). One task rather than one per model: a model per task costs a
    dbt start-up each, several times the build itself; the task log lists every model."""
    from cosmos import ProfileConfig
    from cosmos.operators.local import DbtBuildLocalOperator

    return DbtBuildLocalOperator(
        task_id=task_id,
        project_dir=str(settings.DBT_PROJECT_DIR),
        profile_config=ProfileConfig(
            profile_name=DBT_PROFILE,
            target_name="dev",
            profiles_yml_filepath=settings.DBT_PROJECT_DIR / "profiles.yml",
        ),
        select=select,
        # Cautious: only the tests whose every parent is selected (a relationships test
        # from a model outside the selection must not run against a stale table).
        indirect_selection="cautious",
        dbt_cmd_flags=list(settings.DBT_SCHEDULED_BUILD_FLAGS),
        install_deps=False,
        emit_datasets=False,
        retries=1,
        trigger_rule=trigger_rule,
    )
