"""The class report as a self-contained HTML page, Markdown, or JSON.

Input: the report dict (:func:`autograder.analytics.aggregate.summarise`, with ``similar_answers`` per assignment,
``changes`` and ``notes`` added by :mod:`.command`). Student names link to their reports, relative to the folder
the report is written to. The HTML embeds each assignment's histogram as a base64 PNG and escapes every
string (student folder names and flags are untrusted text).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .plots import data_uri, histogram_png

FORMATS = ("html", "md", "json")

_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>convlab class report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; } th, td { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f0f0f0; text-align: left; } td.num { text-align: right; } .muted { color: #666; }
h2 { border-bottom: 2px solid #4477aa; padding-bottom: .2em; margin-top: 2em; }
</style></head><body>
<h1>convlab class report</h1>
<p class="muted">{{ source }}</p>
{% for note in notes %}<p class="muted">{{ note }}</p>{% endfor %}
{% for aid, a in assignments.items() %}
<section id="{{ aid }}">
<h2>{{ aid }}</h2>
<p>{{ a.students }} student{{ "" if a.students == 1 else "s" }}, mean {{ "%g"|format(a.mean) }} of {{ "%g"|format(a.max_score) }} points.</p>
<img alt="score distribution of {{ aid }}" src="{{ a.histogram }}">
<details><summary>Every student's score</summary><table><tr><th>student</th><th>points</th></tr>
{% for s, points in a.scores.items() %}<tr><td><a href="{{ a.links[s] }}">{{ s }}</a></td>
<td class="num">{{ "%g"|format(points) }}</td></tr>{% endfor %}</table></details>
<h3>Exercises</h3>
<table><tr><th>exercise</th><th>mean</th><th>max</th><th>full marks</th><th>failures</th></tr>
{% for ex, e in a.exercises.items() %}<tr><td>{{ ex }}</td><td class="num">{{ "%g"|format(e.mean) }}</td>
<td class="num">{{ "%g"|format(e.max_score) }}</td><td class="num">{{ e.full_marks }}/{{ a.students }}</td>
<td>{% for cat, who in e.failures.items() %}<span title="{{ who|join(', ') }}">{{ cat }}: {{ who|length }}</span>
{%- if not loop.last %}; {% endif %}{% endfor %}</td></tr>
{% endfor %}</table>
<h3>Misconceptions</h3>
{% for ex, e in a.exercises.items() if e.misconceptions %}
<h4>{{ ex }}</h4><table><tr><th>misconception</th><th>students</th><th>who</th></tr>
{% for m in e.misconceptions %}<tr><td>{{ m.name }}</td><td class="num">{{ m.count }}</td><td>
{% for s in m.students %}<a href="{{ a.links[s] }}">{{ s }}</a>{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
{% endfor %}</table>
{% else %}<p class="muted">No recognised misconception.</p>{% endfor %}
<h3>Needs a look</h3>
{% if a.needs_a_look %}<table><tr><th>student</th><th>why</th></tr>
{% for row in a.needs_a_look %}<tr><td><a href="{{ a.links[row.student] }}">{{ row.student }}</a></td><td>
{% for kind, details in row.reasons.items() %}{{ kind }}: {{ details|join(", ") }}
{%- if not loop.last %}<br>{% endif %}{% endfor %}
</td></tr>{% endfor %}</table>
{% else %}<p class="muted">Nobody.</p>{% endif %}
{% if a.similar_answers %}<h3>Similar answers (for review)</h3>
<p class="muted">Answer cells compared after normalisation; reference solution and given code excluded;
threshold {{ a.similar_answers.threshold }}.</p>
{% if a.similar_answers.pairs %}<table><tr><th>exercise</th><th>students</th><th>similarity</th></tr>
{% for p in a.similar_answers.pairs %}<tr><td>{{ p.exercise }}</td><td>
{% for s in p.students %}<a href="{{ a.links[s] }}">{{ s }}</a>{% if not loop.last %}, {% endif %}{% endfor %}</td>
<td class="num">{{ p.similarity }}</td></tr>{% endfor %}</table>
<p>Clusters: {% for c in a.similar_answers.clusters %}[{{ c.students|join(", ") }}] ({{ c.exercises|join(", ") }})
{% if not loop.last %}; {% endif %}{% endfor %}</p>
{% else %}<p class="muted">No pair above the threshold.</p>{% endif %}{% endif %}
</section>
{% endfor %}
{% if changes is not none %}<h2>Score changes since the previous run</h2>
{% if changes.changed %}<table>
<tr><th>student</th><th>assignment</th><th>old</th><th>new</th><th>change</th><th>exercises</th></tr>
{% for c in changes.changed %}<tr><td>{{ c.student }}</td><td>{{ c.assignment }}</td>
<td class="num">{{ "%g"|format(c.old) }}</td><td class="num">{{ "%g"|format(c.new) }}</td>
<td class="num">{{ "%+g"|format(c.delta) }}</td>
<td>{% for e in c.exercises %}{{ e.exercise }} {{ "%+g"|format(e.delta) }}{% if not loop.last %}, {% endif %}
{% endfor %}</td></tr>
{% endfor %}</table>{% endif %}
<p>{{ changes.unchanged }} submission(s) unchanged.</p>{% endif %}
</body></html>
"""


