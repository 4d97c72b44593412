"""The plots, read from the matplotlib figures themselves: the scale an axis chose and its label, the x range,
which Pareto fronts are drawn and which the legend names, fronts kept apart by problem set, and the two
divergence plots (reference rows left out, top-k approximations marked)."""

from __future__ import annotations

import pytest
from leaderboard_data import GOOD, KL_W8, WEAK, add_run, build_divergence_store, build_store

from harness.leaderboard.kl_plot import accuracy_kl_figure, kl_memory_figure
from harness.leaderboard.pareto import kl_memory_axis, memory_axis
from harness.leaderboard.plot import CIRCLE, accuracy_figure, log_scale
from harness.leaderboard.reader import open_store
from harness.leaderboard.rows import leaderboard_rows
from harness.runs.store import Store


def rows_of(path, context_tokens: int = 4096):
    store = open_store(path)
    try:
        return leaderboard_rows(store, context_tokens=context_tokens)
    finally:
        store.close()


def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def front_lines(ax) -> dict[str, list[tuple[float, float]]]:
    """Label -> the points of each drawn front line."""
    return {line.get_label(): list(zip(line.get_xdata(), line.get_ydata())) for line in ax.get_lines()
            if line.get_label().startswith("Pareto front")}


@pytest.fixture
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _store(path, weights: list[int], correct: list[set[int]]):
    store = Store(path)
    for bits, (w, c) in zip((8, 4, 3, 2), zip(weights, correct)):
        add_run(store, strategy="rtn", bits=bits, correct=c, weight_bytes=w, kv_bytes_per_token=None)
    store.close()
    return path


def test_memory_axis_is_linear_and_says_so_below_a_decade(tmp_path, close_figures):
    # 10.244 and 10.256 MB: a log axis over this span only mislabels a linear-looking one
    rows = rows_of(_store(tmp_path / "narrow.db", [10_256_000, 10_244_000], [GOOD, WEAK]), context_tokens=0)
    ax = accuracy_figure(rows, memory_axis(rows, 0)).axes[0]
    assert ax.get_xscale() == "linear"
    assert ax.get_xlabel().startswith("weights (MB)") and "log" not in ax.get_xlabel()
    lo, hi = ax.get_xlim()
    assert 10.2 < lo <= 10.244 and 10.256 <= hi < 10.3


def test_memory_axis_is_log_and_says_so_over_a_decade(tmp_path, close_figures):
    rows = rows_of(_store(tmp_path / "wide.db", [13_000_000, 1_000_000], [GOOD, WEAK]), context_tokens=0)
    ax = accuracy_figure(rows, memory_axis(rows, 0)).axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("weights (MB, log scale)")
    lo, hi = ax.get_xlim()
    assert lo <= 1.0 and hi >= 13.0
    assert log_scale([1.0, 9.99]) is False and log_scale([1.0, 10.0]) is True and log_scale([0.0, 5.0]) is False


def test_the_legend_names_only_fronts_that_are_drawn(tmp_path, close_figures):
    rows = rows_of(build_store(tmp_path / "r.db"))
    ax = accuracy_figure(rows, memory_axis(rows)).axes[0]
    lines = front_lines(ax)
    named = [t for t in legend_texts(ax) if t.startswith("Pareto front")]
    assert named and sorted(named) == sorted(lines), "every named front is drawn, every drawn front named"
    for label, points in lines.items():
        assert len(set(points)) >= 2, label
    # the faithful row is alone on its front (preset rlquant): circled, with no line and no legend entry
    circled = sum(len(c.get_offsets()) for c in ax.collections if c.get_label() == CIRCLE)
    assert circled == sum(r.pareto for r in rows) == 4
    assert len(lines) == 1 and named == ["Pareto front (preset default)"]


def test_a_front_of_one_point_is_never_named(tmp_path, close_figures):
    rows = rows_of(_store(tmp_path / "one.db", [13_000_000, 2_000_000], [GOOD, GOOD]), context_tokens=0)
    assert sum(r.pareto for r in rows) == 1, "the smaller row dominates the larger"
    ax = accuracy_figure(rows, memory_axis(rows, 0)).axes[0]
    assert front_lines(ax) == {} and not any(t.startswith("Pareto front") for t in legend_texts(ax))


