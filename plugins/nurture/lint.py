"""`nurture lint`: every template of every program checked before a contact sees it.

Each step is rendered in each locale folder through the dispatcher's own code (see
`nurture.preview.render_step`) for a sample contact built from its audience model's dbt
contract: every contracted column set to a value of its type, once per accepted value of an
enum column. A variable the audience does not provide is undefined, so it fails here rather
than on the day it is sent. The rendered message is then held to `Rules`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nurture import addresses, sms_encoding
from nurture.dispatcher import Dispatch
from nurture.preview import render_step, rendering_job
from nurture.program import Program, Step
from nurture.templates import Rendered, TemplateProblem

SAMPLE_PUBLIC_URL = "https://hooks.nurture.example"  # the receiver's links: no utm_ needed
SAMPLE_TIME = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Rules:
    """What a rendered message must satisfy."""

    # RFC 5322 keeps header lines to 78 characters; phones show far fewer, so aim lower.
    subject_chars: int = 78
    sms_segments: int = 2  # each segment is billed as one SMS
    locales: tuple[str, ...] = ("en", "fi", "sv")  # every step needs these folders
    campaign_params: tuple[str, ...] = ("utm_source", "utm_medium", "utm_campaign")


@dataclass(frozen=True)
class Problem:
    program: str
    step: str
    locale: str
    message: str

    def __str__(self) -> str:
        return f"{self.program}/{self.step}/{self.locale}: {self.message}"


@dataclass(frozen=True)
class Contract:
    """An audience model's contracted columns, as dbt's manifest has them."""

    enforced: bool
    columns: dict[str, str | None]  # name -> data_type
    accepted_values: dict[str, list[Any]] = field(default_factory=dict)


def read_contracts(manifest: Path) -> dict[str, Contract]:
    """Every model's contract in dbt's manifest (`dbt parse` writes it), by model name."""
    nodes = json.loads(manifest.read_text())["nodes"].values()
    contracts = {
        node["name"]: Contract(
            enforced=bool(node["config"].get("contract", {}).get("enforced")),
            columns={name: col.get("data_type") for name, col in node["columns"].items()})
        for node in nodes if node["resource_type"] == "model"
    }
    by_id = {node["unique_id"]: node["name"] for node in nodes}
    for node in nodes:
        meta = node.get("test_metadata") or {}
        model = by_id.get(node.get("attached_node") or "")
        if meta.get("name") == "accepted_values" and model in contracts:
            contracts[model].accepted_values[node["column_name"]] = meta["kwargs"]["values"]
    return contracts


def lint(programs: Iterable[Program], *, root: Path, contracts: dict[str, Contract],
         rules: Rules = Rules()) -> list[Problem]:
    """Every problem of every step of `programs` in every locale folder under `root`."""
    problems: list[Problem] = []
    for program in programs:
        contract = contracts.get(program.audience)
        if contract is None:
            problems.append(Problem(program.name, "*", "*", f"audience model "
                                    f"{program.audience} is not in dbt's manifest"))
            continue
        if not contract.enforced:
            problems.append(Problem(program.name, "*", "*", f"audience model "
                                    f"{program.audience} has no enforced dbt contract"))
        problems += [Problem(program.name, "*", "*", f"audience column {name} has no "
                             "data_type in its contract")
                     for name, data_type in contract.columns.items() if not data_type]
        job = rendering_job(program, root=root, public_url=SAMPLE_PUBLIC_URL)
        for step in program.steps:
            for locale, message in _lint_step(job, step, contract, root, rules):
                problem = Problem(program.name, step.name, locale, message)
                if problem not in problems:
                    problems.append(problem)
    return problems


def _lint_step(job: Dispatch, step: Step, contract: Contract, root: Path,
               rules: Rules) -> Iterator[tuple[str, str]]:
    folder = root / job.program.name / step.template
    locales = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    for missing in (locale for locale in rules.locales if locale not in locales):
        yield missing, (f"no {step.template}/{missing}/ templates: contacts in {missing} "
                        f"would get {job.program.default_locale}")
    for locale in locales:
        try:
            valid = addresses.locale(locale, job.program.default_locale) == locale
        except addresses.Unusable:
            valid = False
        if not valid:
            yield locale, "folder name is not a locale the planner gives (ll or ll-CC)"
            continue
        failures: set[str] = set()  # a variant failing as the base sample did adds nothing
        for contact, variant in _samples(contract, locale):
            try:
                rendered, context = render_step(job, step, contact, locale)
            except Exception as err:  # e.g. template maths on an unexpected type
                detail = str(err) if isinstance(err, TemplateProblem) else (
                    f"{type(err).__name__}: {err}")
                if detail not in failures:
                    failures.add(detail)
                    yield locale, f"does not render{variant}: {detail}"
                continue
            for message in _check(step, rendered, context, rules):
                yield locale, message


def _check(step: Step, rendered: Rendered, context: dict[str, Any], rules: Rules) -> Iterator[str]:
    if step.channel == "email":
        subject = rendered.subject
        if not subject:
            yield "subject is empty"
        elif len(subject) > rules.subject_chars:
            yield (f"subject is {len(subject)} characters (limit {rules.subject_chars}): "
                   f"{subject!r}")
    else:
        size = sms_encoding.measure(rendered.text)
        if size.segments > rules.sms_segments:
            why = f", because of {''.join(size.non_gsm[:5])!r}" if size.non_gsm else ""
            yield (f"SMS is {size.segments} segments of {size.encoding} ({size.units} units"
                   f"{why}; limit {rules.sms_segments})")
    links = _text_links(rendered.text) + (_html_links(rendered.html) if rendered.html else [])
    for url in dict.fromkeys(links):
        yield from _check_link(url, rules)
    if step.is_marketing and step.channel == "email":
        unsubscribe = context.get("unsubscribe_url")
        if unsubscribe not in _html_links(rendered.html or ""):
            yield "marketing email without an unsubscribe link in its HTML"
        if unsubscribe not in rendered.text:
            yield "marketing email without an unsubscribe link in its text"
    if step.is_marketing and step.channel == "sms" and "STOP" not in rendered.text:
        yield "marketing SMS without how to opt out (STOP)"


def _check_link(url: str, rules: Rules) -> Iterator[str]:
    parts = urlsplit(url)
    if parts.scheme in ("mailto", "tel", "sms"):
        return
    if not (parts.scheme and parts.netloc):
        yield f"link is not absolute: {url}"
    elif parts.scheme != "https":
        yield f"link is not https: {url}"
    elif not url.startswith(SAMPLE_PUBLIC_URL + "/"):  # our own links carry a token instead
        query = parse_qs(parts.query)
        missing = [name for name in rules.campaign_params if not query.get(name)]
        if missing:
            yield f"link without {', '.join(missing)}: {url}"


_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s<>\"']+")


def _text_links(text: str) -> list[str]:
    return [url.rstrip(".,;:!?)") for url in _URL_IN_TEXT.findall(text)]


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.links += [value or "" for name, value in attrs if name in ("href", "src")]


def _html_links(html: str) -> list[str]:
    parser = _LinkParser()
    parser.feed(html)
    parser.close()
    return parser.links


def _samples(contract: Contract, locale: str) -> Iterator[tuple[dict[str, Any], str]]:
    """A contact with every contracted column set, then one per other accepted value of
    each enum column (with a note naming it, for the problem message)."""
    base = {name: sample_value(name, data_type, locale)
            for name, data_type in contract.columns.items()}
    for name, values in contract.accepted_values.items():
        if values and name in base:
            base[name] = values[0]
    yield base, ""
    for name, values in contract.accepted_values.items():
        for value in values[1:] if name in base else ():
            yield {**base, name: value}, f" with {name}={value!r}"


def sample_value(column: str, data_type: str | None, locale: str) -> Any:
    """A plausible value of a column's type; text is guessed from the column's name."""
    kind = (data_type or "text").lower()
    if kind in ("boolean", "bool"):
        return True
    if kind in ("integer", "int", "int4", "bigint", "int8", "smallint", "int2"):
        return 3
    if kind.startswith(("numeric", "decimal", "double", "real", "float")):
        return Decimal("42.5")
    if kind.startswith("timestamp"):
        zoned = "with time zone" in kind or kind == "timestamptz"
        return SAMPLE_TIME if zoned else SAMPLE_TIME.replace(tzinfo=None)
    if kind == "date":
        return SAMPLE_TIME.date()
    if column == "locale":
        return locale
    if column.endswith("email"):
        return f"{column.replace('_', '.')}@example.com"
    if column.endswith("phone"):
        return "+358401234567"
    if column.endswith("time_zone"):
        return "Europe/Helsinki"
    if column.endswith("_url"):
        return f"https://example.com/{column.replace('_', '-')}"
    if column.endswith("_id"):
        return f"{column[:-3].replace('_', '-')}-001"
    return column.replace("_", " ").title()
