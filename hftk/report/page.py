"""An evaluation report as data (`report.json`) and as one page to read (`report.html`).

The page is rendered from the same dictionary that is saved as JSON, so every number on it is report.json's. It
is one self-contained file: inline CSS, figures as SVG inside the page (data URIs), no script and no network, so it
opens from a laptop's disk, a mail attachment or a printed copy alike.
"""

from __future__ import annotations

import base64
import html
import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hftk.errors import HftkError
from hftk.files import atomic_write_text

# The files a report folder holds: a folder holding anything else is not hftk's report, and is never replaced.
REPORT_FILES = ("report.html", "report.json", "figures")


@dataclass
class Table:
    caption: str
    head: list[str]
    rows: list[list[Any]]


@dataclass
class Figure:
    name: str  # file stem under figures/
    caption: str
    svg: str


@dataclass
class Example:
    """One input shown on the page: where it is (file:line), what it was and what went wrong.

    `marked`: the input as segments of text, each with the mark it gets on the page (None, "gold", "predicted",
    or "both"), for spans that are shown inside their sentence or context."""

    where: str
    fields: dict[str, Any]
    marked: list[tuple[str, str | None]] | None = None


@dataclass
class Section:
    title: str
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)  # numbers that are no table's, e.g. the calibration error
    note: str = ""


@dataclass
class Report:
    """What a model gets right and wrong on one labelled file."""

    task: str
    model: str
    data: str
    rows: int
    metrics: dict[str, Any]
    sections: list[Section]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for section in out["sections"]:
            for figure in section["figures"]:
                del figure["svg"]  # the file's, not the numbers'
                figure["file"] = f"figures/{figure['name']}.svg"
        return _plain(out)

    def headline(self) -> list[tuple[str, Any]]:
        """The scores a model card shows: every defined metric, timings left out."""
        return [(k, v) for k, v in self.metrics.items() if isinstance(v, (int, float)) and not _timing(k)]

    def card_lines(self, folder: str) -> list[str]:
        """The model card's part: a link to the page, and the report's first table (per class, per entity type)."""
        lines = [
            "## Evaluation report",
            "",
            f"What the model gets right and wrong on `{Path(self.data).name}`: [{folder}/report.html]"
            f"({folder}/report.html) (every number in `{folder}/report.json`).",
            "",
        ]
        table = next((t for s in self.sections for t in s.tables), None)
        if table is not None:
            lines += [f"**{table.caption}**", "", "| " + " | ".join(table.head) + " |", "|---" * len(table.head) + "|"]
            lines += ["| " + " | ".join(shown(v) for v in _plain(row)) + " |" for row in table.rows]
            lines.append("")
        return lines

    def write(self, folder: Path) -> None:
        """report.json, report.html and figures/*.svg into `folder`, replacing an earlier report there only."""
        check_report_folder(folder)
        folder.mkdir(parents=True, exist_ok=True)
        figures = folder / "figures"
        shutil.rmtree(figures, ignore_errors=True)
        figures.mkdir()
        for section in self.sections:
            for figure in section.figures:
                (figures / f"{figure.name}.svg").write_text(figure.svg, encoding="utf-8")
        atomic_write_text(folder / "report.json", json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n")
        atomic_write_text(folder / "report.html", self.html())

    def html(self) -> str:
        """The page, rendered from `to_json()`: what it shows is what report.json holds."""
        data = self.to_json()
        title = f"{Path(self.model).name or self.model} on {Path(self.data).name}"
        parts = [
            f"<h1>{_e(title)}</h1>",
            f"<p class=meta>{_e(self.task)} · model <code>{_e(self.model)}</code> · data <code>{_e(self.data)}</code>"
            f" · {self.rows} rows</p>",
            _table({"caption": "Scores", "head": ["metric", "value"], "rows": _plain(self.headline())}, "headline"),
        ]
        for i, (section, svgs) in enumerate(zip(data["sections"], self.sections)):
            parts.append(f"<section id=s{i}><h2>{_e(section['title'])}</h2>")
            if section["note"]:
                parts.append(f"<p>{_e(section['note'])}</p>")
            if section["values"]:
                rows = [[k, v] for k, v in section["values"].items()]
                parts.append(_table({"caption": "", "head": [], "rows": rows}, "values"))
            parts.append("<div class=row>")
            parts.extend(_table(t) for t in section["tables"])
            parts.extend(_figure(f) for f in svgs.figures)
            parts.append("</div>")
            if section["examples"]:
                parts.append(_examples(section["examples"]))
            parts.append("</section>")
        body = "\n".join(parts)
        return (
            f"<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{_CSS}</style></head>\n"
            f"<body>\n{body}\n<footer>hftk evaluation report</footer></body></html>\n"
        )


def check_report_folder(folder: Path) -> None:
    """A report goes into a new or empty folder, or replaces an earlier report: any other file there stays."""
    if folder.exists() and not folder.is_dir():
        raise HftkError(f"{folder}: is a file; --report takes a folder (report.html and report.json go in it)")
    if any(p.exists() and not p.is_dir() for p in folder.parents):
        raise HftkError(f"{folder}: a parent of the report folder is a file, not a folder; choose another path")
    if not folder.is_dir():
        return
    names = sorted(p.name for p in folder.iterdir())
    # An earlier report is replaced; anything else is the user's, even files named like a report's parts.
    other = [n for n in names if n not in REPORT_FILES] if "report.json" in names else names
    if other:
        raise HftkError(
            f"{folder}: holds other files ({', '.join(other[:3])}); give a new or empty folder for the report"
        )


def shown(value: Any) -> str:
    """A value as the page shows it: floats to 4 significant decimals, integers whole, None as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


# Evaluation entries that time the run rather than score the model: left out of score tables (page, card, runs).
TIMINGS = ("runtime", "samples_per_second", "steps_per_second", "epoch")


def _timing(metric: str) -> bool:
    return metric.endswith(TIMINGS)


def _plain(value: Any) -> Any:
    """JSON's own types: numpy scalars as Python numbers, NaN as null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(table: dict[str, Any], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in table["head"])
    rows = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in table["rows"])
    caption = f"<caption>{_e(table['caption'])}</caption>" if table["caption"] else ""
    return f"<table class='{cls}'>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _cell(value: Any) -> str:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"<td class={'num' if number else 'text'}>{_e(shown(value))}</td>"


