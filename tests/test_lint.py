"""`nurture lint`: the real templates pass, and each check fires on a template that breaks it.

The bad templates live in a tmp folder, for a small `demo` program whose audience contract
comes from a manifest written here in the shape dbt writes it.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from nurture import catalog, cli, settings
from nurture.lint import Rules, lint, read_contracts
from nurture.program import Program, Sender, email, sms

NOW = timedelta(0)
DEMO = Program(
    name="demo",
    audience="demo_audience",
    steps=(
        email("welcome", after=NOW),
        sms("nudge", after=NOW),
        email("confirmation", after=NOW, kind="transactional"),
        email("alert", after=NOW, to="owner_email"),
    ),
    sender=Sender(email="hello@nurture.example", name="Nurture"),
)
ONLY_EN = Rules(locales=("en",))
UTM = "utm_source=nurture&utm_medium=email&utm_campaign=demo"
LINK = f"https://nurture.example/start?{UTM}"
GOOD = {
    "_layouts/email.html": "<html>{% block content %}{% endblock %}</html>\n",
    "demo/welcome/en/subject.txt": "Welcome, {{ first_name }}\n",
    "demo/welcome/en/body.txt": f"Hi {{{{ first_name }}}}\n{LINK}\n"
                                "Unsubscribe: {{ unsubscribe_url }}\n",
    "demo/welcome/en/body.html": (
        '{% extends "_layouts/email.html" %}{% block content %}<p>Hi {{ first_name }}</p>'
        f'<a href="{LINK.replace("&", "&amp;")}">Start</a>'
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a>{% endblock %}'),
    "demo/nudge/en/sms.txt": "{{ sender_name }}: hi {{ first_name }}. Reply STOP to opt out.\n",
    "demo/confirmation/en/subject.txt": "You're in, {{ first_name }}\n",
    "demo/confirmation/en/body.txt": "Your seat is confirmed.\n",
    "demo/confirmation/en/body.html": "<p>Your seat is confirmed.</p>\n",
    "demo/alert/en/subject.txt": "A {{ tier }} lead: {{ first_name }}\n",
    "demo/alert/en/body.txt": "{{ first_name }} ({{ email }}) is yours.\n",
    "demo/alert/en/body.html": "<p>{{ first_name }} ({{ email }}) is yours.</p>\n",
}
COLUMNS = {"contact_id": "text", "enrollment_id": "text", "email": "text", "phone": "text",
           "first_name": "text", "locale": "text", "owner_email": "text", "tier": "text",
           "has_email_consent": "boolean", "enrolled_at": "timestamp with time zone"}


def manifest(path: Path, *, enforced: bool = True, columns: dict | None = None) -> Path:
    model = "model.nurture.demo_audience"
    nodes = {
        model: {"unique_id": model, "resource_type": "model", "name": "demo_audience",
                "config": {"contract": {"enforced": enforced}},
                "columns": {name: {"name": name, "data_type": data_type}
                            for name, data_type in (columns or COLUMNS).items()}},
        "test.nurture.accepted_values_tier": {
            "unique_id": "test.nurture.accepted_values_tier", "resource_type": "test",
            "name": "accepted_values_tier", "attached_node": model, "column_name": "tier",
            "config": {}, "columns": {},
            "test_metadata": {"name": "accepted_values",
                              "kwargs": {"column_name": "tier", "values": ["gold", "silver"]}}},
    }
    path.write_text(json.dumps({"nodes": nodes}))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name, text in GOOD.items():
        write(tmp_path / "templates", name, text)
    return tmp_path / "templates"


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def problems(root: Path, rules: Rules = ONLY_EN, **contract) -> list[str]:
    contracts = read_contracts(manifest(root.parent / "manifest.json", **contract))
    return [str(p) for p in lint([DEMO], root=root, contracts=contracts, rules=rules)]


def test_the_real_templates_have_no_problems(capsys):
    if not settings.DBT_MANIFEST.exists():
        pytest.fail("dbt_project/target/manifest.json is missing: run `make manifest`")
    assert cli.main(["lint"]) == 0
    assert capsys.readouterr().out == ""


def test_every_program_audience_has_an_enforced_contract_with_types():
    contracts = read_contracts(settings.DBT_MANIFEST)
    for program in catalog.programs().values():
        contract = contracts[program.audience]
        assert contract.enforced, program.audience
        assert all(contract.columns.values()), program.audience


def test_good_templates_pass(root):
    assert problems(root) == []


def test_an_undefined_variable_fails(root):
    write(root, "demo/welcome/en/body.txt", "Hi {{ favourite_colour }}\n")
    assert problems(root) == [
        "demo/welcome/en: does not render: demo/welcome/en/body.txt: 'favourite_colour' is "
        "undefined"]


def test_a_template_reaching_for_python_internals_fails(root):
    """Even in a branch no sample contact takes: the sandbox refuses to load it at all."""
    write(root, "demo/nudge/en/sms.txt",
          "Hi {{ first_name }}. Reply STOP to opt out.\n"
          "{% if false %}{{ cycler.__init__.__globals__.os.environ }}{% endif %}\n")
    assert problems(root) == [
        "demo/nudge/en: does not render: demo/nudge/en/sms.txt: unsafe template: it reaches "
        "for attribute '__globals__' (line 2), attribute '__init__' (line 2)"]


def test_a_layout_reaching_for_python_internals_fails_every_email(root):
    write(root, "_layouts/email.html",
          "<html>{% block content %}{% endblock %}{{ ''.__class__ }}</html>\n")
    found = problems(root)
    assert {p.split(":")[0] for p in found} == {"demo/welcome/en"}
    assert "unsafe template: it reaches for attribute '__class__' (line 1)" in found[0]


def test_every_accepted_value_of_an_enum_column_is_rendered(root):
    write(root, "demo/alert/en/subject.txt", '{{ {"gold": "Hot"}[tier] }} lead\n')
    assert problems(root) == [
        "demo/alert/en: does not render with tier='silver': demo/alert/en/subject.txt: "
        "'dict object' has no attribute 'silver'"]


def test_a_column_outside_the_contract_is_undefined(root):
    columns = {k: v for k, v in COLUMNS.items() if k != "first_name"}
    assert "demo/nudge/en: does not render: demo/nudge/en/sms.txt: 'first_name' is undefined" \
        in problems(root, columns=columns)


def test_subject_length(root):
    write(root, "demo/confirmation/en/subject.txt", "x" * 78 + "\n")
    assert problems(root) == []
    write(root, "demo/confirmation/en/subject.txt", "x" * 79 + "\n")
    assert problems(root) == [
        f"demo/confirmation/en: subject is 79 characters (limit 78): '{'x' * 79}'"]
    write(root, "demo/confirmation/en/subject.txt", "{{ '' }}\n")
    assert problems(root) == ["demo/confirmation/en: subject is empty"]


def test_sms_segments_gsm7_and_ucs2(root):
    padding = "a" * (160 - len("Nurture: hi First Name. Reply STOP to opt out."))
    write(root, "demo/nudge/en/sms.txt",
          f"{{{{ sender_name }}}}: hi {{{{ first_name }}}}. Reply STOP to opt out.{padding}")
    assert problems(root, Rules(locales=("en",), sms_segments=1)) == []  # 160: one segment
    write(root, "demo/nudge/en/sms.txt",
          f"{{{{ sender_name }}}}: hi {{{{ first_name }}}}. Reply STOP to opt out.{padding}€")
    assert problems(root, Rules(locales=("en",), sms_segments=1)) == [
        "demo/nudge/en: SMS is 2 segments of GSM-7 (162 units; limit 1)"]
    write(root, "demo/nudge/en/sms.txt", "Hi {{ first_name }} 😀 " + "a" * 130 + " STOP")
    assert problems(root) == [
        "demo/nudge/en: SMS is 3 segments of UCS-2 (152 units, because of '😀'; limit 2)"]


@pytest.mark.parametrize(("link", "message"), [
    ("http://nurture.example/start?" + UTM, "link is not https: http://nurture.example/start?"),
    ("/start?" + UTM, "link is not absolute: /start?"),
    ("https://nurture.example/start?utm_source=nurture",
     "link without utm_medium, utm_campaign: https://nurture.example/start?utm_source=nurture"),
])
def test_links_in_html(root, link, message):
    html = GOOD["demo/welcome/en/body.html"].replace(LINK.replace("&", "&amp;"),
                                                     link.replace("&", "&amp;"))
    write(root, "demo/welcome/en/body.html", html)
    found = problems(root)
    assert len(found) == 1 and found[0].startswith(f"demo/welcome/en: {message}")


def test_links_in_text_and_sms(root):
    write(root, "demo/confirmation/en/body.txt", "Join: http://live.example/w1.\n")
    write(root, "demo/nudge/en/sms.txt", "Help: https://nurture.example/help STOP\n")
    assert problems(root) == [
        "demo/nudge/en: link without utm_source, utm_medium, utm_campaign: "
        "https://nurture.example/help",
        "demo/confirmation/en: link is not https: http://live.example/w1",
    ]


def test_mail_and_phone_links_need_no_campaign(root):
    write(root, "demo/confirmation/en/body.html",
          '<a href="mailto:help@nurture.example">Mail</a> <a href="tel:+358401234567">Call</a>')
    assert problems(root) == []


def test_a_marketing_email_needs_an_unsubscribe_link_in_both_parts(root):
    write(root, "demo/welcome/en/body.txt", f"Hi {{{{ first_name }}}}\n{LINK}\n")
    write(root, "demo/welcome/en/body.html",
          GOOD["demo/welcome/en/body.html"].replace('<a href="{{ unsubscribe_url }}">'
                                                    "Unsubscribe</a>", ""))
    assert problems(root) == [
        "demo/welcome/en: marketing email without an unsubscribe link in its HTML",
        "demo/welcome/en: marketing email without an unsubscribe link in its text",
    ]


def test_transactional_and_internal_emails_need_no_unsubscribe_link(root):
    # GOOD's confirmation (transactional) and alert (to the owner) carry none
    assert "unsubscribe" not in GOOD["demo/confirmation/en/body.html"]
    assert "unsubscribe" not in GOOD["demo/alert/en/body.txt"]
    assert problems(root) == []


def test_a_marketing_sms_says_how_to_opt_out(root):
    write(root, "demo/nudge/en/sms.txt", "{{ sender_name }}: hi {{ first_name }}.\n")
    assert problems(root) == ["demo/nudge/en: marketing SMS without how to opt out (STOP)"]


def test_required_locales_and_locale_folder_names(root):
    for name in ("subject.txt", "body.txt", "body.html"):
        write(root, f"demo/welcome/fi_FI/{name}", GOOD[f"demo/welcome/en/{name}"])
    found = problems(root, Rules(locales=("en", "sv")))
    assert "demo/welcome/sv: no welcome/sv/ templates: contacts in sv would get en" in found
    assert "demo/nudge/sv: no nudge/sv/ templates: contacts in sv would get en" in found
    assert ("demo/welcome/fi_FI: folder name is not a locale the planner gives (ll or ll-CC)"
            in found)
    assert len(found) == 5  # sv for each of the four steps, and fi_FI


def test_the_audience_contract_must_be_enforced_and_typed(root):
    assert problems(root, enforced=False) == [
        "demo/*/*: audience model demo_audience has no enforced dbt contract"]
    assert problems(root, columns={**COLUMNS, "tier": None}) == [
        "demo/*/*: audience column tier has no data_type in its contract"]


def test_an_audience_missing_from_the_manifest(root, tmp_path):
    other = Program(name="other", audience="other_audience", steps=DEMO.steps,
                    sender=DEMO.sender)
    contracts = read_contracts(manifest(tmp_path / "manifest.json"))
    assert [str(p) for p in lint([other], root=root, contracts=contracts)] == [
        "other/*/*: audience model other_audience is not in dbt's manifest"]


def test_the_command_prints_each_problem_and_fails(tmp_path, capsys):
    root = tmp_path / "templates"
    shutil.copytree(settings.TEMPLATES_DIR, root)
    (root / "onboarding/check_in/sv/sms.txt").write_text("Hej {{ förnamn }}! STOP\n")
    (root / "webinar/reminder/fi/subject.txt").write_text("Huomenna: " + "x" * 70 + "\n")
    assert cli.main(["lint", "--root", str(root)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "onboarding/check_in/sv: does not render: onboarding/check_in/sv/sms.txt: 'förnamn' is "
        "undefined",
        "webinar/reminder/fi: subject is 80 characters (limit 78): 'Huomenna: " + "x" * 70 + "'",
    ]
    assert "2 problem(s) in the templates of 4 program(s)" in err
    assert cli.main(["lint", "--root", str(root), "--max-subject-chars", "80"]) == 1
    assert len(capsys.readouterr().out.splitlines()) == 1
