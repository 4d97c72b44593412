"""``index.html``: one self-contained static page (no CDN, no external file, plain inline JS).

Every text that comes from the store (names, options, prompts, model
outputs) is escaped with :func:`html.escape` where it is written, and the
rows embedded as JSON for the script are escaped so that no ``</script>``
inside them can end the block. A Content-Security-Policy admits only this
page's own script and style (by hash), so even a missed escape could not run
anything.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from pathlib import Path

from harness.leaderboard.markdown import against, legend
from harness.leaderboard.model import DEFAULT_CONTEXT_TOKENS, Row
from harness.leaderboard.pareto import LatencyAxis, MemoryAxis, latency_axis, memory_axis
from harness.leaderboard.text import (
    diff_points,
    diff_reward,
    kernels,
    measured_by,
    memory_header,
    number,
    pct,
    reward,
    size,
)

FILTERS = ("model", "trainer", "bits", "engine")

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; }
h1 { margin-bottom: .2rem; }
.meta, .legend { color: #555; max-width: 70rem; }
table { border-collapse: collapse; margin: .8rem 0 1.6rem; }
th, td { border-bottom: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
#board th { cursor: pointer; user-select: none; background: #f4f4f4; position: sticky; top: 0; }
#board th[aria-sort="ascending"]::after { content: " \\25B2"; }
#board th[aria-sort="descending"]::after { content: " \\25BC"; }
tr.pareto td:first-child { border-left: 3px solid #222; }
.sig { font-weight: 600; }
.faithful { color: #7a4b00; }
.filters label { margin-right: 1rem; }
pre { white-space: pre-wrap; word-break: break-word; background: #f7f7f7; padding: .4rem; margin: .2rem 0 .6rem; }
details { margin: .2rem 0; }
.ok { color: #176c2a; } .bad { color: #a3141e; }
img.plot { max-width: 100%; border: 1px solid #eee; }
"""

SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("leaderboard-data").textContent);
  var table = document.getElementById("board");
  var tbody = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var sorted = { col: -1, dir: 1 };

  function num(v) { return v === null || v === "" ? NaN : parseFloat(v); }

  headers.forEach(function (th, col) {
    th.addEventListener("click", function () {
      var dir = sorted.col === col ? -sorted.dir : 1;
      sorted = { col: col, dir: dir };
      var numeric = th.getAttribute("data-type") === "num";
      var rows = Array.prototype.slice.call(tbody.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
        if (numeric) {
          var fx = num(x), fy = num(y);
          if (isNaN(fx) && isNaN(fy)) { return 0; }
          if (isNaN(fx)) { return 1; }
          if (isNaN(fy)) { return -1; }
          return (fx - fy) * dir;
        }
        return String(x).localeCompare(String(y)) * dir;
      });
      rows.forEach(function (tr) { tbody.appendChild(tr); });
      headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    });
  });

  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-field]"));
  function applyFilters() {
    var shown = 0;
    Array.prototype.forEach.call(tbody.rows, function (tr) {
      var row = data.rows[Number(tr.getAttribute("data-i"))];
      var keep = selects.every(function (s) {
        return s.value === "" || String(row[s.getAttribute("data-field")]) === s.value;
      });
      tr.hidden = !keep;
      if (keep) { shown += 1; }
    });
    document.getElementById("shown").textContent = shown + " of " + tbody.rows.length + " rows shown";
  }
  selects.forEach(function (s) { s.addEventListener("change", applyFilters); });
  applyFilters();
})();
"""


def e(text: object) -> str:
    """Escape text for HTML content and attribute values."""
    return html.escape("" if text is None else str(text), quote=True)


def json_for_script(obj: object) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&`` survives raw."""
    text = json.dumps(obj, ensure_ascii=True, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def _num_attr(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def _td(text: str, sort_value: object = None, numeric: bool = False, cls: str = "") -> str:
    v = text if sort_value is None else sort_value
    classes = " ".join(c for c in ("n" if numeric else "", cls) if c)
    cls_attr = f' class="{classes}"' if classes else ""
    return f'<td{cls_attr} data-v="{e(v)}">{e(text)}</td>'


def _jsonable(value):
    """NaN/inf are not JSON: None stands for a figure that could not be computed."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def render(rows: list[Row], meta: dict, plot_png: Path | None = None, n_samples: int = 3,
           axis: MemoryAxis | None = None, latency_png: Path | None = None,
           latency: LatencyAxis | None = None) -> str:
    context_tokens = int(meta.get("context_tokens", DEFAULT_CONTEXT_TOKENS))
    axis = axis or memory_axis(rows, context_tokens)
    latency = latency or latency_axis(rows)
    benches = sorted({b for r in rows for b in r.benchmarks})
    data = _jsonable({"meta": meta, "rows": [r.to_json(n_samples) for r in rows]})
    columns = [("#", "num"), ("row", "text"), ("model", "text"), ("trainer", "text"), ("strategy", "text"),
               ("bits", "text"), ("engine", "text"), ("options", "text"), ("preset", "text"), ("seeds", "num"),
               ("accuracy % (all)", "num"), ("reward (all)", "num"),
               *[(f"{b} acc %", "num") for b in benches],
               ("weights", "num"), ("KV B/token", "num"), (memory_header(context_tokens), "num"),
               ("peak memory", "num"), ("tok/s", "num"), ("TTFT ms", "num"), ("ms/token", "num"),
               ("kernels", "text"), ("Δ acc vs baseline (pp)", "num"), ("baseline", "text"), ("Pareto", "num"),
               ("latency Pareto", "num"), ("samples", "text")]
    head = "".join(f'<th data-type="{t}" scope="col">{e(name)}</th>' for name, t in columns)
    body = []
    for i, r in enumerate(rows):
        acc = r.overall.get("accuracy") or {}
        rew = r.overall.get("reward") or {}
        delta = r.baseline["all"]["accuracy"] if r.baseline else None
        classes = [c for c in ("pareto" if r.pareto else "", "faithful" if r.variant == "faithful" else "") if c]
        name = r.name + (" (faithful)" if r.variant == "faithful" else "")
        cells = [
            _td(str(i + 1), i + 1, True), _td(name), _td(r.model), _td(r.trainer), _td(r.strategy), _td(r.bits),
            _td(r.engine_label, r.engine),
            _td(r.options or "-"), _td(r.preset), _td(",".join(map(str, r.seeds)), len(r.seeds), True),
            _td(pct(acc), _num_attr(acc.get("value")), True), _td(reward(rew), _num_attr(rew.get("value")), True),
            *[_td(pct(r.benchmarks.get(b, {}).get("accuracy")),
                  _num_attr((r.benchmarks.get(b, {}).get("accuracy") or {}).get("value")), True) for b in benches],
            _td(size(r.weight_bytes), _num_attr(r.weight_bytes), True),
            _td(number(r.kv_bytes_per_token, 0), _num_attr(r.kv_bytes_per_token), True),
            _td(size(r.memory_bytes), _num_attr(r.memory_bytes), True),
            _td(measured_by(size(r.peak_memory_bytes), r.latency_engine), _num_attr(r.peak_memory_bytes), True),
            _td(measured_by(number(r.tokens_per_s, 0), r.latency_engine), _num_attr(r.tokens_per_s), True),
            _td(measured_by(number(r.ttft_ms, 1), r.latency_engine), _num_attr(r.ttft_ms), True),
            _td(measured_by(number(r.ms_per_token, 2), r.latency_engine), _num_attr(r.ms_per_token), True),
            _td(kernels(r.quant_method, r.kernels)),
            _td(diff_points(delta), _num_attr(delta["diff"]) if delta else "", True,
                "sig" if delta and delta["significant"] else ""),
            _td(against(r.baseline, r) if r.baseline else "-"),
            _td("yes" if r.pareto else "", 1 if r.pareto else 0, True),
            _td("yes" if r.latency_pareto else "", 1 if r.latency_pareto else 0, True),
        ]
        link = f'<td data-v=""><a href="#samples-{i}">samples</a></td>' if r.runs[0].samples else '<td data-v="">-</td>'
        cls = f' class="{" ".join(classes)}"' if classes else ""
        body.append(f'<tr data-i="{i}"{cls}>' + "".join(cells) + link + "</tr>")

    filters = []
    for f in FILTERS:
        values = sorted({str(getattr(r, f)) for r in rows})
        options = "".join(f'<option value="{e(v)}">{e(v)}</option>' for v in values)
        filters.append(f'<label>{e(f)} <select data-field="{e(f)}" id="filter-{e(f)}">'
                       f'<option value="">all</option>{options}</select></label>')

    parts = [
        f"<h1>{e(meta.get('title', 'Leaderboard'))}</h1>",
        f'<p class="meta">Generated {e(meta["generated"])} from <code>{e(meta["store"])}</code> with '
        f'<code>{e(meta["command"])}</code> on {e(meta["machine"])}. {e(meta["n_runs"])} complete runs in '
        f"{len(rows)} rows. Click a column header to sort; again to reverse.</p>",
        f'<p class="meta">{e(meta["note"])}</p>' if meta.get("note") else "",
        f'<p class="legend">{e(legend(context_tokens))} Baseline of Δ: {e(meta["baseline"])}. '
        "A bar at the left of a row marks the Pareto front.</p>",
        f'<p class="legend" id="memory-note">{e(axis.note)}</p>' if axis.note else "",
        f'<p class="legend" id="latency-note">{e(latency.note)}</p>' if latency.note else "",
        f'<div class="filters">{"".join(filters)}<span id="shown"></span></div>',
        f'<table id="board"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>',
        _twin_table(rows),
        _bench_table(rows),
    ]
    for heading, png, title, plot_id in (("Accuracy against memory", plot_png, axis.title, "plot-memory"),
                                         ("Accuracy against latency", latency_png, latency.title, "plot-latency")):
        if png is not None and png.exists():
            b64 = base64.b64encode(png.read_bytes()).decode()
            parts.append(f"<h2>{e(heading)}</h2>"
                         f'<img class="plot" id="{plot_id}" alt="accuracy against {e(title)}, Pareto front circled" '
                         f'src="data:image/png;base64,{b64}">')
    parts.append(_samples(rows, n_samples))
    csp = ("default-src 'none'; img-src data:; "
           f"style-src 'sha256-{_sha256(STYLE)}'; script-src 'sha256-{_sha256(SCRIPT)}'; "
           "base-uri 'none'; form-action 'none'")
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{e(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(meta.get('title', 'Leaderboard'))}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(p for p in parts if p)
        + f'\n<script type="application/json" id="leaderboard-data">{json_for_script(data)}</script>'
        + f"\n<script>{SCRIPT}</script>\n</body></html>\n"
    )


def _twin_table(rows: list[Row]) -> str:
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
            f'<td class="n">{e(pct(f.overall.get("accuracy")) if f else "-")}</td>'
            f'<td class="n">{e(pct(r.overall.get("accuracy")))}</td>'
            f'<td class="n{" sig" if da["significant"] else ""}">{e(diff_points(da))}</td>'
            f'<td class="n">{e(reward(f.overall.get("reward")) if f else "-")}</td>'
            f'<td class="n">{e(reward(r.overall.get("reward")))}</td>'
            f'<td class="n{" sig" if dr["significant"] else ""}">{e(diff_reward(dr))}</td>'
            f'<td class="n">{e(da["n"])}</td></tr>'
        )
    head = "".join(f"<th>{e(h)}</th>" for h in ("row", "model", "faithful acc %", "corrected acc %", "Δ acc (pp)",
                                                 "faithful reward", "corrected reward", "Δ reward", "problems"))
    return ("<h2>Faithful vs corrected</h2><p class=\"legend\">Each row with the correct method against the same "
            "row as the reference code runs it (<code>--faithful</code>); Δ = corrected − faithful, paired over "
            f"problems.</p><table id=\"twins\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _bench_table(rows: list[Row]) -> str:
    body = []
    for r in rows:
        if not r.baseline:
            continue
        for bench, d in r.baseline["benchmarks"].items():
            body.append(
                f"<tr><td>{e(r.name)}</td><td>{e(r.model)}</td><td>{e(r.engine)}</td>"
                f"<td>{e(against(r.baseline, r))}</td>"
                f"<td>{e(bench)}</td>"
                f'<td class="n{" sig" if d["accuracy"]["significant"] else ""}">{e(diff_points(d["accuracy"]))}</td>'
                f'<td class="n{" sig" if d["reward"]["significant"] else ""}">{e(diff_reward(d["reward"]))}</td>'
                f'<td class="n">{e(d["accuracy"]["n"])}</td></tr>'
            )
    if not body:
        return ""
    head = "".join(f"<th>{e(h)}</th>" for h in ("row", "model", "engine", "baseline", "benchmark", "Δ acc (pp)",
                                                 "Δ reward", "problems"))
    return ("<h2>Paired differences against the baseline, by benchmark</h2>"
            f"<table id=\"paired\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _samples(rows: list[Row], n: int) -> str:
    if n <= 0:
        return ""
    out = ["<h2>Sample generations</h2>"]
    for i, r in enumerate(rows):
        samples = r.runs[0].samples[:n]
        if not samples:
            continue
        out.append(f'<section id="samples-{i}" class="samples"><h3>{e(r.name)} · {e(r.model)} · '
                   f"{e(r.engine)} · run {e(r.runs[0].id)}</h3>")
        for s in samples:
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
