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
from pathlib import Path

from harness.leaderboard import html_parts as parts
from harness.leaderboard.columns import columns
from harness.leaderboard.html_parts import e, json_for_script, num_attr, td
from harness.leaderboard.markdown import DIVERGENCE_LEGEND, PLOT_TEXT, legend
from harness.leaderboard.model import DEFAULT_CONTEXT_TOKENS, Row
from harness.leaderboard.pareto import KLMemoryAxis, LatencyAxis, MemoryAxis, kl_memory_axis, latency_axis, memory_axis

__all__ = ["e", "json_for_script", "render"]

FILTERS = ("model", "trainer", "bits", "engine")

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; }
h1 { margin-bottom: .2rem; }
.meta, .legend { color: #555; max-width: 70rem; }
table { border-collapse: collapse; margin: .8rem 0 1.6rem; }
th, td { border-bottom: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
td { max-width: 16rem; overflow-wrap: break-word; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.nw { white-space: nowrap; }
.scroll { max-width: 100%; overflow-x: auto; }
#board { font-size: 13px; }
#board th, #board td { padding: .2rem .35rem; }
#board th { cursor: pointer; user-select: none; background: #f4f4f4; position: sticky; top: 0; vertical-align: bottom; }
#board:not(.all) .more { display: none; }
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

  var every = document.getElementById("all-columns");
  function applyColumns() { table.classList.toggle("all", every.checked); }
  every.addEventListener("change", applyColumns);
  applyColumns();
})();
"""


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def _jsonable(value):
    """NaN/inf are not JSON: None stands for a figure that could not be computed."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _main_table(rows: list[Row], context_tokens: int) -> str:
    """The sortable table of every row; columns outside the compact view carry class ``more``."""
    cols = columns(rows, context_tokens)
    more = ' class="more"'
    head = '<th data-type="num" scope="col">#</th>' + "".join(
        f'<th data-type="{"num" if c.numeric else "text"}" scope="col"{"" if c.main else more}>{e(c.header)}</th>'
        for c in cols) + '<th data-type="text" scope="col">samples</th>'
    body = []
    for i, r in enumerate(rows):
        cells = [td(str(i + 1), i + 1, True)]
        for c in cols:
            css = " ".join(x for x in (c.css(r) if c.css else "", "" if c.main else "more") if x)
            cells.append(td(c.text(r), num_attr(c.sort(r)) if c.numeric else None, c.numeric, css))
        link = f'<td data-v=""><a href="#samples-{i}">samples</a></td>' if r.runs[0].samples else '<td data-v="">-</td>'
        classes = [c for c in ("pareto" if r.pareto else "", "faithful" if r.variant == "faithful" else "") if c]
        cls = f' class="{" ".join(classes)}"' if classes else ""
        body.append(f'<tr data-i="{i}"{cls}>' + "".join(cells) + link + "</tr>")
    return f'<table id="board"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def render(rows: list[Row], meta: dict, plot_png: Path | None = None, n_samples: int = 3,
           axis: MemoryAxis | None = None, latency_png: Path | None = None,
           latency: LatencyAxis | None = None, kl_axis: KLMemoryAxis | None = None,
           kl_pngs: tuple[Path, Path] | None = None) -> str:
    context_tokens = int(meta.get("context_tokens", DEFAULT_CONTEXT_TOKENS))
    axis = axis or memory_axis(rows, context_tokens)
    latency = latency or latency_axis(rows)
    kl_axis = kl_axis or kl_memory_axis(rows, axis)
    data = _jsonable({"meta": meta, "rows": [r.to_json(n_samples) for r in rows]})

    filters = []
    for f in FILTERS:
        values = sorted({str(getattr(r, f)) for r in rows})
        options = "".join(f'<option value="{e(v)}">{e(v)}</option>' for v in values)
        filters.append(f'<label>{e(f)} <select data-field="{e(f)}" id="filter-{e(f)}">'
                       f'<option value="">all</option>{options}</select></label>')
    filters.append('<label><input type="checkbox" id="all-columns"> every column (how each row was made, '
                   "reward, weights, KV, latency, kernels, KL p99, NLL Δ, tokens / answer)</label>")

    page = [
        f"<h1>{e(meta.get('title', 'Leaderboard'))}</h1>",
        f'<p class="meta">Generated {e(meta["generated"])} from <code>{e(meta["store"])}</code> with '
        f'<code>{e(meta["command"])}</code> on {e(meta["machine"])}. {e(meta["n_runs"])} complete runs in '
        f"{len(rows)} rows. Click a column header to sort; again to reverse.</p>",
        f'<p class="meta">{e(meta["note"])}</p>' if meta.get("note") else "",
        f'<p class="legend">{e(legend(context_tokens))} Baseline of Δ: {e(meta["baseline"])}. '
        "A bar at the left of a row marks the Pareto front.</p>",
        f'<p class="legend">{e(DIVERGENCE_LEGEND)}</p>',
        f'<p class="legend" id="memory-note">{e(axis.note)}</p>' if axis.note else "",
        f'<p class="legend" id="latency-note">{e(latency.note)}</p>' if latency.note else "",
        f'<p class="legend" id="kl-note">{e(kl_axis.note)}</p>' if kl_axis.note and kl_axis.note != axis.note else "",
        f'<div class="filters">{"".join(filters)}<span id="shown"></span></div>',
        f'<div class="scroll">{_main_table(rows, context_tokens)}</div>',
        parts.twin_table(rows),
        parts.bench_table(rows),
        parts.divergence_table(rows),
    ]
    kl_png, kl_memory_png = kl_pngs or (None, None)
    for heading, png, stem, alt, plot_id in (
            ("Accuracy against memory", plot_png, axis.stem, f"accuracy against {axis.title}", "plot-memory"),
            ("Accuracy against latency", latency_png, latency.stem, f"accuracy against {latency.title}",
             "plot-latency"),
            ("Accuracy against KL from the reference", kl_png, "accuracy_vs_kl",
             "accuracy against KL from the reference", "plot-kl"),
            ("KL from the reference against memory", kl_memory_png, kl_axis.stem, kl_axis.title, "plot-kl-memory")):
        if png is not None and png.exists():
            b64 = base64.b64encode(png.read_bytes()).decode()
            page.append(f"<h2>{e(heading)}</h2><p class=\"legend\">{e(PLOT_TEXT[stem])}</p>"
                        f'<img class="plot" id="{plot_id}" alt="{e(alt)}" src="data:image/png;base64,{b64}">')
    page.append(parts.samples(rows, n_samples))
    csp = ("default-src 'none'; img-src data:; "
           f"style-src 'sha256-{_sha256(STYLE)}'; script-src 'sha256-{_sha256(SCRIPT)}'; "
           "base-uri 'none'; form-action 'none'")
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{e(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(meta.get('title', 'Leaderboard'))}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(p for p in page if p)
        + f'\n<script type="application/json" id="leaderboard-data">{json_for_script(data)}</script>'
        + f"\n<script>{SCRIPT}</script>\n</body></html>\n"
    )
