"""The HTML page of ``histexpr report``: inline style, embedded figures, notes.

Everything the page needs is inside it: style inline, figures as base64 PNG
data URIs, no fonts, scripts or styles fetched from anywhere. A small inline
script records after load how many images decoded, as
``<body data-images-decoded="ok/total">``, and the page's scroll width as
``data-page-width`` (wider than the window: something overflows), so browser tests can
check rendering.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from histexpr.plot import figure_png

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;
padding:1em 2em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #446;padding-bottom:.2em}h2{margin-top:1.6em;color:#334}
.scroll{overflow-x:auto;max-width:100%;margin:.5em 0}
table{border-collapse:collapse;font-size:.85em}
th,td{border:1px solid #ccd;padding:.2em .5em;text-align:left;white-space:nowrap}
th.num,td.num{text-align:right}
th{background:#eef}
tr.best td{font-weight:bold;background:#fff3d6}
figure{margin:1em 0}img{max-width:100%;height:auto}figcaption{font-size:.85em;color:#555}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:.3em .8em;font-size:.9em}
pre{background:#f6f6f8;padding:.8em;overflow:auto;font-size:.8em}
nav{display:flex;flex-wrap:wrap;gap:.2em 1em}
@media (max-width:600px){body{padding:.5em .8em}h1{font-size:1.3em}}
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; }
  }
  document.body.dataset.imagesDecoded = ok + "/" + imgs.length;
  document.body.dataset.pageWidth = document.documentElement.scrollWidth;
});
"""


def format_value(value, digits: int = 4) -> str:
    """A table cell: floats with ``digits`` significant digits, NaN and None as "–"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        if value.is_integer() and abs(value) < 1e15 and abs(value) >= 10 ** (digits - 1):
            return str(int(value))  # counts stay whole: 12345, not 1.234e+04
        return f"{value:.{digits}g}"
    return str(value)


class Page:
    """HTML under construction: sections, tables, embedded figures and notes."""

    def __init__(self):
        self.body: list[str] = []
        self.toc: list[tuple[str, str]] = []
        self.figure_kinds: list[str] = []

    def section(self, anchor: str, title: str) -> None:
        self.toc.append((anchor, title))
        self.body.append(f'<h2 id="{anchor}">{html.escape(title)}</h2>')

    def note(self, text: str) -> None:
        self.body.append(f'<p class="note">{html.escape(text, quote=False)}</p>')

    def text(self, text: str) -> None:
        self.body.append(f"<p>{html.escape(text, quote=False)}</p>")

    def pre(self, text: str) -> None:
        self.body.append(f"<pre>{html.escape(text, quote=False)}</pre>")

    def table(
        self,
        df: pd.DataFrame,
        details: str | None = None,
        bold: Sequence[bool] | None = None,
        digits: int = 4,
    ) -> None:
        """A table that scrolls sideways on narrow screens.

        Parameters
        ----------
        df : pd.DataFrame
            Shown without its index; floats with ``digits`` significant digits, NaN as "–".
        details : str, optional
            Collapsed under this summary.
        bold : sequence of bool, optional
            Rows to show in bold (``<tr class="best">``), e.g. the best model per group.
        """
        bold = [False] * len(df) if bold is None else [bool(b) for b in bold]
        if len(bold) != len(df):
            raise ValueError(f"bold has {len(bold)} entries for {len(df)} rows")
        # numeric columns right-aligned; text (names, paths) left, so it shows when scrolled
        num = [
            ' class="num"'
            if pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t)
            else ""
            for t in df.dtypes
        ]
        head = "".join(
            f"<th{k}>{html.escape(str(c))}</th>" for c, k in zip(df.columns, num, strict=True)
        )
        rows = []
        for best, values in zip(bold, df.itertuples(index=False, name=None), strict=True):
            cells = "".join(
                f"<td{k}>{html.escape(format_value(v, digits))}</td>"
                for v, k in zip(values, num, strict=True)
            )
            rows.append(f'<tr class="best">{cells}</tr>' if best else f"<tr>{cells}</tr>")
        table = (
            f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>"
        )
        if details:
            table = f"<details><summary>{html.escape(details)}</summary>{table}</details>"
        self.body.append(table)

    def figure(self, fig: Figure, kind: str, caption: str) -> None:
        data = base64.b64encode(figure_png(fig)).decode("ascii")
        self.figure_kinds.append(kind)
        self.body.append(
            f'<figure data-kind="{kind}"><img alt="{html.escape(caption)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'
        )

    def render(self, title: str) -> str:
        nav = " ".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in self.toc)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
            f"<script>{_SCRIPT}</script></head>\n<body><h1>{html.escape(title)}</h1>"
            f"<nav>{nav}</nav>\n" + "\n".join(self.body) + "\n</body></html>\n"
        )
