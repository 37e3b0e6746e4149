"""Tables and figures the experiment chapters share: one look for both arms.

The chapters call these on the tidy frames the experiment functions return (one row per
method and seed). Plotting lives here, outside the solver maths, which never imports it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd

from eraserbook.palette import METHOD_COLORS, METHOD_LABELS, METHOD_ORDER


def ordered_methods(frame: pd.DataFrame) -> list[str]:
    """The methods present in ``frame``, in the book's order."""
    present = set(frame["method"])
    return [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))


def summary_table(frame: pd.DataFrame, metrics: dict[str, str], digits: int = 3) -> pd.DataFrame:
    """Mean ± standard deviation over seeds of each metric, one row per method.

    Args:
        frame: Tidy results with columns ``method``, ``seed`` and the metrics.
        metrics: Column → header to show (in that order); missing columns are skipped.
        digits: Decimals.

    Returns:
        A frame of strings indexed by method label (for display and CSV).
    """
    rows = {}
    for method in ordered_methods(frame):
        part = frame[frame["method"] == method]
        row = {}
        for column, header in metrics.items():
            if column not in part or part[column].isna().all():
                row[header] = "—"
                continue
            values = part[column].dropna()
            spread = f" ± {values.std(ddof=1):.{digits}f}" if len(values) > 1 else ""
            row[header] = f"{values.mean():.{digits}f}{spread}"
        rows[METHOD_LABELS.get(method, method)] = row
    table = pd.DataFrame(rows).T
    table.index.name = "method"
    return table


def compact(table: pd.DataFrame, caption: str | None = None):
    """``table`` for display with each cell on one line ("0.512 ± 0.013" never breaks).

    Row labels (settings, methods) may wrap; the values may not, so a table fits the text column
    when it has few columns — split a wide table by topic rather than let it scroll sideways.

    Returns:
        A pandas ``Styler`` (what the notebook shows); the frame itself is what goes to CSV.
    """
    styled = table.style.set_table_styles([{"selector": "td", "props": [("white-space", "nowrap")]}])
    styled = styled.set_table_attributes('class="dataframe eraser-compact"')
    return styled.set_caption(caption) if caption else styled


def folded(table: pd.DataFrame, summary: str):
    """Bookkeeping (how many seeds ran, ...) folded away: a ``<details>`` the reader opens.

    Returns:
        An ``IPython.display.HTML`` object.
    """
    from IPython.display import HTML

    return HTML(f"<details><summary>{html.escape(summary)}</summary>\n{table.to_html()}\n</details>")


def method_means(frame: pd.DataFrame, column: str) -> dict[str, float]:
    """Mean of ``column`` over seeds, by method key."""
    return frame.groupby("method")[column].mean().to_dict()


def plot_by_method(frame: pd.DataFrame, column: str, ax, label: str, log: bool = False,
                   methods: Sequence[str] | None = None, *, title: str | None = None) -> None:
    """Each seed as a point and the mean as a bar, one colour per method (the book's palette).

    ``label`` goes on the y axis; with ``title`` it heads the panel instead and the y axis stays
    bare (panel titles read better than long rotated labels in a grid of panels).
    """
    import seaborn as sns

    methods = [m for m in (methods or ordered_methods(frame)) if m in set(frame["method"])]
    data = frame[frame["method"].isin(methods)].assign(
        label=lambda f: f["method"].map(lambda m: METHOD_LABELS.get(m, m)))
    order = [METHOD_LABELS.get(m, m) for m in methods]
    palette = {METHOD_LABELS.get(m, m): METHOD_COLORS.get(m, "#333333") for m in methods}
    sns.barplot(data=data, x="label", y=column, hue="label", order=order, hue_order=order, palette=palette,
                errorbar=None, alpha=0.35, legend=False, ax=ax)
    sns.stripplot(data=data, x="label", y=column, hue="label", order=order, hue_order=order, palette=palette,
                  size=6, jitter=0.15, legend=False, ax=ax)
    ax.set(xlabel="", ylabel="" if title else label)
    if title:
        ax.set_title(title, fontsize="medium")
    if log:
        ax.set_yscale("log")
    ax.tick_params(axis="x", rotation=25)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
