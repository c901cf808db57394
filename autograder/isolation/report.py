"""Reports of an isolated grading run: Gradescope ``results.json``, JUnit XML, Markdown, a terminal table.

The JSON follows Gradescope's schema (``score``, ``execution_time``, ``output``, ``tests[]`` with ``name``,
``score``, ``max_score``, ``status``, ``output``, ``visibility``). The secret seed and the sandbox's raw output
are never in it: they go to the instructor's sidecar (:func:`instructor_record`).

Files are written atomically (a temporary file in the same folder, then ``os.replace``), by the grader only.
"""
from __future__ import annotations

import io
import json
import os
import re
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree as ET

from .. import __version__
from ..outcome import part_record
from .grader import SubmissionResult

FORMATS = ("json", "junit", "md", "table")


def atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _summary(result: SubmissionResult) -> str:
    lines = []
    for nb in result.notebooks:
        what = f"assignment {nb.assignment}" if nb.assignment else "no known assignment"
        if nb.exercises:
            lines.append(f"{nb.notebook} ({what}): {nb.score:g}/{nb.max_score:g} points")
        else:
            lines.append(f"{nb.notebook} ({what}): not graded")
        lines += [f"  - {n}" for n in nb.notes]
        if nb.grader_errors:
            lines.append("  - the grader failed on part of this notebook (not your fault); the instructor has "
                         "been told")
    if result.isolation_note:
        lines.append(result.isolation_note)
    return "\n".join(lines)


def results_json(result: SubmissionResult) -> dict:
    """Gradescope's ``results.json``."""
    tests = []
    for nb in result.notebooks:
        for ex in nb.exercises:
            for part in ex.parts:
                entry = part.to_json()
                entry["extra_data"] = {"assignment": nb.assignment, "notebook": nb.notebook, **part_record(part)}
                tests.append(entry)
    return {
        "score": result.score,
        "execution_time": round(result.seconds, 3),
        "output": _summary(result),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {
            "grader": f"convlab autograder {__version__}",
            "max_score": result.max_score,
            "assignments": [nb.assignment for nb in result.notebooks],
            "isolation": "bubblewrap" if result.isolation == "bwrap" else "reduced",
        },
    }


_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot hold (NUL, escape codes, lone surrogates) shown as ``\\xNN``;
    ElementTree escapes ``<``, ``&`` and quotes itself."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def junit_xml(result: SubmissionResult) -> str:
    suites = ET.Element("testsuites", name="convlab", time=f"{result.seconds:.3f}")
    for nb in result.notebooks:
        parts = [p for ex in nb.exercises for p in ex.parts]
        failures = sum(1 for p in parts if p.score < p.max_score)
        suite = ET.SubElement(suites, "testsuite", name=xml_text(nb.assignment or nb.notebook), tests=str(len(parts)),
                              failures=str(failures), errors=str(len(nb.grader_errors)), time=f"{nb.seconds:.3f}")
        props = ET.SubElement(suite, "properties")      # the isolation level is in every report
        ET.SubElement(props, "property", name="isolation", value=result.isolation_note or "bubblewrap")
        for p in parts:
            case = ET.SubElement(suite, "testcase", classname=xml_text(nb.assignment or "notebook"),
                                 name=xml_text(p.name))
            ET.SubElement(case, "properties")
            props = case.find("properties")
            assert props is not None
            ET.SubElement(props, "property", name="score", value=f"{p.score:g}")
            ET.SubElement(props, "property", name="max_score", value=f"{p.max_score:g}")
            if p.score < p.max_score:
                fail = ET.SubElement(case, "failure", message=f"{p.score:g}/{p.max_score:g} points")
                fail.text = xml_text(p.output)
            else:
                out = ET.SubElement(case, "system-out")
                out.text = xml_text(p.output)
        if nb.notes:
            out = ET.SubElement(suite, "system-out")
            out.text = xml_text("\n".join(nb.notes))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def md_inline(text: str) -> str:
    """``text`` (possibly the student's) as literal Markdown inline text: every character Markdown or HTML could
    interpret is escaped, and it stays on one line (it cannot start a heading, a fence or a table row)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\r", " ").replace("\n", " ")


def md_block(text: str) -> str:
    """``text`` as a literal Markdown code block: fenced with more backticks than any run inside it, so that
    no line of it can close the fence (a student's "```" cannot forge a heading or a score)."""
    text = str(text).replace("\r", "")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _md_cell(text: str) -> str:
    return md_inline(text)


def markdown(result: SubmissionResult) -> str:
    lines = [f"# Grading report: {result.score:g}/{result.max_score:g} points", ""]
    for nb in result.notebooks:
        what = md_inline(nb.assignment or "unknown assignment")
        lines += [f"## {md_inline(nb.notebook)} ({what}): {nb.score:g}/{nb.max_score:g}", ""]
        if nb.exercises:
            lines += ["| test | score | status |", "|---|---|---|"]
            for ex in nb.exercises:
                for p in ex.parts:
                    status = "passed" if p.score >= p.max_score else "failed"
                    lines.append(f"| {_md_cell(p.name)} | {p.score:g}/{p.max_score:g} | {status} |")
            lines.append("")
        for n in nb.notes:
            lines.append(f"- {md_inline(n)}")
        if nb.notes:
            lines.append("")
        for ex in nb.exercises:
            for p in ex.parts:
                lines += [f"### {md_inline(p.name)}", "", md_block(p.output), ""]
    if result.isolation_note:
        lines += [f"> {md_inline(result.isolation_note)}", ""]
    return "\n".join(lines)


def table_text(result: SubmissionResult, feedback: bool = False, width: int = 110) -> str:
    """A rich table of the tests (plain text when rendered to a file)."""
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=False, color_system=None)
    render_table(result, console, feedback)
    return buf.getvalue()


