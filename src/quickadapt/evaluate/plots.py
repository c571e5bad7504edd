"""The plots of `quickadapt report`, each drawn into PNG bytes.

matplotlib's object interface on its Agg canvas, not pyplot: nothing global changes (a notebook's
backend stays its own), no display is needed, and the fonts are the ones matplotlib ships.
Labels are drawn as written: `$` is no mathtext switch here (a class named `$5 fee` would
otherwise be read as a formula, or fail to draw)."""
from __future__ import annotations

import io
import re
import warnings

import numpy as np

MOST_SHOWN = 20  # a confusion matrix over more classes is unreadable: the ones most mixed up
NAME_CHARS = 28  # tick labels cut to this many characters
DOMINANT_BAR = 10  # the confidence histogram's tallest bar, in median bars, past which its counts go on a log axis


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _drawn(draw, *args) -> bytes:
    """`draw(*args)`'s figure as PNG bytes, its text drawn as written (no mathtext, no TeX)."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = _png(draw(*args))
    _note_missing_glyphs(caught)
    return png


def _note_missing_glyphs(caught) -> None:
    """One note for the characters the font lacks (CJK class names in DejaVu Sans show as boxes),
    where matplotlib warned once for each, a screenful for a Chinese label set; other warnings
    are shown as they came."""
    from quickadapt.progress import log

    missing = []
    for w in caught:
        found = re.match(r"Glyph (\d+) .*missing from font", str(w.message))
        if found:
            missing.append(chr(int(found.group(1))))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if missing:
        shown = "".join(dict.fromkeys(missing))
        log(f"note: the plots' font lacks some characters of the class names ({shown[:10]}"
            f"{'...' if len(shown) > 10 else ''}): they show as boxes in the plots; the page's tables name them")


def _short(name: str) -> str:
    name = str(name)
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


def shown_classes(classes: list[str], confusions: list[dict], most: int = MOST_SHOWN) -> list[str]:
    """All `classes` up to `most`; beyond, the ones in the most confused pairs (evaluate's
    `confusions`, the most first), in `classes`' order: the cells worth reading."""
    if len(classes) <= most:
        return list(classes)
    picked: list[str] = []
    for c in confusions:
        for name in (c["label"], c["predicted"]):
            if name not in picked and len(picked) < most:
                picked.append(name)
    order = {name: i for i, name in enumerate(classes)}
    return sorted(picked, key=lambda name: order.get(name, len(order)))


def confusion_matrix_png(truth, answers, classes: list[str], *, abstained: str | None = None, others: bool = False,
                         note: str = "") -> bytes:
    """Rows: the test's class; columns: the answer, then with `others` one column for the answers
    outside `classes` (so that a row still sums to its class's rows), and `abstained`, the
    none-label, where the model abstained. Colour is the share of the row, so a small class's
    mistakes show as a large one's; the counts are written in the cells."""
    return _drawn(_confusion_figure, truth, answers, classes, abstained, others, note)


def _confusion_figure(truth, answers, classes, abstained, others, note):
    truth, answers = np.asarray(truth, dtype=object), np.asarray(answers, dtype=object)
    at = {name: i for i, name in enumerate(classes)}
    abstaining = abstained is not None and bool((answers == abstained).any())
    columns = list(classes) + (["(other classes)"] if others else []) + ([abstained] if abstaining else [])
    counts = np.zeros((len(classes), len(columns)), dtype=int)
    for t, a in zip(truth.tolist(), answers.tolist()):
        if t not in at:
            continue
        if abstaining and a == abstained:
            counts[at[t], -1] += 1
        elif a in at:
            counts[at[t], at[a]] += 1
        elif others:
            counts[at[t], len(classes)] += 1
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    side = max(4.0, 0.42 * len(columns) + 2.5)
    fig = _figure(side + 1.0, max(3.5, 0.42 * len(classes) + 2.0))
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of the row")
    ax.set_xticks(range(len(columns)), [_short(c) for c in columns], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), [_short(c) for c in classes], fontsize=8)
    ax.set_xlabel("answered")
    ax.set_ylabel("test label")
    for i, j in zip(*np.nonzero(counts)):
        ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                color="white" if share[i, j] > 0.6 else "black")
    if note:
        ax.set_title(note, fontsize=9)
    return fig


def confidence_png(scores, right, *, threshold: float | None = None, out_of_scope=None) -> bytes:
    """How sure the model was (each row's top probability), rows whose top class is right and
    wrong stacked, the out-of-scope rows apart; the abstain threshold as a line: what abstaining
    withholds, of each."""
    return _drawn(_confidence_figure, scores, right, threshold, out_of_scope)


def _confidence_figure(scores, right, threshold, out_of_scope):
    scores, right = np.asarray(scores, dtype=float), np.asarray(right, dtype=bool)
    oos = np.zeros(len(scores), dtype=bool) if out_of_scope is None else np.asarray(out_of_scope, dtype=bool)
    fig = _figure(6.5, 3.6)
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 21)
    groups = [(scores[~oos & right], "top class right", "#4c72b0"),
              (scores[~oos & ~right], "top class wrong", "#dd8452")]
    if oos.any():
        groups.append((scores[oos], "out of scope", "#8c8c8c"))
    totals = np.histogram(scores, bins=bins)[0]
    # most rows of a confident model sit in the top bar (445 of 600 digits at 0.95-1.0), and on a
    # linear axis the bars below it, the rows worth a look, are a few pixels high: past
    # DOMINANT_BAR times the median bar the counts go on a log axis, each bar's top readable. There
    # the groups stand side by side: stacked on a log axis, an upper part looks smaller than its count
    dominated = bool(totals.any() and totals.max() > DOMINANT_BAR * np.median(totals[totals > 0]))
    ax.hist([g[0] for g in groups], bins=bins, stacked=not dominated, label=[g[1] for g in groups],
            color=[g[2] for g in groups], log=dominated)
    if dominated:
        from matplotlib.ticker import FuncFormatter

        ax.set_ylim(0.7, totals.max() * 2)  # a bar of one row stands clear of the axis; room for the legend
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 10, 100, not 10^2
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2)
        ax.text(threshold, ax.get_ylim()[1] * 0.95, f" threshold {threshold:.3f}", fontsize=8, va="top")
    ax.set_xlim(0, 1)
    ax.set_xlabel("top probability")
    ax.set_ylabel("test rows (log scale)" if dominated else "test rows")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def validation_curve_png(curve: list, best_step: int | None = None) -> bytes:
    """A meta-training run's validation accuracy by step (`meta.train.validation.curve`)."""
    return _drawn(_curve_figure, curve, best_step)


def _curve_figure(curve, best_step):
    steps, accuracy = zip(*[(s, a) for s, a in curve])
    fig = _figure(6.0, 3.2)
    ax = fig.add_subplot()
    ax.plot(steps, [100 * a for a in accuracy], marker="o", markersize=3)
    if best_step is not None:
        ax.axvline(best_step, color="black", linestyle="--", linewidth=1, label=f"kept: step {best_step}")
        ax.legend(fontsize=8)
    ax.set_xlabel("meta-training step")
    ax.set_ylabel("validation accuracy (%)")
    return fig