def _relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start``, always starting with ``./`` or ``../`` (a student folder named like a URL
    scheme, ``javascript:...``, stays a path)."""
    rel = Path(os.path.relpath(path, start)).as_posix()
    return rel if rel.startswith("../") else f"./{rel}"


def _links(report: dict, out_dir: Path, page_dir: Path) -> dict[str, dict[str, str]]:
    """assignment -> student -> the student's report, relative to the page's folder."""
    return {aid: {s: _relative(Path(out_dir) / rel, page_dir) for s, rel in a.get("reports", {}).items()}
            for aid, a in report["assignments"].items()}


def html(report: dict, out_dir: Path, page_dir: Path) -> str:
    from jinja2 import Environment

    links = _links(report, out_dir, page_dir)
    assignments = {}
    for aid, a in report["assignments"].items():
        png = histogram_png(list(a["scores"].values()), a["max_score"], f"{aid}: score distribution")
        assignments[aid] = dict(a, histogram=data_uri(png), links=links[aid])
    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(_HTML).render(assignments=assignments, changes=report.get("changes"),
                                         notes=report.get("notes", []), source=report.get("source", ""))


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _who(students: list[str], links: dict[str, str]) -> str:
    return ", ".join(f"[{_md(s)}]({links.get(s, '')})" for s in students)


def _md_assignment(aid: str, a: dict, links: dict[str, str]) -> list[str]:
    students = f"{a['students']} student{'' if a['students'] == 1 else 's'}"
    lines = [f"## {aid}", "", f"{students}, mean {a['mean']:g} of {a['max_score']:g} points.", "",
             "| exercise | mean | max | full marks | failures |", "|---|---|---|---|---|"]
    for ex, e in a["exercises"].items():
        fails = "; ".join(f"{k}: {len(v)}" for k, v in e["failures"].items())
        lines.append(f"| {_md(ex)} | {e['mean']:g} | {e['max_score']:g} | {e['full_marks']}/{a['students']} | "
                     f"{_md(fails)} |")
    lines += ["", "### Misconceptions", ""]
    for ex, e in a["exercises"].items():
        for m in e["misconceptions"]:
            lines.append(f"- **{_md(ex)}**: {_md(m['name'])} ({m['count']}): {_who(m['students'], links)}")
    if not any(e["misconceptions"] for e in a["exercises"].values()):
        lines.append("None recognised.")
    lines += ["", "### Needs a look", ""]
    for row in a["needs_a_look"]:
        why = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in row["reasons"].items())
        lines.append(f"- {_who([row['student']], links)}: {_md(why)}")
    if not a["needs_a_look"]:
        lines.append("Nobody.")
    sim = a.get("similar_answers")
    if sim:
        lines += ["", f"### Similar answers (threshold {sim['threshold']})", ""]
        lines += [f"- {_md(p['exercise'])}: {_who(p['students'], links)} ({p['similarity']})" for p in sim["pairs"]]
        lines += [f"- cluster: {', '.join(c['students'])} ({', '.join(c['exercises'])})" for c in sim["clusters"]]
        if not sim["pairs"]:
            lines.append("No pair above the threshold.")
    return lines + [""]


def markdown(report: dict, out_dir: Path, page_dir: Path) -> str:
    links = _links(report, out_dir, page_dir)
    lines = ["# convlab class report", "", *[f"> {n}" for n in report.get("notes", [])], ""]
    for aid, a in report["assignments"].items():
        lines += _md_assignment(aid, a, links[aid])
    changes = report.get("changes")
    if changes is not None:
        lines += ["## Score changes since the previous run", "", "| student | assignment | old | new | change | "
                  "exercises |", "|---|---|---|---|---|---|"]
        for c in changes["changed"]:
            exs = ", ".join(f"{e['exercise']} {e['delta']:+g}" for e in c["exercises"])
            lines.append(f"| {_md(c['student'])} | {_md(c['assignment'])} | {c['old']:g} | {c['new']:g} | "
                         f"{c['delta']:+g} | {_md(exs)} |")
        lines += ["", f"{changes['unchanged']} submission(s) unchanged.", ""]
    return "\n".join(lines)


def render(report: dict, fmt: str, out_dir: Path, page_dir: Path) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    if fmt == "md":
        return markdown(report, out_dir, page_dir)
    if fmt == "html":
        return html(report, out_dir, page_dir)
    raise ValueError(f"unknown report format {fmt!r}; choose from {', '.join(FORMATS)}")
