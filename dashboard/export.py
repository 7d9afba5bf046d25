"""Self-contained exports of a gallery: one HTML file (thumbnails inline) and a CSV.

The HTML opens from disk on any computer with no server; every text that comes from data
is HTML-escaped, so a title like `<script>` renders as text. In a CSV, a text cell that a
spreadsheet would run as a formula (`=HYPERLINK(…)`, `+1+1`, `@SUM(…)`) gets a leading `'`, as
OWASP advises against CSV injection; numbers stay numbers.
"""

from __future__ import annotations

import base64
import csv
import html
from datetime import datetime

import pandas as pd

CSV_COLUMNS = ["image_id", "split", "true_label", "pred_label", "confidence", "loss", "correct", "artist", "title",
               "date", "annotation_text"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 4px} .filter{color:#555;margin:0 0 16px;font-size:13px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:14px}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:8px;background:#fafafa}
figure img{width:100%;height:auto;display:block;border-radius:3px}
figcaption{font-size:13px;margin-top:6px;line-height:1.35}
.wrong{color:#b00020;font-weight:600} .right{color:#0a7a2f;font-weight:600} .muted{color:#666}
.legend{font-size:13px;margin:0 0 14px}
.note{background:#fff6d6;border-radius:3px;padding:2px 4px;margin-top:4px}
"""


LEGEND = ('<p class="legend">Each tile: <span class="right">true period → model\'s guess</span> (right) or '
          '<span class="wrong">true period → model\'s guess</span> (wrong), then the model\'s confidence: the '
          "probability it gave its guess.</p>")


def gallery_html(title: str, filter_text: str, rows: pd.DataFrame, synthetic: bool = False) -> str:
    """An HTML page of tiles: thumbnail, true → predicted, confidence, artist, title, annotations."""
    e = html.escape
    with_split = "split" in rows and rows["split"].nunique() > 1  # one split for all: the filter line names it
    tiles = []
    for r in rows.itertuples():
        thumb = base64.b64encode(r.thumbnail).decode("ascii") if getattr(r, "thumbnail", None) else ""
        verdict = "right" if r.correct else "wrong"
        split = f" · {e(str(r.split))}" if with_split and isinstance(getattr(r, "split", None), str) else ""
        meta = " · ".join(e(str(v)) for v in (r.artist, r.title, r.date) if isinstance(v, str) and v)
        note = f'<div class="note">{e(r.annotation_text)}</div>' if isinstance(r.annotation_text, str) else ""
        tiles.append(
            f'<figure><img alt="{e(str(r.image_id))}" src="data:image/jpeg;base64,{thumb}">'
            f'<figcaption><span class="{verdict}">{e(str(r.true_label))} → {e(str(r.pred_label))}</span> '
            f"({r.confidence:.0%}{split})<br><span class=\"muted\">{meta}</span>"
            f'<br><span class="muted">{e(str(r.image_id))}</span>{note}</figcaption></figure>'
        )
    banner = "<p><strong>Synthetic demo data</strong>: these are generated pictures, not paintings.</p>" if (
        synthetic) else ""
    return (
        f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{e(title)}</title><style>{_STYLE}</style>"
        f"</head><body><h1>{e(title)}</h1><p class=\"filter\">{e(filter_text)} — {len(rows)} images, exported "
        f"{datetime.now():%Y-%m-%d %H:%M} from Period Eye</p>{banner}{LEGEND}<div class=\"grid\">{''.join(tiles)}</div>"
        "</body></html>"
    )


# OWASP's list of first characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def defuse(value: object) -> object:
    """A text cell a spreadsheet would run as a formula, prefixed with a single quote; anything else as it is."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its text columns defused; numeric columns (a negative number is data) untouched."""
    out = frame.copy()
    for i in range(out.shape[1]):  # by position: a query may repeat a column name
        column = out.iloc[:, i]
        if pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column):
            out.isetitem(i, column.map(defuse))
    return out


def frame_csv(frame: pd.DataFrame) -> bytes:
    """Any table as CSV bytes that a spreadsheet opens without running formulas. Text is quoted: pandas leaves a
    lone carriage return unquoted, and a spreadsheet would start a new row (and a formula) after it."""
    return csv_safe(frame).to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode("utf-8")


def gallery_csv(rows: pd.DataFrame) -> bytes:
    return frame_csv(rows.reindex(columns=CSV_COLUMNS))
