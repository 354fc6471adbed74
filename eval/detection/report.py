"""Human-readable outputs of a detection evaluation: markdown summary and plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from eval.detection.config import TP_METRIC_ABBREVIATIONS, TP_METRIC_UNITS, TP_METRICS
from eval.detection.data import DetectionMetricsSummary


def _fmt(v: float, digits: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def markdown_summary(summary: DetectionMetricsSummary, title: str = "Detection metrics") -> str:
    """The metrics as a markdown page: headline, TP errors, per-class table, settings."""
    cfg = summary.config
    lines = [f"# {title}", ""]
    lines += [
        f"**mAP {_fmt(summary.mean_ap)} | NDS {_fmt(summary.nd_score)}**",
        "",
        "| " + " | ".join(TP_METRIC_ABBREVIATIONS[m] for m in TP_METRICS) + " |",
        "|" + "---:|" * len(TP_METRICS),
        "| " + " | ".join(_fmt(summary.tp_errors[m]) for m in TP_METRICS) + " |",
        "",
        "## Per class",
        "",
    ]
    ths = list(cfg.dist_ths_m)
    head = (
        ["class", "GT", "pred", "AP"]
        + [f"AP@{th:g}m" for th in ths]
        + [f"{TP_METRIC_ABBREVIATIONS[m][1:]} ({TP_METRIC_UNITS[m]})" for m in TP_METRICS]
    )
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|---|" + "---:|" * (len(head) - 1))
    for c in cfg.class_names:
        row = [
            c,
            str(summary.num_gt.get(c, "")),
            str(summary.num_pred.get(c, "")),
            _fmt(summary.mean_dist_aps[c], 3),
        ]
        row += [_fmt(summary.label_aps[c][th], 3) for th in ths]
        row += [_fmt(summary.label_tp_errors[c][m], 3) for m in TP_METRICS]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "TP errors are measured on matches at "
        f"{cfg.dist_th_tp_m:g} m; n/a = not defined for the class (cones: no heading, "
        "velocity or attribute; barriers: no velocity or attribute).",
        "",
        "## Settings",
        "",
        f"- matching: {cfg.dist_fcn}, thresholds {', '.join(f'{t:g}' for t in ths)} m",
        f"- min recall {cfg.min_recall:g}, min precision {cfg.min_precision:g}, "
        f"mAP weight in NDS {cfg.mean_ap_weight:g}",
        "- class ranges: " + ", ".join(f"{c} {r:g} m" for c, r in cfg.class_range_m),
        "- inputs used (meta): "
        + (", ".join(f"{k}={v}" for k, v in summary.meta.items()) or "not stated"),
        f"- evaluation time: {summary.eval_time_s:.2f} s",
        "",
    ]
    return "\n".join(lines)


def condition_table(groups: dict[str, tuple[int, DetectionMetricsSummary]]) -> str:
    """Markdown table of per-condition metrics (``evaluate_by_condition``'s output)."""
    lines = [
        "| condition | samples | mAP | NDS | "
        + " | ".join(TP_METRIC_ABBREVIATIONS[m] for m in TP_METRICS)
        + " |",
        "|---|" + "---:|" * (3 + len(TP_METRICS)),
    ]
    for name, (n, s) in groups.items():
        cells = [name, str(n), _fmt(s.mean_ap), _fmt(s.nd_score)]
        cells += [_fmt(s.tp_errors[m], 3) for m in TP_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(summary: DetectionMetricsSummary, out_dir: str | Path) -> list[Path]:
    """PR curves (per class, all thresholds; all classes at the TP threshold) and TP-error
    curves per class, as PNG files. Uses matplotlib's Agg canvas (no display needed).
    """
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = summary.config
    paths: list[Path] = []

    def save(fig: Figure, name: str) -> None:
        path = out / f"{name}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        paths.append(path)

    # All classes at the TP threshold.
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    for c in cfg.class_names:
        md = summary.curves[(c, cfg.dist_th_tp_m)]
        ax.plot(
            md.recall, md.precision, label=f"{c} (AP {summary.label_aps[c][cfg.dist_th_tp_m]:.2f})"
        )
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.05),
        title=f"precision-recall at {cfg.dist_th_tp_m:g} m",
    )
    ax.axvline(cfg.min_recall, ls="--", c="gray", lw=0.8)
    ax.axhline(cfg.min_precision, ls="--", c="gray", lw=0.8)
    ax.legend(fontsize=7, loc="upper right")
    save(fig, "pr_all_classes")

    for c in cfg.class_names:
        fig = Figure(figsize=(11, 4))
        ax_pr, ax_tp = fig.subplots(1, 2)
        for th in cfg.dist_ths_m:
            md = summary.curves[(c, th)]
            ax_pr.plot(
                md.recall, md.precision, label=f"{th:g} m (AP {summary.label_aps[c][th]:.2f})"
            )
        ax_pr.set(
            xlabel="recall",
            ylabel="precision",
            xlim=(0, 1),
            ylim=(0, 1.05),
            title=f"{c}: precision-recall",
        )
        ax_pr.legend(fontsize=8)
        md = summary.curves[(c, cfg.dist_th_tp_m)]
        last = md.max_recall_index
        for m in TP_METRICS:
            err = summary.label_tp_errors[c][m]
            if math.isnan(err):
                continue
            curve = getattr(md, m)
            sl = slice(cfg.first_curve_index, last + 1)
            ax_tp.plot(
                md.recall[sl],
                np.asarray(curve)[sl],
                label=f"{TP_METRIC_ABBREVIATIONS[m][1:]} {err:.2f} {TP_METRIC_UNITS[m]}",
            )
        ax_tp.set(
            xlabel="recall",
            ylabel="error",
            xlim=(0, 1),
            title=f"{c}: TP errors at {cfg.dist_th_tp_m:g} m",
        )
        ax_tp.legend(fontsize=8)
        save(fig, f"{c}_pr_tp")
    return paths
