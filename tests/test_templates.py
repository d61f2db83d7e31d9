"""Message templates: rendering, escaping, locale fallback, the sandbox and versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from nurture.templates import TemplateProblem, TemplateSet

REAL_TEMPLATES = Path(__file__).resolve().parents[1] / "include" / "templates"

LAYOUT = """<html lang="{{ locale }}"><title>{% block title %}{% endblock %}</title>
<body>{% block content %}{% endblock %}<footer>{{ sender_name }}</footer></body></html>
"""

FILES = {
    "_layouts/email.html": LAYOUT,
    "demo/hello/en/subject.txt": "Hello {{ first_name }}\n",
    "demo/hello/en/body.txt": "Hi {{ first_name }}, from {{ sender_name }}.\n",
    "demo/hello/en/body.html": (
        '{% extends "_layouts/email.html" %}{% block title %}Hello{% endblock %}'
        "{% block content %}<p>Hi {{ first_name }}</p>{% endblock %}"
    ),
    "demo/hello/fi/subject.txt": "Hei {{ first_name }}\n",
    "demo/hello/fi/body.txt": "Hei {{ first_name }}, terveisin {{ sender_name }}.\n",
    "demo/hello/fi/body.html": (
        '{% extends "_layouts/email.html" %}{% block title %}Hei{% endblock %}'
        "{% block content %}<p>Hei {{ first_name }}</p>{% endblock %}"
    ),
    "demo/reminder/en/sms.txt": "{{ sender_name }}: a reminder for {{ first_name }}\n",
}

CONTEXT = {"first_name": "Anna", "sender_name": "Nurture", "program": "demo", "locale": "en"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name, text in FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.fixture
def templates(root: Path) -> TemplateSet:
    return TemplateSet(root, "demo", "en")


def write(root: Path, name: str, text: str) -> None:
    (root / name).write_text(text)


def test_email_renders_subject_text_and_html(templates):
    rendered = templates.render("hello", "email", "en", CONTEXT)
    assert rendered.subject == "Hello Anna"
    assert rendered.text == "Hi Anna, from Nurture."
    assert rendered.html == (
        '<html lang="en"><title>Hello</title>\n'
        "<body><p>Hi Anna</p><footer>Nurture</footer></body></html>"
    )
    assert rendered.locale == "en"
    assert rendered.version == templates.version("hello", "en")


def test_sms_renders_one_stripped_text_and_no_html(templates):
    rendered = templates.render("reminder", "sms", "en", CONTEXT)
    assert rendered.text == "Nurture: a reminder for Anna"
    assert rendered.html is None
    assert list(rendered.parts) == ["sms.txt"]


def test_html_is_autoescaped_and_text_is_not(templates):
    context = CONTEXT | {"first_name": "<script>alert(1)</script>"}
    rendered = templates.render("hello", "email", "en", context)
    assert "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p>" in rendered.html
    assert "<script>" not in rendered.html
    assert rendered.text == "Hi <script>alert(1)</script>, from Nurture."
    assert rendered.subject == "Hello <script>alert(1)</script>"


def test_undefined_variable_names_the_file(templates):
    context = {k: v for k, v in CONTEXT.items() if k != "sender_name"}
    message = r"^demo/hello/en/body\.txt: 'sender_name' is undefined"
    with pytest.raises(TemplateProblem, match=message):
        templates.render("hello", "email", "en", context)


@pytest.mark.parametrize(
    ("locale", "chosen", "subject"),
    [
        ("fi-FI", "fi", "Hei Anna"),
        ("fi", "fi", "Hei Anna"),
        ("en-GB", "en", "Hello Anna"),
        ("sv-FI", "en", "Hello Anna"),
    ],
)
def test_locale_falls_back_to_language_then_default(templates, locale, chosen, subject):
    rendered = templates.render("hello", "email", locale, CONTEXT)
    assert (rendered.locale, rendered.subject) == (chosen, subject)
    assert rendered.version == templates.version("hello", chosen)


def test_regional_folder_wins_over_its_language(root, templates):
    (root / "demo/reminder/fi-FI").mkdir()
    write(root, "demo/reminder/fi-FI/sms.txt", "Suomesta {{ first_name }}")
    (root / "demo/reminder/fi").mkdir()
    write(root, "demo/reminder/fi/sms.txt", "Hei {{ first_name }}")
    assert templates.render("reminder", "sms", "fi-FI", CONTEXT).text == "Suomesta Anna"
    assert templates.render("reminder", "sms", "fi", CONTEXT).text == "Hei Anna"


def test_missing_default_locale_is_a_template_problem(root):
    templates = TemplateSet(root, "demo", "de")
    with pytest.raises(TemplateProblem, match="no templates for demo/hello in sv-SE or de"):
        templates.render("hello", "email", "sv-SE", CONTEXT)


def test_missing_template_or_part_is_a_template_problem(root, templates):
    with pytest.raises(TemplateProblem, match="no templates for demo/goodbye"):
        templates.render("goodbye", "email", "en", CONTEXT)
    (root / "demo/hello/en/body.html").unlink()
    with pytest.raises(TemplateProblem, match=r"demo/hello/en/body\.html"):
        templates.render("hello", "email", "en", CONTEXT)


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ first_name.__class__.__base__ }}",
        "{{ tags.append('injected') }}",  # the environment is immutable too
    ],
)
def test_sandbox_refuses_python_internals(root, templates, payload):
    write(root, "demo/reminder/en/sms.txt", f"Hi {{{{ first_name }}}} {payload}")
    context = CONTEXT | {"tags": ["a"]}
    with pytest.raises(TemplateProblem, match="unsafe") as caught:
        templates.render("reminder", "sms", "en", context)
    assert isinstance(caught.value.__cause__, SecurityError)
    assert "<class" not in str(caught.value)
    assert context["tags"] == ["a"]


def test_version_is_stable_until_a_source_changes(root, templates):
    before = templates.version("hello", "en")
    assert len(before) == 12
    assert TemplateSet(root, "demo", "en").version("hello", "en") == before
    assert templates.version("hello", "fi") != before

    # other templates and locales are not part of this version
    write(root, "demo/reminder/en/sms.txt", "changed")
    write(root, "demo/hello/fi/subject.txt", "changed")
    assert templates.version("hello", "en") == before

    write(root, "demo/hello/en/subject.txt", "Hello again {{ first_name }}\n")
    after_template = templates.version("hello", "en")
    assert after_template != before

    write(root, "_layouts/email.html", LAYOUT.replace("<footer>", "<footer>Sent by "))
    assert templates.version("hello", "en") not in (before, after_template)


def test_version_changes_when_a_file_is_added(root, templates):
    before = templates.version("hello", "en")
    write(root, "demo/hello/en/preheader.txt", "Start here")
    assert templates.version("hello", "en") != before


ONBOARDING_STEPS = [("welcome", "email"), ("setup_tips", "email"), ("check_in", "sms")]
REAL_CASES = [
    (step, channel, folder.name)
    for step, channel in ONBOARDING_STEPS
    for folder in sorted((REAL_TEMPLATES / "onboarding" / step).iterdir())
    if folder.is_dir()
]


@pytest.mark.parametrize(("step", "channel", "locale"), REAL_CASES)
def test_every_onboarding_template_renders(step, channel, locale):
    templates = TemplateSet(REAL_TEMPLATES, "onboarding", "en")
    context = {"first_name": "Anna", "sender_name": "Nurture", "program": "onboarding",
               "step": step, "locale": locale}
    rendered = templates.render(step, channel, locale, context)
    assert rendered.locale == locale
    assert "Anna" in rendered.text
    assert "{{" not in rendered.text and "{%" not in rendered.text
    if channel == "email":
        assert rendered.subject and "\n" not in rendered.subject
        assert f'<html lang="{locale}">' in rendered.html
        assert "Nurture" in rendered.html and "{{" not in rendered.html
    else:
        assert rendered.html is None
        assert "STOP" in rendered.text


def test_real_cases_cover_every_onboarding_step():
    assert {step for step, _, _ in REAL_CASES} == {"welcome", "setup_tips", "check_in"}


@pytest.mark.parametrize(("step", "channel", "greeting"), [
    ("setup_tips", "email", "Hi there,"),
    ("check_in", "sms", "Hi there,"),
])
def test_onboarding_templates_greet_a_contact_without_a_first_name(step, channel, greeting):
    templates = TemplateSet(REAL_TEMPLATES, "onboarding", "en")
    context = {"sender_name": "Nurture", "program": "onboarding", "step": step, "locale": "en"}
    assert greeting in templates.render(step, channel, "en", context).text


def test_welcome_without_a_first_name_is_refused_rather_than_half_filled():
    # the seed's `missing_first_name` scenario expects exactly this template_error
    templates = TemplateSet(REAL_TEMPLATES, "onboarding", "en")
    context = {"sender_name": "Nurture", "program": "onboarding", "step": "welcome",
               "locale": "en"}
    with pytest.raises(TemplateProblem, match=r"welcome/en/subject\.txt: 'first_name'"):
        templates.render("welcome", "email", "en", context)
