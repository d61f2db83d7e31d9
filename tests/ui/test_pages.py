"""Nurture's pages, mounted as the Airflow API server mounts them (at /nurture/ui), against
the real warehouse. Access is decided by a stand-in for Airflow's auth manager here; the
real one (login, session cookie) is exercised in tests/e2e/test_airflow_ui.py."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from nurture import ledger, warehouse
from nurture.ui import create_ui_app
from nurture.ui.access import NotSignedIn

RUN_ID = "manual__2026-11-28T10:00:00+00:00"
SUMMARY = {
    "program": "onboarding", "dry_run": False,
    "guard": {"success": True, "row_count": 272, "failures": []},
    "steps": [{"step": "welcome", "channel": "email", "planned": 86, "sent": 85,
               "not_sent": {"already_sent": 5, "held_out": 4, "no_consent": 15,
                            "template_error": 1},
               "waiting": {}},
              {"step": "check_in", "channel": "sms", "planned": 0, "sent": 0,
               "not_sent": {}, "waiting": {"not_due": 175, "run_limit_reached": 3}}],
    "sent": 85, "planned": 86, "holdout": {"share": 0.05, "held_out": 4},
    "options": {"steps": [], "send_limit": 86, "filters": {}},
    "tests": [],
}


class StandInAccess:
    """Signed in unless the request says otherwise; may read `readable` programs."""

    def __init__(self, readable=("onboarding", "webinar", "satisfaction_survey", "nurture")):
        self._readable = set(readable)

    async def user(self, request: Request):
        if request.headers.get("x-test-user") is None:
            raise NotSignedIn("no session")
        return request.headers["x-test-user"]

    def readable(self, user, programs):
        return self._readable & set(programs)

    def login_url(self, next_url: str) -> str:
        return f"/auth/login?next={next_url}"


def client_for(access=None, user: str | None = "marketer") -> TestClient:
    server = FastAPI()  # the API server, with the pages mounted where the plugin puts them
    server.mount("/nurture/ui", create_ui_app(access or StandInAccess()))
    return TestClient(server, headers={"x-test-user": user} if user else {},
                      follow_redirects=False)


@pytest.fixture
def summaries(warehouse_url):
    with warehouse.connect() as conn, conn.cursor() as cur:
        ledger.ensure_schema(conn)
        cur.execute("delete from nurture.run_summaries where program = 'onboarding'")
        for run_id, summary in ((RUN_ID, SUMMARY),
                                ("manual__<script>alert(1)</script>",
                                 {**SUMMARY, "dry_run": True, "sent": 0})):
            cur.execute("insert into nurture.run_summaries (program, dag_run_id, summary)"
                        " values ('onboarding', %s, %s)", (run_id, json.dumps(summary)))
    yield
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("delete from nurture.run_summaries where program = 'onboarding'")


def test_the_programs_page_lists_each_program_with_its_last_runs(summaries):
    page = client_for().get("/nurture/ui/")
    assert page.status_code == 200
    for program in ("onboarding", "webinar", "satisfaction_survey", "nurture"):
        assert f'<section id="{program}">' in page.text
    assert "welcome (email), setup_tips (email), check_in (sms)" in page.text
    assert 'href="/nurture/ui/runs/onboarding/manual__2026-11-28T10%3A00%3A00%2B00%3A00"' \
        in page.text
    assert "<td>sent</td>" in page.text and "<td>dry run</td>" in page.text
    assert '<td class="n">20</td>' in page.text  # not sent this run; earlier runs' left out
    # Anything from the warehouse is escaped, run ids included.
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_a_runs_page_says_per_step_what_was_sent_and_why_not(summaries):
    page = client_for().get(f"/nurture/ui/runs/onboarding/{RUN_ID}")
    assert page.status_code == 200
    assert "<strong>85</strong> message(s) sent" in page.text
    assert "passed</span>\non 272 audience rows" in page.text
    assert "5% of the audience gets no marketing\nmessage; 4 message(s) held out" in page.text
    assert "<td>held_out: 4, no_consent: 15, template_error: 1</td>" in page.text
    assert "<td>not_due: 175, run_limit_reached: 3</td>" in page.text
    assert '<td class="muted">sent: 5</td>' in page.text  # decided by an earlier run
    assert "send limit: 86" in page.text


def test_a_run_without_a_summary_yet_says_so(summaries):
    page = client_for().get("/nurture/ui/runs/onboarding/scheduled__2026-11-28T11:00:00")
    assert page.status_code == 200 and "No summary for this run yet" in page.text


def test_without_an_airflow_session_the_pages_send_you_to_the_login():
    answer = client_for(user=None).get("/nurture/ui/runs/onboarding/x?y=1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/auth/login?next=/nurture/ui/runs/onboarding/x?y=1"


def test_programs_the_user_may_not_read_are_neither_listed_nor_shown(summaries):
    client = client_for(StandInAccess(readable={"webinar"}))
    page = client.get("/nurture/ui/")
    assert '<section id="webinar">' in page.text and "onboarding" not in page.text
    assert client.get(f"/nurture/ui/runs/onboarding/{RUN_ID}").status_code == 404
    assert "onboarding" not in client.get("/nurture/ui/preview").text


@dataclass(frozen=True)
class FakePreview:
    program: str
    step: str
    channel: str
    locale: str
    subject: str | None
    html: str | None
    text: str
    encoding: str | None
    segments: int | None


def test_a_preview_shows_the_rendered_message_escaped_and_sandboxed(warehouse_url,
                                                                     monkeypatch):
    calls = []

    def render_preview(conn, program, step_name, contact_id, locale=None):
        calls.append((program.name, step_name, contact_id, locale))
        return FakePreview(program.name, step_name, "email", "fi", "Tervetuloa <Anna>",
                           '<p onclick="x()">Hei "Anna"</p>', "Hei Anna", None, None)

    monkeypatch.setitem(sys.modules, "nurture.preview",
                        types.SimpleNamespace(render_preview=render_preview))
    page = client_for().get("/nurture/ui/preview", params={
        "program": "onboarding", "step": "welcome", "contact_id": " C001 ", "locale": ""})
    assert calls == [("onboarding", "welcome", "C001", None)]
    assert "Subject: <strong>Tervetuloa &lt;Anna&gt;</strong>" in page.text
    assert ('<iframe class="email" sandbox="" title="HTML part" srcdoc="&lt;p onclick='
            '&#34;x()&#34;&gt;Hei &#34;Anna&#34;&lt;/p&gt;"></iframe>') in page.text
    assert "<pre>Hei Anna</pre>" in page.text


def test_a_preview_that_cannot_be_rendered_says_why(warehouse_url, monkeypatch):
    from nurture.exceptions import NurtureError

    def render_preview(conn, program, step_name, contact_id, locale=None):
        raise NurtureError(f"contact {contact_id!r} is not in onboarding's audience")

    monkeypatch.setitem(sys.modules, "nurture.preview",
                        types.SimpleNamespace(render_preview=render_preview))
    page = client_for().get("/nurture/ui/preview", params={
        "program": "onboarding", "step": "welcome", "contact_id": "<b>X</b>"})
    assert ('<p class="problem">contact &#39;&lt;b&gt;X&lt;/b&gt;&#39; is not in '
            "onboarding&#39;s audience</p>") in page.text


def test_the_plugin_puts_the_pages_in_the_navigation_and_on_every_dag_run():
    from nurture_plugin import UI_PREFIX, NurturePlugin

    views = {view["destination"]: view for view in NurturePlugin.external_views}
    assert views["nav"]["href"] == "nurture/ui/"  # relative: a proxy's prefix still works
    assert views["dag_run"]["href"] == "nurture/ui/runs/{DAG_ID}/{RUN_ID}"
    assert all(view["url_route"] for view in views.values())
    assert f"/{views['nav']['href']}".startswith(UI_PREFIX)
