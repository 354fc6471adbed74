"""Plots of a fusion benchmark: a variant x corruption heatmap and accuracy vs latency."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from eval.benchmark import BenchmarkResult


def _pyplot():  # noqa: ANN202 - matplotlib.pyplot
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def robustness_heatmap(result: BenchmarkResult, path: Path) -> Path:
    """Resilience (corrupted NDS / clean NDS, mean over severities): corruption x variant."""
    from eval.benchmark import table_rows

    plt = _pyplot()
    spec = result.spec
    rows = table_rows(result)
    corr = list(spec.corruptions)
    grid = np.full((len(corr), len(rows)), np.nan)
    for j, r in enumerate(rows):
        for i, c in enumerate(corr):
            if r[c] is not None and r["clean_NDS"]:
                grid[i, j] = r[c] / r["clean_NDS"]
    fig, ax = plt.subplots(figsize=(0.75 * len(rows) + 3.2, 0.28 * len(corr) + 1.8))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0.0, vmax=1.1, aspect="auto")
    ax.set_yticks(range(len(corr)), corr, fontsize=7)
    ax.set_xticks(range(len(rows)), [r["variant"] for r in rows], rotation=40, ha="right",
                  fontsize=7)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=5.5)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="NDS / clean NDS")
    ax.set_title(f"Resilience per corruption ({spec.split}, severities "
                 f"{','.join(map(str, spec.severities))})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def accuracy_latency_scatter(result: BenchmarkResult, path: Path) -> Path:
    """Clean NDS (filled) and mean corrupted NDS (= clean x mRR, hollow) vs median latency."""
    from eval.benchmark import table_rows

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for r in table_rows(result):
        x, y = r["median_latency_ms"], r["clean_NDS"]
        if x is None or y is None or not np.isfinite(x):
            continue
        ax.scatter([x], [y], s=36, color="tab:blue", zorder=3)
        mrr = r["mRR"]
        if mrr is not None and np.isfinite(mrr):
            ax.scatter([x], [y * mrr], s=36, facecolors="none", edgecolors="tab:red", zorder=3)
            ax.plot([x, x], [y, y * mrr], color="0.7", lw=0.8, zorder=2)
        ax.annotate(r["variant"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.scatter([], [], s=36, color="tab:blue", label="clean NDS")
    ax.scatter([], [], s=36, facecolors="none", edgecolors="tab:red",
               label="mean NDS under corruption (clean x mRR)")
    ax.set_xlabel("median latency per frame, ms (this machine, CPU)")
    ax.set_ylabel("NDS")
    ax.set_title(f"Accuracy vs latency ({result.spec.split})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
