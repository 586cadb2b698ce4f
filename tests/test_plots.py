"""The run figures: learning curves cropped to the steps run with one mean line and band per
model, ROC/PR mean curves with bands on a common grid, and the HTML report of a folder."""
from __future__ import annotations

import numpy as np
import pytest

from mingle_bench.report import plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_learning_curves_crop_to_the_steps_run_and_draw_one_mean_per_model(tmp_path):
    curves = {("mingle", 0): [[10, 0.2], [20, 0.3], [30, 0.25]],
              ("mingle", 1): [[10, 0.4], [20, 0.5]],                    # stopped earlier
              ("retain", 0): [[10, 0.1], [20, 0.2], [30, 0.3], [40, 0.35]],
              ("retain", 1): [[10, 0.1], [20, 0.2], [30, 0.3], [40, 0.35], [50, 0.3]],
              ("gram", 0): [[10, 0.3]],                                  # one seed: a line, no band
              ("logreg", 0): [[0, 0.22]], ("logreg", 1): [[0, 0.24]]}   # solver fits: a flat line
    fig = plots.plot_learning_curves(curves, tmp_path / "lc.png", "aupr", "t", max_steps=1000)
    assert (tmp_path / "lc.png").read_bytes()[:8] == PNG
    assert fig.path == tmp_path / "lc.png" and plots.Path(fig) == tmp_path / "lc.png"
    assert fig.xlim[0] == 0 and 50 < fig.xlim[1] <= 50 * (1 + plots.X_MARGIN) + 1e-9  # not the budget of 1000
    assert fig.lines == 4 and fig.bands == 2   # mingle, retain (bands), gram, logreg


def test_learning_curves_show_the_budget_when_a_cell_reached_it(tmp_path):
    fig = plots.plot_learning_curves({("mingle", 0): [[5, 0.1], [10, 0.2]]}, tmp_path / "lc.png", "brier", "t",
                                     max_steps=10)
    assert fig.xlim[1] > 10 and (fig.lines, fig.bands) == (1, 0)


def test_mean_curve_averages_the_seeds_still_running():
    steps, mean, sd, n = plots.mean_curve([[[1, 0.2], [2, 0.4]], [[1, 0.4]], [[1, 0.6], [2, float("nan")]]])
    assert steps.tolist() == [1, 2] and n.tolist() == [3, 1]
    assert mean == pytest.approx([0.4, 0.4]) and sd == pytest.approx([0.2, 0.0])


def test_pr_on_grid_is_the_average_precision_step_curve():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.3 * y + rng.random(400), 0, 1)
    grid = np.linspace(0, 1, 20001)
    prec = plots.pr_on_grid(y, p, grid)
    assert np.trapezoid(prec, grid) == pytest.approx(average_precision_score(y, p), abs=2e-3)
    tpr = plots.roc_on_grid(y, p, grid)
    assert tpr[0] == 0 and tpr[-1] == 1 and np.all(np.diff(tpr) >= 0)


def test_roc_pr_draw_a_mean_and_a_band_per_model(tmp_path):
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.1).astype(np.int8)
    probs = {"mingle": {s: rng.random(300) + 0.5 * y for s in range(3)},
             "logreg": {0: rng.random(300)}}  # one seed: a mean line, no band
    fig = plots.plot_curves(y, probs, tmp_path / "curves.png", "t", names={"mingle": "MINGLE"})
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG
    assert (fig.lines, fig.bands) == (4, 2)  # per panel (ROC, PR): 2 means, 1 band


def test_markdown_to_html_renders_our_table_markdown():
    from mingle_bench.report.html import markdown_to_html

    md = ("# Title <x>\n\n> **NOTE**: few\n\n- a: `cmd --x`\n- b\n\n| Model | AUROC |\n|---|---|\n| MINGLE | **70.1** |\n\n"
          "See [lc](learning_curves.png) and [docs](https://example.org/x).\n")
    out = markdown_to_html(md, {"learning_curves.png": "fig-lc"})
    assert "<h1>Title &lt;x&gt;</h1>" in out and "<blockquote><strong>NOTE</strong>: few</blockquote>" in out
    assert "<li>a: <code>cmd --x</code></li>" in out and "<th>Model</th>" in out
    assert "<td><strong>70.1</strong></td>" in out and "---" not in out
    assert '<a href="#fig-lc">lc</a>' in out and "example.org" not in out and "docs" in out


def test_run_writes_a_self_contained_html_report(fakes, tmp_path):
    import base64
    import re

    from mingle_bench import runner

    s = runner.run_benchmark(runner.RunConfig(task="mortality", data="synthetic:small", models=("mingle", "retain"),
                                              seeds=[0, 1], out=str(tmp_path), progress=False, reference=None,
                                              n_boot=20))
    page = (s.folder / "report.html").read_text(encoding="utf-8")
    assert s.folder / "report.html" in s.files
    assert "<table>" in page and "MINGLE" in page and "RETAIN" in page
    images = re.findall(r'src="([^"]*)"', page)
    assert len(images) == 2 and all(src.startswith("data:image/png;base64,") for src in images)
    assert base64.b64decode(images[0].split(",", 1)[1])[:8] == PNG
    assert (base64.b64decode(images[0].split(",", 1)[1]) == (s.folder / "curves.png").read_bytes())
    # self-contained: nothing fetched, nothing linked outside the page
    assert not re.search(r"https?:|<script|<link|@import|url\(", page)
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', page))