def render_table(result: SubmissionResult, console, feedback: bool = False) -> None:
    from rich.table import Table

    table = Table(title=f"convlab: {result.score:g}/{result.max_score:g} points", show_lines=False)
    table.add_column("assignment")
    table.add_column("test")
    table.add_column("score", justify="right")
    table.add_column("cases", justify="right")
    table.add_column("status")
    for nb in result.notebooks:
        for ex in nb.exercises:
            for p in ex.parts:
                ok = p.score >= p.max_score
                table.add_row(nb.assignment or "?", p.name, f"{p.score:g}/{p.max_score:g}",
                              f"{p.passed}/{p.total}" if p.total else "",
                              "[green]passed[/green]" if ok else "[red]failed[/red]")
    console.print(table)
    notes = [f"{nb.notebook}: {n}" for nb in result.notebooks for n in nb.notes]
    for n in notes:
        console.print(f"  note: {n}", markup=False, highlight=False)
    if feedback:
        for nb in result.notebooks:
            for ex in nb.exercises:
                console.print(ex.text, markup=False, highlight=False)
    if result.isolation_note:
        console.print(result.isolation_note, markup=False, highlight=False)


def render(result: SubmissionResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(results_json(result), indent=2) + "\n"
    if fmt == "junit":
        return junit_xml(result)
    if fmt == "md":
        return markdown(result)
    if fmt == "table":
        return table_text(result, feedback=True)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def instructor_record(result: SubmissionResult, **extra) -> dict:
    """What only the instructor sees: the seeds (to reproduce the grade with ``--seed``), the number of cases,
    the isolation level, integrity flags (:mod:`autograder.integrity`), grader errors and the sandbox's whole
    output (already capped by the sandbox)."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": result.seed,
        "isolation": result.isolation,
        "score": result.score,
        "max_score": result.max_score,
        "isolation_note": result.isolation_note,
        "flags": sorted({f for nb in result.notebooks for f in nb.flags}),
        "notebooks": [{"notebook": nb.notebook, "assignment": nb.assignment, "seed": nb.seed, "cases": nb.cases,
                       "recognised": nb.recognised, "unreadable": nb.unreadable, "flags": nb.flags,
                       "seconds": round(nb.seconds, 3), "grader_errors": nb.grader_errors,
                       "sandbox_output": nb.log} for nb in result.notebooks],
        **extra,
    }


def record_flags(record: dict) -> list[str]:
    """The integrity flags of an instructor record (older records have none)."""
    flags = record.get("flags")
    return [str(f) for f in flags] if isinstance(flags, list) else []
