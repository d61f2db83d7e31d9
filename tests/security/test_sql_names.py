"""Names that reach SQL (program, audience model, steps, columns) are checked when the
program is defined: an injection or a keyword fails at DAG parse time, before any SQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nurture import catalog
from nurture.exceptions import ProgramDefinitionError
from nurture.program import SQL_KEYWORDS, Program, Sender, email

ATTACKS = [
    "x; drop table raw.crm_contacts",
    "onboarding_audience where true --",
    'a"b',
    "a'b",
    "a.b",
    "contact_id\n",
    "é",
    "A",
    "",
    "a" * 64,
    None,
    42,
]
KEYWORDS = ["user", "select", "order", "current_user", "left", "true"]


def program(**overrides) -> Program:
    step = overrides.pop("step", {})
    options = dict(name="demo", audience="demo_audience", goal="is_activated",
                   steps=(email("welcome", after=timedelta(0), **step),),
                   sender=Sender(email="hello@nurture.example", name="Nurture"))
    options.update(overrides)
    return Program(**options)


NAME_FIELDS = {
    "program": lambda value: program(name=value),
    "audience model": lambda value: program(audience=value),
    "goal column": lambda value: program(goal=value),
    "filter column": lambda value: program(filters=(value,)),
    "step": lambda value: program(steps=(email(value, after=timedelta(0)),)),
    "template": lambda value: program(step={"template": value} if value else
                                      {"template": "x y"}),
    "anchor column": lambda value: program(step={"anchor": value}),
    "condition column": lambda value: program(step={"condition": value}),
    "`to` column": lambda value: program(step={"to": value}),
}

OPTIONAL = {"goal column", "condition column", "`to` column"}


@pytest.mark.parametrize(("field", "value"), [
    (field, value) for field in NAME_FIELDS for value in ATTACKS
    if not (value is None and field in OPTIONAL)])  # None: no goal, condition or `to`
def test_a_name_that_is_not_a_plain_identifier_is_refused(field, value):
    with pytest.raises(ProgramDefinitionError, match="lower-case letters, digits"):
        NAME_FIELDS[field](value)


@pytest.mark.parametrize("field", NAME_FIELDS)
@pytest.mark.parametrize("value", KEYWORDS)
def test_an_sql_keyword_is_refused_as_a_name(field, value):
    """Unquoted, `user` is the session's user and `order` a syntax error, not a column."""
    with pytest.raises(ProgramDefinitionError, match=f"{field} '{value}' is an SQL keyword"):
        NAME_FIELDS[field](value)


def test_names_that_merely_contain_a_keyword_are_fine():
    made = program(name="user_onboarding", audience="select_audience", goal="is_user",
                   filters=("order_id",), step={"anchor": "created_at"})
    assert made.name == "user_onboarding"


def test_the_keyword_list_is_postgres_reserved_words(warehouse_url):
    """The list in program.py is what this PostgreSQL reserves (or keeps for types and
    functions), so a newer server's keywords show up here."""
    from nurture.warehouse import connect

    with connect(warehouse_url) as conn, conn.cursor() as cur:
        cur.execute("select word from pg_get_keywords() where catcode in ('R', 'T')")
        assert {word for (word,) in cur} == SQL_KEYWORDS


def test_every_defined_program_passes():
    """The checks refuse nothing the project's own programs use."""
    assert set(catalog.programs()) >= {"onboarding", "webinar", "satisfaction_survey"}
