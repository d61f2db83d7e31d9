"""/unsubscribe/{token}: one click for mail clients, a confirmation page for people."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from nurture import warehouse
from nurture.tokens import TokenSigner, generate_key
from nurture.webhooks import create_app

SIGNER = TokenSigner([generate_key()])


@pytest.fixture
def client(warehouse_url):
    return TestClient(create_app(warehouse_url=warehouse_url, public_url="https://x.example",
                                 sendgrid_public_key=None, twilio_auth_token=None,
                                 token_signer=SIGNER))


def requests_for(contact_id: str) -> list[tuple[str, str]]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('raw.unsubscribe_requests') is not null")
        if not cur.fetchone()[0]:
            return []
        cur.execute("select channel, source from raw.unsubscribe_requests"
                    " where contact_id = %s", (contact_id,))
        return cur.fetchall()


def test_the_page_asks_before_unsubscribing(client):
    token = SIGNER.issue("unsubscribe", "U-page", "email")
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert requests_for("U-page") == []  # a mail scanner fetching the link changes nothing
    done = client.post(f"/unsubscribe/{token}", data={"source": "page"})
    assert done.status_code == 200 and "unsubscribed" in done.text
    assert requests_for("U-page") == [("email", "page")]


def test_one_click_post_is_recorded_once(client):
    token = SIGNER.issue("unsubscribe", "U-click", "email")
    for _ in range(2):
        answer = client.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200
    assert requests_for("U-click") == [("email", "one_click")]


@pytest.mark.parametrize("token", [
    SIGNER.issue("unsubscribe", "U-forged", "email")[:-2] + "AA",  # tampered
    TokenSigner([generate_key()]).issue("unsubscribe", "U-forged", "email"),  # other key
    SIGNER.issue("survey", "U-forged", "email"),  # a token for something else
])
def test_a_token_that_is_not_ours_changes_nothing(client, token):
    assert client.get(f"/unsubscribe/{token}").status_code == 404
    assert client.post(f"/unsubscribe/{token}").status_code == 404
    assert requests_for("U-forged") == []


def test_without_a_signing_key_the_pages_are_unavailable(warehouse_url):
    client = TestClient(create_app(warehouse_url=warehouse_url, public_url="https://x.example",
                                   sendgrid_public_key=None, twilio_auth_token=None))
    token = SIGNER.issue("unsubscribe", "U-none", "email")
    assert client.post(f"/unsubscribe/{token}").status_code == 503
