"""The report's figures, drawn by matplotlib as SVG text (small, sharp when printed, text kept as text)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from hftk.report.page import Figure

_STYLE = {
    "svg.fonttype": "none",  # text stays text: a tenth of the size, and searchable
    "svg.hashsalt": "hftk",  # the same figure, the same file
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


class _Drawing:
    """Axes to draw on (`with drawing.axes() as ax`); `figure` is the SVG drawn on them.

    Fixed margins, not tight_layout: laying out again draws every figure twice, a third of a report's time
    (bench/report_speed.py). `tight`: for figures whose tick labels are data (class names), whose width is unknown.
    """

    def __init__(self, name: str, caption: str, size: tuple[float, float], tight: bool = False) -> None:
        self.name, self.caption, self.size, self.tight = name, caption, size, tight
        self.svg = ""

    @property
    def figure(self) -> Figure:
        return Figure(self.name, self.caption, self.svg)

    @contextmanager
    def axes(self) -> Iterator[Any]:
        import matplotlib
        from matplotlib.figure import Figure as Canvas  # no pyplot: no figure manager, nothing left open

        with matplotlib.rc_context(_STYLE):
            fig = Canvas(figsize=self.size)
            ax = fig.add_subplot()
            yield ax
            if self.tight:
                fig.tight_layout()
            else:
                fig.subplots_adjust(left=0.14, right=0.97, bottom=0.2, top=0.95)
            buf = io.StringIO()
            with warnings.catch_warnings():
                # Text stays text in the SVG: the browser draws it in its own fonts, so a glyph matplotlib's font
                # lacks (a Japanese question word) is no loss.
                warnings.filterwarnings("ignore", "Glyph .* missing from font", UserWarning)
                fig.savefig(buf, format="svg", metadata={"Date": None})  # no date: the same report, the same file
        self.svg = buf.getvalue()


def _drawing(name: str, caption: str, size: tuple[float, float] = (4.6, 3.4), tight: bool = False) -> _Drawing:
    return _Drawing(name, caption, size, tight)


def heatmap(name: str, caption: str, matrix: np.ndarray, names: Sequence[str], *, xlabel: str, ylabel: str) -> Figure:
    """A matrix with each cell's value written in it (a confusion matrix, row-normalised)."""
    n = len(names)
    side = min(2.4 + 0.45 * n, 9.0)
    drawing = _drawing(name, caption, (side + 0.8, side), tight=True)
    with drawing.axes() as ax:
        image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(float(np.nanmax(matrix)), 1e-9))
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(n), names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
        ax.set_yticks(range(n), names)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        if n <= 20:
            top = np.nanmax(matrix) or 1
            for i in range(n):
                for j in range(n):
                    v = matrix[i, j]
                    color = "white" if v > top / 2 else "black"
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", color=color, fontsize=7)
    return drawing.figure


def reliability(name: str, caption: str, confidence: np.ndarray, accuracy: np.ndarray) -> Figure:
    """Accuracy against confidence per bin, beside the diagonal a calibrated model would follow."""
    drawing = _drawing(name, caption)
    with drawing.axes() as ax:
        ok = ~np.isnan(accuracy)
        ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="calibrated")
        ax.plot(confidence[ok], accuracy[ok], marker="o", color="tab:blue", label="model")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence (score of the predicted class)", ylabel="accuracy")
        ax.legend(loc="upper left", frameon=False)
    return drawing.figure


def bars(
    name: str,
    caption: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    ylabel: str,
    counts: Sequence[int] | None = None,
) -> Figure:
    """One bar per group (length bucket, answer length, question word), its count written above it."""
    drawing = _drawing(name, caption, (max(4.6, 0.5 * len(labels) + 1.5), 3.4))
    with drawing.axes() as ax:
        heights = np.nan_to_num(np.asarray(values, dtype=float))
        ax.bar(range(len(labels)), heights, color="tab:blue")
        ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 5 else 0, ha="right")
        ax.set(ylabel=ylabel, ylim=(0, max(1.0, float(heights.max(initial=0)) * 1.12)))
        if counts is not None:
            for x, (h, c) in enumerate(zip(heights, counts)):
                ax.text(x, h, f"n={c}", ha="center", va="bottom", fontsize=7)
    return drawing.figure


def scatter(name: str, caption: str, x: np.ndarray, y: np.ndarray, *, xlabel: str, ylabel: str) -> Figure:
    """Predicted against gold, with the line of perfect agreement."""
    drawing = _drawing(name, caption)
    with drawing.axes() as ax:
        ax.scatter(x, y, s=6, alpha=0.5, color="tab:blue", linewidths=0)
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], ls="--", color="gray", lw=1)
        ax.set(xlabel=xlabel, ylabel=ylabel)
    return drawing.figure


def curves(
    name: str,
    caption: str,
    lines: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    xlabel: str,
    ylabel: str,
) -> Figure:
    """One line per name (a label's precision-recall curve)."""
    drawing = _drawing(name, caption, (5.2, 3.8))
    with drawing.axes() as ax:
        for label, (x, y) in list(lines.items())[:12]:  # beyond a dozen lines nobody reads them apart
            ax.plot(x, y, lw=1.2, label=label)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=xlabel, ylabel=ylabel)
        ax.legend(loc="lower left", frameon=False, fontsize=7)
    return drawing.figure


def histogram(name: str, caption: str, values: np.ndarray, *, xlabel: str) -> Figure:
    """How the per-example values spread (ROUGE per summary, perplexity per document)."""
    drawing = _drawing(name, caption)
    with drawing.axes() as ax:
        ax.hist(values[np.isfinite(values)], bins=20, color="tab:blue")
        ax.set(xlabel=xlabel, ylabel="examples")
    return drawing.figure
