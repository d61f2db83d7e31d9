"""`nurture doctor`: is this deployment ready to send? Each problem with how to fix it.

The facts are gathered once from Airflow (connections through its secrets backends, pools
and variables from its metadata database), the environment, the warehouse and dbt's
manifest (`gather`); the checks are plain functions of those facts (`diagnose`), so each
can be tested on a deployment described in a few lines. An error means a run would fail,
send without unsubscribe links, or refuse provider events; a warning means something will
bite later (a key past its grace period, an embedded warehouse in what looks like
production).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from nurture import settings

SENDGRID, TWILIO, SIGNING = "sendgrid_default", "twilio_default", "nurture_signing"
DISPATCH_POOL = "provider_dispatch"  # as nurture.dag_factory names it
CONCURRENCY_VARIABLE = "nurture_dispatch_concurrency"
LIMITS_VARIABLE = "nurture_provider_concurrency"
DEFAULT_CONCURRENCY = 16  # as nurture.tasks.send reads it
# Requests in flight a provider account accepts before answering 429. Twilio documents a
# per-account REST concurrency limit (100 unless raised); SendGrid publishes none for mail
# send, so it is checked only when the variable names one.
DEFAULT_LIMITS: dict[str, int | None] = {"sendgrid": None, "twilio": 100}
# What dbt's manifest is built from: a change to any of these makes it stale.
DBT_SOURCES = ("models", "macros", "seeds", "snapshots", "tests", "analyses",
               "dbt_project.yml", "packages.yml", "dependencies.yml")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    subject: str  # what was checked: a connection, the pool, the warehouse...
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.subject}: {self.problem}\n    fix: {self.fix}"


@dataclass
class Deployment:
    """What `diagnose` looks at; `gather` reads it from a real deployment."""

    connections: dict[str, Any]  # conn_id -> an Airflow Connection, or None when missing
    pools: dict[str, int | None]  # pool -> slots, None when missing
    variables: dict[str, str | None]
    public_url: str | None
    warehouse_url: str | None  # None: the embedded warehouse
    warehouse_error: str | None  # why it could not be reached, None when it answered
    manifest_mtime: float | None  # None: no manifest
    newest_dbt_source: tuple[str, float] | None  # path relative to the dbt project, mtime
    airflow_error: str | None = None  # why Airflow's metadata database could not be read
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


def diagnose(deployment: Deployment) -> list[Finding]:
    """Every problem of the deployment, errors first."""
    checks: list[Callable[[Deployment], Iterator[Finding]]] = [
        _sendgrid, _twilio, _signing, _public_url, _airflow, _pool, _warehouse, _manifest]
    found = [finding for check in checks for finding in check(deployment)]
    return sorted(found, key=lambda f: f.severity != "error")


def _error(subject: str, problem: str, fix: str) -> Finding:
    return Finding("error", subject, problem, fix)


def _warning(subject: str, problem: str, fix: str) -> Finding:
    return Finding("warning", subject, problem, fix)


def _set_connection(conn_id: str, fields: str) -> str:
    return (f"set {fields} of connection {conn_id} (Admin > Connections, your secrets "
            f"backend, or AIRFLOW_CONN_{conn_id.upper()})")


def _host_problem(conn) -> str | None:
    if not conn.host:
        return None  # the provider's public API
    parts = urlsplit(conn.host if "://" in conn.host else f"//{conn.host}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"host {conn.host!r} is not an http(s) URL"
    if parts.scheme == "http" and parts.hostname not in _LOCAL_HOSTS:
        return f"host {conn.host!r} is plain http: the API key would cross the network in clear"
    return None


def _sendgrid(d: Deployment) -> Iterator[Finding]:
    from nurture.providers.sendgrid_hook import DEFAULT_PER_REQUEST, MAX_PER_REQUEST

    conn, subject = d.connections.get(SENDGRID), f"connection {SENDGRID}"
    if conn is None:
        yield _error(subject, "missing: no email can be sent",
                     _set_connection(SENDGRID, "password (the SendGrid API key)"))
        return
    if not conn.password:
        yield _error(subject, "no API key (its password)",
                     _set_connection(SENDGRID, "the password to a SendGrid API key"))
    elif not conn.password.startswith("SG."):
        yield _warning(subject, "the API key does not look like SendGrid's (SG....)",
                       "paste the key SendGrid showed when it was created")
    if problem := _host_problem(conn):
        yield _error(subject, problem, "use https://api.sendgrid.com (or .eu.), or leave the "
                     "host empty")
    per_request = conn.extra_dejson.get("personalizations_per_request", DEFAULT_PER_REQUEST)
    if not isinstance(per_request, int) or not 1 <= per_request <= MAX_PER_REQUEST:
        yield _error(subject, f"personalizations_per_request {per_request!r}: no email can be "
                     "sent", f"set a whole number from 1 to {MAX_PER_REQUEST} (SendGrid's "
                     f"limit), or remove it for {DEFAULT_PER_REQUEST}")
    key = conn.extra_dejson.get("webhook_verification_key")
    if not key:
        yield _error(subject, "no webhook_verification_key: the receiver refuses every "
                     "SendGrid event (503), so bounces and unsubscribes are never recorded",
                     "copy the Event Webhook's verification key (Settings > Mail Settings > "
                     "Signed Event Webhook) into extra.webhook_verification_key")
        return
    from nurture.webhooks.signatures import load_sendgrid_key

    try:
        load_sendgrid_key(key)
    except ValueError as err:
        yield _error(subject, f"webhook_verification_key: {err}",
                     "paste the verification key exactly as SendGrid shows it")


def _twilio(d: Deployment) -> Iterator[Finding]:
    conn, subject = d.connections.get(TWILIO), f"connection {TWILIO}"
    if conn is None:
        yield _error(subject, "missing: no SMS can be sent, and Twilio callbacks are refused",
                     _set_connection(TWILIO, "login (Account SID), password (auth token) and "
                                     "extra messaging_service_sid"))
        return
    if not conn.login or not _ACCOUNT_SID.fullmatch(conn.login):
        yield _error(subject, "login is not an Account SID (AC + 32 hex digits)",
                     _set_connection(TWILIO, "login to the Account SID from the Twilio console"))
    if not conn.password:
        yield _error(subject, "no auth token (its password): no SMS can be sent and every "
                     "callback is refused", _set_connection(TWILIO, "password to the auth token"))
    if problem := _host_problem(conn):
        yield _error(subject, problem, "leave the host empty for Twilio's API")
    extra = conn.extra_dejson  # Airflow refuses an extra that is not a JSON object
    service, number = extra.get("messaging_service_sid"), extra.get("from_number")
    if service and not _MESSAGING_SERVICE_SID.fullmatch(str(service)):
        yield _error(subject, "messaging_service_sid is not MG + 32 hex digits",
                     "copy the Messaging Service SID from the Twilio console")
    elif number and not _E164.fullmatch(str(number)):
        yield _error(subject, "from_number is not an E.164 number (+358...)",
                     "write the sending number with + and its country code")
    elif not service and not number:
        yield _error(subject, "no sender: extra has neither messaging_service_sid nor "
                     "from_number", _set_connection(TWILIO, "extra.messaging_service_sid"))


def _signing(d: Deployment) -> Iterator[Finding]:
    from nurture.exceptions import ConfigurationError
    from nurture.runner import LOCAL_SIGNING_KEY
    from nurture.tokens import TokenSigner

    conn, subject = d.connections.get(SIGNING), f"connection {SIGNING}"
    new_key = ("generate one with `python -c \"from nurture.tokens import generate_key; "
               "print(generate_key())\"` and make it the password")
    if conn is None or not conn.password:
        yield _error(subject, "no signing key: emails cannot carry unsubscribe links, so sends "
                     "fail, and unsubscribe and survey pages answer 503", new_key)
        return
    try:
        signer = TokenSigner.from_connection(SIGNING, get_connection=lambda _: conn,
                                             clock=d.now.timestamp)
    except ConfigurationError as err:
        yield _error(subject, str(err).removeprefix(f"connection {SIGNING}: "), new_key)
        return
    if conn.password == LOCAL_SIGNING_KEY and not _is_local(d.public_url):
        yield _error(subject, "the key is the local placeholder from airflow_settings.yaml: "
                     "anyone with this repository can forge unsubscribe and survey links",
                     new_key + "; keep the old one in previous_keys with an until")
    for position in signer.expired_keys():
        yield _warning(subject, f"previous_keys #{position} is past its until and accepted no "
                       "more", "remove it from previous_keys")


def _is_local(url: str | None) -> bool:
    return url is None or urlsplit(url).hostname in _LOCAL_HOSTS


def _public_url(d: Deployment) -> Iterator[Finding]:
    subject = "NURTURE_PUBLIC_URL"
    fix = ("set NURTURE_PUBLIC_URL for the workers and the API server to the receiver's "
           "public base URL, e.g. https://airflow.example.com/nurture")
    if not d.public_url:
        yield _error(subject, "not set: emails go out without unsubscribe links, SMS without "
                     "status callbacks, and Twilio signatures cannot be checked", fix)
        return
    parts = urlsplit(d.public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        yield _error(subject, f"{d.public_url!r} is not an absolute http(s) URL", fix)
    elif parts.query or parts.fragment:
        yield _error(subject, "has a query or fragment: links are built by appending paths",
                     fix)
    elif parts.scheme != "https" and parts.hostname not in _LOCAL_HOSTS:
        yield _error(subject, "is plain http: tokens in links and provider callbacks would "
                     "cross the network in clear", "serve the receiver over https")


def _airflow(d: Deployment) -> Iterator[Finding]:
    if d.airflow_error:
        yield _error("Airflow metadata database", f"cannot be read ({d.airflow_error}): pools "
                     "and variables were not checked", "check AIRFLOW_HOME and [database] "
                     "sql_alchemy_conn, then `airflow db migrate`")


def _pool(d: Deployment) -> Iterator[Finding]:
    if d.airflow_error:
        return
    subject = f"pool {DISPATCH_POOL}"
    slots = d.pools.get(DISPATCH_POOL)
    if slots is None:
        yield _error(subject, "missing: send tasks wait for it forever",
                     f"airflow pools set {DISPATCH_POOL} 4 'send tasks across all programs'")
        return
    if slots < 1:
        yield _error(subject, f"has {slots} slots: no send task can run",
                     f"airflow pools set {DISPATCH_POOL} 4 'send tasks across all programs'")
        return
    raw = d.variables.get(CONCURRENCY_VARIABLE)
    try:
        concurrency = int(raw) if raw is not None else DEFAULT_CONCURRENCY
        if concurrency < 1:
            raise ValueError
    except ValueError:
        yield _error(f"variable {CONCURRENCY_VARIABLE}", f"{raw!r} is not a positive integer",
                     f"airflow variables set {CONCURRENCY_VARIABLE} {DEFAULT_CONCURRENCY}")
        return
    limits = dict(DEFAULT_LIMITS)
    raw_limits = d.variables.get(LIMITS_VARIABLE)
    if raw_limits is not None:
        try:
            given = json.loads(raw_limits)
            if not isinstance(given, dict) or not all(
                    k in limits and (v is None or isinstance(v, int) and v > 0)
                    for k, v in given.items()):
                raise ValueError
        except ValueError:
            yield _error(f"variable {LIMITS_VARIABLE}", "must be JSON like "
                         '{"sendgrid": 50, "twilio": 100}: requests in flight each provider '
                         "account allows", f"airflow variables set {LIMITS_VARIABLE} "
                         "'{\"twilio\": 100}'")
            return
        limits.update(given)
    in_flight = slots * concurrency  # every slot may be sending on the same channel
    for provider, limit in limits.items():
        if limit is not None and in_flight > limit:
            yield _error(subject, f"{slots} slots x {concurrency} requests per send task = "
                         f"{in_flight} in flight, over {provider}'s limit of {limit}: "
                         "requests would be refused with 429 and sends pile up as retries",
                         f"lower the pool to {max(1, limit // concurrency)} slots or "
                         f"{CONCURRENCY_VARIABLE} to {max(1, limit // slots)}, or raise the "
                         f"limit in {LIMITS_VARIABLE} if {provider} raised yours")


def _warehouse(d: Deployment) -> Iterator[Finding]:
    subject = "warehouse"
    if d.warehouse_url is None and d.warehouse_error:
        yield _error(subject, "NURTURE_WAREHOUSE_URL is not set and the embedded warehouse "
                     f"cannot be used: {d.warehouse_error}", "set NURTURE_WAREHOUSE_URL=postgresql://user:password@host"
                     ":5432/db (locally: `nurture warehouse start`)")
        return
    if d.warehouse_error:
        yield _error(subject, f"{_masked(d.warehouse_url or '')} cannot be reached: "
                     f"{d.warehouse_error}", "check NURTURE_WAREHOUSE_URL, the network path "
                     "and the user's password")
    elif d.warehouse_url is None and not _is_local(d.public_url):
        yield _warning(subject, "the embedded local warehouse, with a public receiver URL",
                       "set NURTURE_WAREHOUSE_URL to the production PostgreSQL")


def _manifest(d: Deployment) -> Iterator[Finding]:
    subject = "dbt manifest"
    fix = "run `nurture dbt parse` (the DAGs read models from dbt_project/target/manifest.json)"
    if d.manifest_mtime is None:
        yield _error(subject, "missing: no program's DAG can be built", fix)
    elif d.newest_dbt_source and d.newest_dbt_source[1] > d.manifest_mtime:
        path, mtime = d.newest_dbt_source
        age = mtime - d.manifest_mtime
        yield _error(subject, f"older than {path} (changed {age / 60:.0f} min after it was "
                     "written): the DAGs would run yesterday's models", fix)


def _masked(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@", 1) if parts.password else url


# Reading a real deployment ---------------------------------------------------------------


def gather(*, now: datetime | None = None) -> Deployment:
    """The facts of the deployment this process is configured for (Airflow home, env)."""
    pools: dict[str, int | None] = {}
    variables: dict[str, str | None] = {}
    airflow_error = None
    try:
        pools[DISPATCH_POOL] = _pool_slots(DISPATCH_POOL)
        variables = {name: _variable(name) for name in (CONCURRENCY_VARIABLE, LIMITS_VARIABLE)}
    except Exception as err:  # sqlalchemy's OperationalError: no database, not migrated
        airflow_error = str(err).strip().splitlines()[0][:200] if str(err) else repr(err)
    return Deployment(
        connections={conn_id: _connection(conn_id) for conn_id in (SENDGRID, TWILIO, SIGNING)},
        pools=pools,
        variables=variables,
        public_url=settings.public_url(),
        **_warehouse_facts(),
        **_dbt_facts(settings.DBT_PROJECT_DIR),
        airflow_error=airflow_error,
        now=now or datetime.now(UTC),
    )


def _connection(conn_id: str):
    from airflow.models.connection import Connection

    try:
        return Connection.get_connection_from_secrets(conn_id)
    except Exception:  # AirflowNotFoundException, or a secrets backend that failed
        return None


def _pool_slots(name: str) -> int | None:
    from airflow.models.pool import Pool

    pool = Pool.get_pool(name)
    return None if pool is None else pool.slots


def _variable(name: str) -> str | None:
    from airflow.models.variable import Variable

    return Variable.get(name, default_var=None)


def _warehouse_facts() -> dict[str, Any]:
    from nurture.warehouse import EmbeddedWarehouse

    url = settings.warehouse_url()
    if url is None:
        embedded = EmbeddedWarehouse(settings.STATE_DIR / "warehouse")
        if not embedded.is_running():
            return {"warehouse_url": None, "warehouse_error": "not running"}
        return {"warehouse_url": None, "warehouse_error": _reach(embedded.url)}
    return {"warehouse_url": url, "warehouse_error": _reach(url)}


def _reach(url: str) -> str | None:
    import psycopg2

    try:
        conn = psycopg2.connect(url, connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute("select 1")
        finally:
            conn.close()
    except psycopg2.Error as err:
        return _masked(str(err).strip().splitlines()[0] if str(err).strip() else repr(err))
    return None


def _dbt_facts(project: Path) -> dict[str, Any]:
    manifest = project / "target" / "manifest.json"
    sources = [project / name for name in DBT_SOURCES]
    files = [path for source in sources if source.exists()
             for path in ([source] if source.is_file() else source.rglob("*"))
             if path.is_file()]
    newest = max(files, key=lambda path: path.stat().st_mtime, default=None)
    return {
        "manifest_mtime": manifest.stat().st_mtime if manifest.exists() else None,
        "newest_dbt_source": (str(newest.relative_to(project)), newest.stat().st_mtime)
        if newest else None,
    }


def report(findings: list[Finding]) -> str:
    if not findings:
        return "nurture doctor: everything checked is ready"
    errors = sum(f.severity == "error" for f in findings)
    lines = [str(finding) for finding in findings]
    lines.append(f"{errors} error(s), {len(findings) - errors} warning(s)")
    return "\n".join(lines)
