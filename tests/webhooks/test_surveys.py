"""/survey/{token}: the NPS page shows on GET and records on POST, once per survey."""

from __future__ import annotations

import re
import time
import uuid
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from nurture import warehouse
from nurture.tokens import TokenSigner, generate_key
from nurture.webhooks import create_app
from nurture.webhooks.surveys import MAX_COMMENT_CHARS, MAX_FORM_BYTES, survey_url

KEY = generate_key()
SIGNER = TokenSigner([KEY])
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SCORE_MESSAGE = "The score must be a whole number from 0 to 10"


@pytest.fixture
def client(warehouse_url):
    return TestClient(create_app(warehouse_url=warehouse_url, public_url="https://x.example",
                                 sendgrid_public_key=None, twilio_auth_token=None,
                                 token_signer=SIGNER))


@pytest.fixture
def survey_id() -> str:
    """A ledger id of its own per test, so tests never see each other's answers."""
    return str(uuid.uuid4())


def token_for(survey_id: str, *, signer: TokenSigner = SIGNER, purpose: str = "survey") -> str:
    return signer.issue(purpose, f"C-{survey_id[:8]}", "email", survey_id=survey_id,
                        trigger="onboarding_30d")


def answers(survey_id: str) -> list[tuple]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('raw.survey_responses') is not null")
        if not cur.fetchone()[0]:
            return []
        cur.execute("select contact_id, channel, trigger, score, comment, answer_count,"
                    " first_answered_at <= answered_at from raw.survey_responses"
                    " where survey_id = %s", (survey_id,))
        return cur.fetchall()


def checked(page: str) -> list[str]:
    return re.findall(r'value="(\d+)" required checked', page)


def test_the_page_offers_eleven_scores_and_records_nothing(client, survey_id):
    page = client.get(f"/survey/{token_for(survey_id)}")
    assert page.status_code == 200
    assert re.findall(r'type="radio" name="score" value="(\d+)"', page.text) == [
        str(n) for n in range(11)]
    assert checked(page.text) == []
    assert '<form method="post">' in page.text and '<textarea id="comment"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert answers(survey_id) == []  # a mail scanner fetching the link answers nothing


@pytest.mark.parametrize(("query", "selected"), [
    ("?score=9", ["9"]), ("?score=0", ["0"]), ("?score=10", ["10"]),
    ("?score=11", []), ("?score=x", []), ("?score=-1", []), ("?score=7.5", []),
])
def test_a_score_in_the_link_is_preselected_if_valid(client, survey_id, query, selected):
    page = client.get(f"/survey/{token_for(survey_id)}{query}")
    assert page.status_code == 200 and checked(page.text) == selected
    assert answers(survey_id) == []


def test_survey_url_makes_links_the_page_accepts(client, survey_id):
    url = survey_url(SIGNER, "https://x.example/", contact_id="C-1", channel="sms",
                     survey_id=survey_id, trigger="ticket_closed", score=8)
    assert url.startswith("https://x.example/survey/") and url.endswith("?score=8")
    page = client.get(url.removeprefix("https://x.example"))
    assert checked(page.text) == ["8"]
    with pytest.raises(ValueError):
        survey_url(SIGNER, "https://x.example", contact_id="C-1", channel="sms",
                   survey_id=survey_id, trigger="ticket_closed", score=11)


def test_an_answer_is_stored_and_a_second_one_replaces_it(client, survey_id):
    url = f"/survey/{token_for(survey_id)}"
    first = client.post(url, data={"score": "6", "comment": "Slow support"})
    assert first.status_code == 200 and "Thank you" in first.text
    assert answers(survey_id) == [
        (f"C-{survey_id[:8]}", "email", "onboarding_30d", 6, "Slow support", 1, True)]
    second = client.post(url, data={"score": "9", "comment": ""})
    assert second.status_code == 200
    assert answers(survey_id) == [
        (f"C-{survey_id[:8]}", "email", "onboarding_30d", 9, None, 2, True)]


def test_another_link_for_the_same_survey_replaces_the_answer_too(client, survey_id):
    """An email's 0–10 buttons are eleven links (eleven tokens) for one survey."""
    for score in ("3", "4"):
        assert client.post(f"/survey/{token_for(survey_id)}", data={"score": score}).is_success
    assert [(row[3], row[5]) for row in answers(survey_id)] == [(4, 2)]


