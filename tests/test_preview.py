"""Previews on the embedded warehouse: the real programs and templates, each reading a small
audience table of its own (`marts.preview_test_*`, dropped at the end) in place of the dbt
model, so the demo's marts are left alone."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import UTC, datetime

import pytest

from nurture import catalog, cli, warehouse
from nurture.exceptions import NurtureError
from nurture.preview import render_preview

PUBLIC_URL = "https://hooks.nurture.example"
SUFFIX = uuid.uuid4().hex[:8]
ENROLLED = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)

ONBOARDING_COLUMNS = ("contact_id text, enrollment_id text, enrolled_at timestamptz, email text,"
                      " phone text, first_name text, locale text, has_email_consent boolean,"
                      " has_sms_consent boolean, is_activated boolean")
ONBOARDING_ROWS = [  # contact_id, locale, first_name
    ("P-FI", "fi-FI", "Aino"),
    ("P-SV", "sv", "Åsa"),
    ("P-DE", "de", "Jonas"),
    ("P-ZOE", "en", "Zoë"),
    ("P-NONAME", "en", None),
    ("P-XX", "xx-QQ", "Xena"),
]
SURVEY_COLUMNS = ("contact_id text, enrollment_id text, trigger text, triggered_at timestamptz,"
                  " detractor_at timestamptz, score integer, comment text, email text,"
                  " phone text, first_name text, last_name text, locale text,"
                  " owner_email text, owner_name text, prefers_sms boolean")
WEBINAR_COLUMNS = ("contact_id text, enrollment_id text, webinar_id text, webinar_title text,"
                   " starts_at timestamptz, local_start_time timestamp, local_time_zone text,"
                   " starts_at_local text, join_url text, email text, first_name text,"
                   " locale text, is_seated boolean")


def audience(name: str, columns: str, rows: list[tuple]) -> str:
    table = f"preview_test_{name}_{SUFFIX}"
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("create schema if not exists marts")
        cur.execute(f"create table marts.{table} ({columns})")
        marks = ", ".join(["%s"] * len(rows[0]))
        cur.executemany(f"insert into marts.{table} values ({marks})", rows)
    return table


@pytest.fixture(scope="module")
def programs(warehouse_url):
    """The real programs, each pointed at a table made here."""
    onboarding = audience("onboarding", ONBOARDING_COLUMNS, [
        (contact, f"onboarding:{contact}", ENROLLED, f"{contact.lower()}@example.com",
         "+358401234567", name, locale, True, True, False)
        for contact, locale, name in ONBOARDING_ROWS])
    survey = audience("survey", SURVEY_COLUMNS, [
        ("S-1", "survey:1", "onboarding_30d", ENROLLED, None, None, None, "s1@example.com",
         "+358401234567", "Aino", "Virtanen", "fi", "owner@nurture.example", "Olli", True),
        ("S-1", "survey:2", "ticket_closed", ENROLLED, datetime(2025, 3, 12, tzinfo=UTC), 4,
         "Slow support", "s1@example.com", "+358401234567", "Aino", "Virtanen", "fi",
         "owner@nurture.example", "Olli", True),
    ])
    webinar = audience("webinar", WEBINAR_COLUMNS, [
        ("W-FI", "webinar:W001", "W001", "Lifecycle programs 101",
         datetime(2025, 3, 18, 7, 30, tzinfo=UTC), datetime(2025, 3, 18, 9, 30),
         "Europe/Helsinki", "Tuesday 18 Mar 2025, 09:30 (Europe/Helsinki)",
         "https://live.nurture.example/w001", "w-fi@example.com", "Eero", "fi", True),
    ])
    known = catalog.programs()
    yield {
        "onboarding": dataclasses.replace(known["onboarding"], audience=onboarding),
        "satisfaction_survey": dataclasses.replace(known["satisfaction_survey"],
                                                   audience=survey),
        "webinar": dataclasses.replace(known["webinar"], audience=webinar),
    }
    with warehouse.connect() as conn, conn.cursor() as cur:
        for table in (onboarding, survey, webinar):
            cur.execute(f"drop table marts.{table}")


@pytest.fixture
def public_url(monkeypatch):
    monkeypatch.setenv("NURTURE_PUBLIC_URL", PUBLIC_URL)


def preview(programs, program: str, step: str, contact: str, locale: str | None = None):
    with warehouse.connect() as conn:
        return render_preview(conn, programs[program], step, contact, locale)


def test_an_email_in_the_contacts_language(programs, public_url):
    shown = preview(programs, "onboarding", "welcome", "P-FI")
    assert (shown.program, shown.step, shown.channel) == ("onboarding", "welcome", "email")
    assert (shown.locale, shown.recipient) == ("fi", "p-fi@example.com")
    assert shown.subject == "Tervetuloa, Aino!"
    assert shown.text.startswith("Hei Aino,\n\nKiitos rekisteröitymisestä.")
    assert '<html lang="fi-FI">' in shown.html and "<p>Hei Aino,</p>" in shown.html
    assert (shown.encoding, shown.segments) == (None, None)
    # the unsubscribe link has the dispatcher's shape, in the contact's language
    link = re.search(rf'<a href="({PUBLIC_URL}/unsubscribe/[\w-]+)">Peru tilaus</a>', shown.html)
    assert link and f"Peru tilaus: {link.group(1)}" in shown.text


def test_without_a_public_url_no_unsubscribe_link_as_the_dispatcher(programs):
    shown = preview(programs, "onboarding", "welcome", "P-FI")
    assert "unsubscribe" not in shown.html and "Peru tilaus" not in shown.text


def test_an_sms_with_its_character_set_and_segments(programs):
    shown = preview(programs, "onboarding", "check_in", "P-SV")
    assert (shown.channel, shown.locale, shown.recipient) == ("sms", "sv", "+358401234567")
    assert shown.text.startswith("Nurture: Hej Åsa, har du kört fast med uppstarten?")
    assert shown.text.endswith("Svara STOP för att inte få fler sms.")
    assert (shown.subject, shown.html) == (None, None)
    assert (shown.encoding, shown.segments) == ("GSM-7", 2)  # å, ä and ö are GSM-7


def test_one_letter_outside_gsm7_makes_it_ucs2(programs):
    shown = preview(programs, "onboarding", "check_in", "P-ZOE")
    assert "Hi Zoë, stuck on setup?" in shown.text
    assert shown.encoding == "UCS-2"
    assert shown.segments == -(-len(shown.text) // 67)  # one UTF-16 unit each, 67 a segment


@pytest.mark.parametrize(("contact", "locale", "used", "greeting"), [
    ("P-FI", "sv", "sv", "Hej Aino,"),  # --locale wins over the contact's
    ("P-FI", "sv-FI", "sv", "Hej Aino,"),  # region, then language
    ("P-DE", None, "en", "Hi Jonas,"),  # no German templates: the program's default
    ("P-NONAME", "fi", "fi", "Hei,"),
])
def test_locale_fallback(programs, contact, locale, used, greeting):
    shown = preview(programs, "onboarding", "setup_tips", contact, locale)
    assert shown.locale == used
    assert shown.text.startswith(greeting + "\n")


def test_a_webinar_time_is_worded_for_finnish_readers(programs, public_url):
    shown = preview(programs, "webinar", "confirmation", "W-FI")
    assert shown.subject == "Paikkasi on vahvistettu: Lifecycle programs 101"
    assert ("Olet ilmoittautunut webinaariin ”Lifecycle programs 101”, joka pidetään "
            "tiistaina 18.3. klo 9.30 (Europe/Helsinki)." in shown.text)
    assert ("https://live.nurture.example/w001?utm_source=nurture&amp;utm_medium=email"
            in shown.html)


def test_a_survey_sms_gets_a_short_link_that_stores_nothing(programs, public_url):
    shown = preview(programs, "satisfaction_survey", "survey_sms", "S-1")
    assert f"{PUBLIC_URL}/s/preview-link" in shown.text
    assert (shown.locale, shown.encoding, shown.segments) == ("fi", "GSM-7", 1)
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('nurture.short_links') is not null")
        if cur.fetchone()[0]:
            cur.execute("select count(*) from nurture.short_links where code = 'preview-link'")
            assert cur.fetchone()[0] == 0


def test_an_internal_alert_goes_to_the_owner_in_the_programs_language(programs):
    # of the contact's two rows, the one whose anchor (detractor_at) is set
    shown = preview(programs, "satisfaction_survey", "detractor_alert", "S-1")
    assert (shown.locale, shown.recipient) == ("en", "owner@nurture.example")
    assert shown.subject == "Detractor: Aino Virtanen scored 4/10"
    assert "Comment: Slow support" in shown.text
    finnish = preview(programs, "satisfaction_survey", "detractor_alert", "S-1", "fi")
    assert finnish.subject == "Arvostelija: Aino Virtanen antoi 4/10"
    assert "(tukipyyntö suljettu) arvosanalla 4/10" in finnish.text


@pytest.mark.parametrize(("program", "step", "contact", "message"), [
    ("onboarding", "goodbye", "P-FI",
     "program onboarding has no step 'goodbye'; its steps: welcome, setup_tips, check_in"),
    ("onboarding", "welcome", "P-NOBODY", "contact 'P-NOBODY' is not in onboarding's audience"),
    ("onboarding", "welcome", "P-XX", "contact P-XX's locale 'xx-QQ' is not a known locale"),
    ("onboarding", "welcome", "P-NONAME", "onboarding/welcome for P-NONAME: the dispatcher "
     "would record a template error: onboarding/welcome/en/subject.txt: 'first_name' is "
     "undefined"),
])
def test_what_cannot_be_previewed_says_why(programs, program, step, contact, message):
    with pytest.raises(NurtureError) as caught:
        preview(programs, program, step, contact)
    assert message in str(caught.value)


def test_an_audience_not_built_yet(programs):
    missing = dataclasses.replace(programs["onboarding"], audience=f"preview_missing_{SUFFIX}")
    with warehouse.connect() as conn, pytest.raises(NurtureError, match=(
            f"marts.preview_missing_{SUFFIX} does not exist: build it with `nurture dbt build")):
        render_preview(conn, missing, "welcome", "P-FI")


def test_the_command(programs, monkeypatch, capsys):
    monkeypatch.setattr(catalog, "program", programs.__getitem__)
    assert cli.main(["preview", "onboarding", "check_in", "--contact", "P-SV"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[:3] == [
        "onboarding/check_in for P-SV: sms to +358401234567, templates sv",
        f"GSM-7, 2 segment(s), {len(preview(programs, 'onboarding', 'check_in', 'P-SV').text)}"
        " characters", ""]
    assert "NURTURE_PUBLIC_URL is not set" in err

    assert cli.main(["preview", "onboarding", "welcome", "--contact", "P-FI"]) == 0
    out = capsys.readouterr().out
    assert "Subject: Tervetuloa, Aino!\n\n--- text ---\nHei Aino," in out
    assert "--- html ---\n<!doctype html>" in out

    assert cli.main(["preview", "onboarding", "welcome", "--contact", "P-NOBODY"]) == 1
    assert "nurture: contact 'P-NOBODY' is not in onboarding's audience" in \
        capsys.readouterr().err