def test_rows_at_the_same_point_share_one_label(tmp_path, close_figures):
    """llama.cpp writes Q6_K of a narrow model as the very Q8_0 file: the two rows sit on one point, and their
    names are printed once, joined, not one over the other."""
    rows = rows_of(_store(tmp_path / "same.db", [2_000_000, 2_000_000], [GOOD, GOOD]), context_tokens=0)
    assert sum(r.pareto for r in rows) == 2, "neither of two equal rows dominates the other"
    ax = accuracy_figure(rows, memory_axis(rows, 0)).axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert len(labels) == 1 and labels[0].count(" = ") == 1, labels
    assert all(name in labels[0] for name in ("W8", "W4")), labels


@pytest.fixture(scope="module")
def divergence_rows(tmp_path_factory):
    return rows_of(build_divergence_store(tmp_path_factory.mktemp("plots") / "r.db"))


def test_problem_sets_get_separate_fronts_on_the_plot(divergence_rows, close_figures):
    rows = divergence_rows
    ax = accuracy_figure(rows, memory_axis(rows)).axes[0]
    lines = front_lines(ax)
    assert list(lines) == ["Pareto front (hf, 60 problems)"], "the 30-problem front is one row: not named"
    short = next(r for r in rows if r.n_problems == 30 and not r.is_reference)
    drawn_x = {round(x, 3) for x, _ in lines["Pareto front (hf, 60 problems)"]}
    assert round(short.memory_bytes / 1e6, 3) not in drawn_x
    texts = [t.get_text() for t in ax.texts]
    assert any(t.endswith("· 30 problems") for t in texts) and any(t.endswith("· 60 problems") for t in texts)
    assert "different problem sets (30 and 60 problems)" in ax.get_xlabel()


def test_accuracy_against_kl_leaves_references_at_their_accuracy(divergence_rows, close_figures):
    rows = divergence_rows
    ax = accuracy_kl_figure(rows).axes[0]
    assert ax.get_xscale() == "log" and "log scale" in ax.get_xlabel(), "0.002 to 0.3 spans two decades"
    placed_x = [x for container in ax.containers for x in container.lines[0].get_xdata()]
    assert placed_x and min(placed_x) == pytest.approx(KL_W8) and all(x > 0 for x in placed_x)
    references = [line for line in ax.get_lines() if line.get_label() == "reference (KL 0)"]
    assert len(references) == 1 and "reference (KL 0)" in legend_texts(ax)
    levels = {round(line.get_ydata()[0], 6) for line in ax.get_lines() if line.get_linestyle() == ":"}
    assert levels == {90.0, 100.0}, "the 60- and 30-problem references"
    assert "Reference rows (KL 0) are left out" in ax.get_xlabel()
    texts = [t.get_text() for t in ax.texts]
    assert any("vllm" in t and t.endswith("(top-20)") for t in texts)
    assert "Marked (top-20): KL approximated" in ax.get_xlabel()


def test_kl_against_memory_draws_its_front(divergence_rows, close_figures):
    rows = divergence_rows
    axis = kl_memory_axis(rows, memory_axis(rows))
    ax = kl_memory_figure(rows, axis).axes[0]
    assert ax.get_yscale() == "log" and "log scale" in ax.get_ylabel()
    assert ax.get_xscale() == "linear" and "log" not in ax.get_xlabel().splitlines()[0]
    lines = front_lines(ax)
    assert list(lines) == ["Pareto front (hf, 60 problems, KL exact)"]
    front = {r.name + r.options: r for r in rows if r.kl_pareto and r.n_problems == 60 and r.engine == "hf"}
    assert sorted(y for _, y in lines["Pareto front (hf, 60 problems, KL exact)"]) == sorted(r.kl for r in
                                                                                              front.values())
    assert all(not r.kl_pareto for r in rows if r.is_reference)
    assert "Reference rows (KL 0) are left out." in ax.get_xlabel()
