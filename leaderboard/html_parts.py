"""The parts of ``index.html`` below the main table: secondary tables and sample generations,
with the escaping helpers every part of the page uses.

Every text that comes from the store is escaped with :func:`e` where it is
written (the page module explains the page's other defences).
"""

from __future__ import annotations

import html
import json

from harness.leaderboard.columns import against
from harness.leaderboard.markdown import DIVERGENCE_HEADER, divergence_cells
from harness.leaderboard.model import Row
from harness.leaderboard.text import diff_points, diff_reward, pct, reward


def e(text: object) -> str:
    """Escape text for HTML content and attribute values."""
    return html.escape("" if text is None else str(text), quote=True)


def json_for_script(obj: object) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&`` survives raw."""
    text = json.dumps(obj, ensure_ascii=True, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def num_attr(x: object) -> str:
    """A sort value for ``data-v``: numbers as Python writes floats, "" for none."""
    return "" if x is None else repr(float(x))


def td(text: str, sort_value: object = None, numeric: bool = False, cls: str = "") -> str:
    """A cell; a number cell may wrap only between its value and what follows (interval, engine)."""
    v = text if sort_value is None else sort_value
    classes = " ".join(c for c in ("n" if numeric else "", cls) if c)
    cls_attr = f' class="{classes}"' if classes else ""
    if numeric and " " in text:  # "61.2 [55.0, 67.1]": the interval moves to the next line whole
        head, tail = text.split(" ", 1)
        return f'<td{cls_attr} data-v="{e(v)}">{e(head)} <span class="nw">{e(tail)}</span></td>'
    return f'<td{cls_attr} data-v="{e(v)}">{e(text)}</td>'


def table(table_id: str, header: list[str], body: list[str]) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def twin_table(rows: list[Row]) -> str:
    twins = [r for r in rows if r.twin]
    if not twins:
        return ""
    by_key = {r.key: r for r in rows}
    body = []
    for r in twins:
        f = by_key.get(r.twin["against_key"])
        da, dr = r.twin["all"]["accuracy"], r.twin["all"]["reward"]
        body.append(
            "<tr>" + f"<td>{e(r.name)}</td><td>{e(r.model)}</td>"
            + td(pct(f.overall.get("accuracy")) if f else "-", "", True)
            + td(pct(r.overall.get("accuracy")), "", True)
            + td(diff_points(da), "", True, "sig" if da["significant"] else "")
            + td(reward(f.overall.get("reward")) if f else "-", "", True)
            + td(reward(r.overall.get("reward")), "", True)
            + td(diff_reward(dr), "", True, "sig" if dr["significant"] else "")
            + td(str(da["n"]), "", True) + "</tr>"
        )
    return ("<h2>Faithful vs corrected</h2><p class=\"legend\">Each row with the correct method against the same "
            "row as the reference code runs it (<code>--faithful</code>); Δ = corrected − faithful, paired over "
            "problems.</p>" + table("twins", ["row", "model", "faithful acc %", "corrected acc %", "Δ acc (pp)",
                                             "faithful reward", "corrected reward", "Δ reward", "problems"], body))


def bench_table(rows: list[Row]) -> str:
    body = []
    for r in rows:
        for bench, d in (r.baseline or {}).get("benchmarks", {}).items():
            body.append(
                f"<tr><td>{e(r.name)}</td><td>{e(r.model)}</td><td>{e(r.engine)}</td>"
                f"<td>{e(against(r.baseline, r))}</td><td>{e(bench)}</td>"
                + td(diff_points(d["accuracy"]), "", True, "sig" if d["accuracy"]["significant"] else "")
                + td(diff_reward(d["reward"]), "", True, "sig" if d["reward"]["significant"] else "")
                + td(str(d["accuracy"]["n"]), "", True) + "</tr>"
            )
    if not body:
        return ""
    return ("<h2>Paired differences against the baseline, by benchmark</h2>"
            + table("paired", ["row", "model", "engine", "baseline", "benchmark", "Δ acc (pp)", "Δ reward",
                               "problems"], body))


def divergence_table(rows: list[Row]) -> str:
    """Each quantized row's divergence from its reference, one line per benchmark."""
    body = []
    for r in rows:
        for bench, d in ((r.divergence or {}).get("benchmarks") or {}).items():
            cells = divergence_cells(r, bench, d)
            body.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells[:4])
                        + "".join(td(c, "", True) for c in cells[4:-1]) + f'<td class="wrap">{e(cells[-1])}</td></tr>')
    if not body:
        return ""
    return ("<h2>Divergence from the reference, by benchmark</h2><p class=\"legend\">Tokens scored: completion "
            "tokens both models were scored on (summed over seeds).</p>"
            + table("divergence", DIVERGENCE_HEADER, body))


def samples(rows: list[Row], n: int) -> str:
    if n <= 0:
        return ""
    out = ["<h2>Sample generations</h2>"]
    for i, r in enumerate(rows):
        shown = r.runs[0].samples[:n]
        if not shown:
            continue
        out.append(f'<section id="samples-{i}" class="samples"><h3>{e(r.name)} · {e(r.model)} · '
                   f"{e(r.engine)} · run {e(r.runs[0].id)}</h3>")
        for s in shown:
            verdict = '<span class="ok">correct</span>' if s["correct"] else '<span class="bad">wrong</span>'
            out.append(
                f"<details><summary>{e(s['benchmark'])}/{e(s['problem_id'])} #{e(s['sample'])}: {verdict}, "
                f"predicted {e(s['predicted'] if s['predicted'] is not None else '(none)')}, "
                f"reference {e(s['reference'])}</summary>"
                f'<div>prompt</div><pre class="prompt">{e(s["prompt"])}</pre>'
                f'<div>completion</div><pre class="completion">{e(s["completion"])}</pre></details>'
            )
        out.append("</section>")
    return "\n".join(out)
