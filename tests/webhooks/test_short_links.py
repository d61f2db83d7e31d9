"""GET /s/{code}: a short link an SMS carried redirects to the long URL stored for it;
anything else is a plain 404 page, and a code that cannot be one never reaches the database."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from nurture import ledger, links
from nurture.warehouse import connect
from nurture.webhooks import create_app

from .conftest import PUBLIC_URL

MALFORMED = [
    "short", "A" * 11, "A" * 13, "abcdefghijk.", "abcdefghijk~", "abcdefghij%20",
    "..%2F..%2Fetc", "%2e%2e%2f%2e%2e%2fpasswd", "..%5C..%5Cwin.ini", "abcdefghijkl%0A",
    "abcdefghijk%00", "abcd%C3%A9fghijkl", "abc'%3Bdrop--",
]


@pytest.fixture(scope="module")
def shortened(raw_tables: str) -> tuple[str, str]:
    """(code, target) stored as the dispatcher stores them."""
    target = f"{PUBLIC_URL}/survey/{uuid.uuid4().hex}?score=7"
    with connect(raw_tables) as conn:
        ledger.ensure_schema(conn)
        short = links.shorten(conn, PUBLIC_URL, {str(uuid.uuid4()): target})
    (url,) = short.values()
    return url.rsplit("/", 1)[1], target


@pytest.fixture(scope="module")
def no_database() -> TestClient:
    """A receiver whose warehouse cannot be reached: any lookup is a server error."""
    app = create_app(warehouse_url="postgresql://nobody@127.0.0.1:9/none?connect_timeout=2",
                     public_url=PUBLIC_URL, sendgrid_public_key=None, twilio_auth_token=None)
    return TestClient(app, raise_server_exceptions=False)


def test_a_stored_code_redirects_to_its_target(client: TestClient, shortened):
    code, target = shortened
    response = client.get(f"/s/{code}", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == target
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_an_unknown_code_is_a_404_page(client: TestClient, shortened):
    code, _ = shortened
    unknown = ("B" if code[0] != "B" else "C") + code[1:]
    response = client.get(f"/s/{unknown}", follow_redirects=False)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "This link is not valid" in response.text
    assert "location" not in response.headers


def test_codes_are_case_sensitive(client: TestClient, shortened):
    code, _ = shortened
    if code.swapcase() == code:
        pytest.skip("this code has no letters")
    assert client.get(f"/s/{code.swapcase()}", follow_redirects=False).status_code == 404


@pytest.mark.parametrize("code", MALFORMED)
def test_a_malformed_code_is_a_404(client: TestClient, code: str):
    response = client.get(f"/s/{code}", follow_redirects=False)
    assert response.status_code == 404
    assert "location" not in response.headers


@pytest.mark.parametrize("code", MALFORMED)
def test_a_malformed_code_never_reaches_the_database(no_database: TestClient, code: str):
    assert no_database.get(f"/s/{code}", follow_redirects=False).status_code == 404


def test_a_well_formed_code_does_reach_the_database(no_database: TestClient):
    """The contrast that makes the test above mean something."""
    assert no_database.get("/s/abcdefghijkl", follow_redirects=False).status_code == 500