def refused_tokens() -> list:
    genuine = token_for("forged-0000")
    return [
        pytest.param(genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB"),
                     id="tampered"),
        pytest.param(genuine[:-10], id="truncated"),
        pytest.param("not-a-token", id="garbage"),
        pytest.param(token_for("forged-0000", signer=TokenSigner([generate_key()])),
                     id="other-key"),
        pytest.param(token_for("forged-0000", purpose="unsubscribe"), id="unsubscribe-token"),
        pytest.param(token_for("forged-0000", signer=TokenSigner(
            [KEY], clock=lambda: time.time() - 91 * 86400)), id="expired"),
        pytest.param(SIGNER.issue("survey", "C-forged", "email"), id="no-survey-id"),
    ]


@pytest.mark.parametrize("token", refused_tokens())
def test_a_link_that_is_not_ours_answers_nothing(client, token):
    shown = client.get(f"/survey/{token}")
    posted = client.post(f"/survey/{token}", data={"score": "10"})
    assert shown.status_code == posted.status_code == 404
    assert "not valid" in shown.text and "<form" not in shown.text
    assert shown.text == posted.text  # one neutral answer, whatever check failed
    assert answers("forged-0000") == []


@pytest.mark.parametrize("form", [
    {"score": "-1"}, {"score": "11"}, {"score": "x"}, {"score": "7.5"}, {"score": ""},
    {"score": " 7"}, {"comment": "no score"}, {},
    {"score": ["7", "8"]},
])
def test_a_score_that_is_not_0_to_10_is_refused(client, survey_id, form):
    answer = client.post(f"/survey/{token_for(survey_id)}",  # as a browser sends it
                         content=urlencode(form, doseq=True).encode(), headers=FORM)
    assert answer.status_code == 400 and SCORE_MESSAGE in answer.text
    assert '<form method="post">' in answer.text  # the person can correct it there
    assert answers(survey_id) == []


def test_a_refused_answer_keeps_the_comment_escaped(client, survey_id):
    answer = client.post(f"/survey/{token_for(survey_id)}",
                         data={"score": "ten", "comment": "</textarea><script>x</script>"})
    assert answer.status_code == 400
    assert "<script>" not in answer.text
    assert "&lt;/textarea&gt;&lt;script&gt;x&lt;/script&gt;</textarea>" in answer.text


def test_a_comment_too_long_is_refused(client, survey_id):
    url = f"/survey/{token_for(survey_id)}"
    answer = client.post(url, data={"score": "5", "comment": "a" * (MAX_COMMENT_CHARS + 1)})
    assert answer.status_code == 400 and "at most 2,000 characters" in answer.text
    assert checked(answer.text) == ["5"]
    huge = client.post(url, data={"score": "5", "comment": "a" * (MAX_FORM_BYTES + 1)})
    assert huge.status_code == 413
    assert answers(survey_id) == []
    # Browsers send a textarea's line breaks as CRLF but count them as one character.
    longest = client.post(url, data={"score": "5",
                                     "comment": "a\r\n" * (MAX_COMMENT_CHARS // 2)})
    assert longest.status_code == 200
    assert len(answers(survey_id)[0][4]) == MAX_COMMENT_CHARS - 1  # trailing newline stripped


def test_a_body_that_is_not_the_form_is_refused(client, survey_id):
    answer = client.post(f"/survey/{token_for(survey_id)}", content=b'{"score": 7}',
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answers(survey_id) == []


def test_the_thank_you_page_escapes_the_comment(client, survey_id):
    answer = client.post(f"/survey/{token_for(survey_id)}",
                         data={"score": "10", "comment": '<img src=x onerror="alert(1)">'})
    assert answer.status_code == 200 and "<img" not in answer.text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in answer.text
    assert answers(survey_id)[0][4] == '<img src=x onerror="alert(1)">'  # stored as typed


def test_a_nul_character_in_the_comment_is_dropped(client, survey_id):
    answer = client.post(f"/survey/{token_for(survey_id)}",
                         data={"score": "8", "comment": "a\x00b"})
    assert answer.status_code == 200
    assert answers(survey_id)[0][4] == "ab"


def test_without_a_signing_key_the_page_is_unavailable(warehouse_url, survey_id):
    client = TestClient(create_app(warehouse_url=warehouse_url, public_url="https://x.example",
                                   sendgrid_public_key=None, twilio_auth_token=None))
    token = token_for(survey_id)
    assert client.get(f"/survey/{token}").status_code == 503
    assert client.post(f"/survey/{token}", data={"score": "7"}).status_code == 503
    assert answers(survey_id) == []
