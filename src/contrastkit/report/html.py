"""Rendering of the report: one self-contained HTML page (inline CSS, images as data: URIs, a few
lines of inline script that mark each figure as rendered; nothing is fetched from a network)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

from contrastkit.diagnostics.health import Check

__all__ = ["Figure", "Section", "render"]


@dataclass
class Figure:
    """One PNG figure with an id (``fig-…``) and a caption."""

    id: str
    png: bytes
    caption: str


@dataclass
class Section:
    """A titled part of the report: paragraphs, tables (caption, header, rows) and figures, or
    the reason it could not be made."""

    id: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    unavailable: str | None = None


VERDICTS = {
    "ok": ("Healthy", "every check passed"),
    "warn": ("Needs a look", "some checks are outside their healthy range"),
    "fail": ("Unhealthy", "at least one check failed"),
}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
main{max-width:1320px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:1.5em;margin:0.2em 0}h2{font-size:1.2em;margin:0 0 0.5em}
header{background:#fff;border-bottom:1px solid #d0d7de;padding:14px 24px}
header p{margin:0.2em 0;color:#59636e;font-size:0.92em}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:14px 18px;margin:14px 0}
.verdict{display:flex;align-items:center;gap:14px;padding:12px 16px;border-radius:8px;color:#fff;
margin-bottom:12px}
.verdict strong{font-size:1.4em}
.verdict.ok{background:#1a7f37}.verdict.warn{background:#9a6700}.verdict.fail{background:#cf222e}
table{border-collapse:collapse;margin:6px 0 10px;font-size:0.92em}
caption{text-align:left;color:#59636e;font-size:0.92em;padding:2px 0 4px;max-width:900px}
th,td{border-bottom:1px solid #d8dee4;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
td.num{font-variant-numeric:tabular-nums;text-align:right}
.badge{display:inline-block;min-width:3.2em;text-align:center;border-radius:10px;padding:1px 8px;
color:#fff;font-weight:600;font-size:0.85em}
.badge.ok{background:#1a7f37}.badge.warn{background:#9a6700}.badge.fail{background:#cf222e}
.badge.na{background:#8c959f}
figure{display:inline-block;margin:6px 10px 6px 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #d8dee4}
figcaption{font-size:0.85em;color:#59636e;max-width:640px}
.unavailable{color:#59636e;font-style:italic}
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:0.85em}
nav a{margin-right:10px;font-size:0.9em}
"""

SCRIPT = """
window.addEventListener('load', function () {
  var figures = document.querySelectorAll('figure.plot'), rendered = 0;
  figures.forEach(function (f) {
    var img = f.querySelector('img');
    var ok = !!img && img.complete && img.naturalWidth > 0 && img.naturalHeight > 0;
    f.setAttribute('data-rendered', ok ? 'yes' : 'no');
    if (ok) { f.setAttribute('data-size', img.naturalWidth + 'x' + img.naturalHeight); rendered++; }
  });
  document.body.setAttribute('data-figures', String(figures.length));
  document.body.setAttribute('data-rendered', String(rendered));
});
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _badge(status: str) -> str:
    css = "na" if status == "n/a" else status
    return f'<span class="badge {css}">{_e(status.upper())}</span>'


def _table(caption: str, header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode()
    return (
        f'<figure class="plot" id="{_e(fig.id)}"><img alt="{_e(fig.caption)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{_e(fig.caption)}</figcaption></figure>'
    )


def _health(checks: list[Check], verdict: str, thresholds_html: str) -> str:
    title, meaning = VERDICTS[verdict]
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail", "n/a")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    rows = "".join(
        f"<tr><td>{_badge(c.status)}</td><td>{_e(c.name)}</td><td class='num'>{_e(c.value)}</td>"
        f"<td>{_e(c.detail)}</td></tr>"
        for c in checks
    )
    return (
        f'<section id="health"><div class="verdict {verdict}" data-verdict="{verdict}">'
        f"<strong>{_e(title)}</strong><span>{_e(meaning)} ({_e(summary)})</span></div>"
        f"<table><thead><tr><th>status</th><th>check</th><th>value</th><th>meaning and limits"
        f"</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<details><summary>How the checks are judged</summary>{thresholds_html}</details>"
        "</section>"
    )


def _section(section: Section) -> str:
    parts = [f'<section id="{_e(section.id)}"><h2>{_e(section.title)}</h2>']
    if section.unavailable:
        parts.append(f'<p class="unavailable">Not available: {_e(section.unavailable)}</p>')
    parts += [f"<p>{_e(p)}</p>" for p in section.paragraphs]
    parts += [_table(*t) for t in section.tables]
    parts += [_figure(f) for f in section.figures]
    parts.append("</section>")
    return "".join(parts)


def render(
    *,
    title: str,
    subtitle: list[str],
    checks: list[Check],
    verdict: str,
    thresholds_html: str,
    sections: list[Section],
    config_text: str,
) -> str:
    """The whole page as a string."""
    nav = "".join(f'<a href="#{_e(s.id)}">{_e(s.title)}</a>' for s in sections)
    body = "".join(_section(s) for s in sections)
    config = (
        f'<section id="config"><h2>Config</h2><pre>{_e(config_text)}</pre></section>'
        if config_text
        else ""
    )
    lines = "".join(f"<p>{_e(line)}</p>" for line in subtitle)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1>{lines}<nav>{nav}<a href='#config'>Config</a></nav></header>"
        f"<main>{_health(checks, verdict, thresholds_html)}{body}{config}</main>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )
