"""The HTML page of ``histexpr report``: inline style, embedded figures, notes.

Everything the page needs is inside it: style inline, figures as base64 PNG
data URIs, no fonts, scripts or styles fetched from anywhere. A small inline
script records after load how many images decoded, as
``<body data-images-decoded="ok/total">``, so browser tests can check rendering.
"""

from __future__ import annotations

import base64
import html

import pandas as pd
from matplotlib.figure import Figure

from histexpr.plot import figure_png

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;
padding:1em 2em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #446;padding-bottom:.2em}h2{margin-top:1.6em;color:#334}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccd;padding:.2em .5em;text-align:right}th{background:#eef}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%;height:auto}figcaption{font-size:.85em;color:#555}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:.3em .8em;font-size:.9em}
pre{background:#f6f6f8;padding:.8em;overflow:auto;font-size:.8em}nav a{margin-right:1em}
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; }
  }
  document.body.dataset.imagesDecoded = ok + "/" + imgs.length;
});
"""


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

    def table(self, df: pd.DataFrame, details: str | None = None) -> None:
        table = df.to_html(index=False, border=0, na_rep="–", float_format=lambda v: f"{v:.4g}")
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