def _figure(figure: Figure) -> str:
    data = base64.b64encode(figure.svg.encode("utf-8")).decode("ascii")
    return (
        f"<figure id='fig-{_e(figure.name)}'><img alt='{_e(figure.caption)}' src='data:image/svg+xml;base64,{data}'>"
        f"<figcaption>{_e(figure.caption)}</figcaption></figure>"
    )


def _examples(examples: list[dict[str, Any]]) -> str:
    """One row per example; its `marked` segments stand in for the text column, spans marked in place."""
    names = list(dict.fromkeys(k for ex in examples for k in ex["fields"]))
    head = "".join(f"<th>{_e(n)}</th>" for n in ["where", *names])
    rows = []
    for ex in examples:
        cells = [f"<td class=where><code>{_e(ex['where'])}</code></td>"]
        for n in names:
            if n == "text" and ex["marked"] is not None:
                cells.append(f"<td class=text>{_marked(ex['marked'])}</td>")
            else:
                cells.append(_cell(ex["fields"].get(n)))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class=examples><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _marked(segments: list[list[Any]]) -> str:
    return "".join(f"<mark class={mark}>{_e(text)}</mark>" if mark else _e(text) for text, mark in segments)


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ddd;margin-top:2em}
.meta{color:#666}code{font-size:.9em}
table{border-collapse:collapse;margin:.8em 0}.row{display:flex;flex-wrap:wrap;gap:0 2em;align-items:flex-start}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;vertical-align:top}th{background:#f4f4f4;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.examples td.text{max-width:640px;overflow-wrap:anywhere}
figure{display:inline-block;margin:.5em 1em .5em 0}figure img{max-width:100%;height:auto}
figcaption{color:#555;font-size:.9em}
mark.gold{background:#c8f0c8}mark.predicted{background:#ffd5cc}mark.both{background:#cfe3ff}
footer{color:#999;margin-top:3em;font-size:.85em}
@media print{body{margin:0;max-width:none}section{break-inside:avoid-page}figure{break-inside:avoid}}
"""
