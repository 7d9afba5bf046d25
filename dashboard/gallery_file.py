"""The exported gallery as one self-explaining HTML file: what the model is, how good it is, what a tile shows, the
confusion matrix, per tile the saliency maps and verdict buttons whose answers download as a CSV.

Pure: it renders a `Gallery` the caller assembled (dashboard.export) and reads nothing from the store. The file
opens from disk with no server and asks nothing of the network (a Content-Security-Policy forbids it). Every text
from data is HTML-escaped; what the page's script needs is in a JSON block escaped so that no data can close it.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources

import pandas as pd

from dashboard.text import METHOD_ABOUT, in_method_order, method_name
from pipeline.annotations import FORMAT, VERDICTS  # the importer's: the file and the store agree

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "form-action 'none'; base-uri 'none'")


@dataclass(frozen=True)
class Overlay:
    method: str
    jpeg: bytes  # the map blended over the thumbnail


@dataclass
class Gallery:
    """Everything the file shows. `tiles` rows: image_id, content_hash, true_label, pred_label, confidence, split,
    artist, title, date, path, thumbnail (JPEG bytes) and optionally verdict/note/author (already in Period Eye)."""

    title: str
    run_id: str
    export_id: str
    made_at: datetime
    model: str  # the model in words (dashboard.model_words)
    periods: list[str]  # chronological
    filter_words: str
    tiles: pd.DataFrame
    metrics: dict[str, float] = field(default_factory=dict)  # accuracy, balanced_accuracy, macro_f1, n
    metrics_split: str = "test"
    confusion: pd.DataFrame | None = None  # true_label, pred_label, count
    confusion_split: str = "test"
    overlays: dict[str, list[Overlay]] = field(default_factory=dict)
    experts: dict[str, float] | None = None  # a verdicts.expert_summary row
    include_paths: bool = False
    synthetic: bool = False


def e(value: object) -> str:
    """Text from data as HTML (quotes too: it also goes into attributes)."""
    return html.escape("" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value))


def script_json(data: object) -> str:
    """JSON safe inside <script>: no '<', '>' or '&' survives as such, so no text can end the block."""
    return (json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def asset(name: str) -> str:
    return resources.files("dashboard").joinpath("assets", name).read_text(encoding="utf-8")


def data_uri(jpeg: bytes | None) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg or b"").decode("ascii")


def percent(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.0%}"


def anchor(index: int) -> str:
    return f"label-{index}"


def span(values: dict, key: str, fmt: str = ".0%") -> str:
    """'77–85%' from `<key>_low/_high` (a 95 % interval), or '' when the export has none."""
    low, high = values.get(f"{key}_low"), values.get(f"{key}_high")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f"{format(low, fmt).rstrip('%')}–{format(high, fmt)}"


def between(values: dict, key: str, fmt: str = ".0%") -> str:
    """' (95 % interval 77–85%)', or '' when the export has none."""
    shown = span(values, key, fmt)
    return f" (95 % interval {shown})" if shown else ""


def header(g: Gallery) -> str:
    m = g.metrics
    n = f" {int(m['n']):,}" if "n" in m else ""
    chance = (" The intervals say how far chance alone could move each number with this many paintings: a "
              "difference between two models smaller than that may be no difference at all."
              if m.get("accuracy_low") is not None else "")
    scores = (f"On its{n} {e(g.metrics_split)} paintings, which it never saw in training, the model's guess is right "
              f"<b>{percent(m.get('accuracy'))}</b> of the time (accuracy){between(m, 'accuracy')}; averaged period "
              f"by period, so that small periods count as much as large ones, "
              f"<b>{percent(m.get('balanced_accuracy'))}</b> (balanced accuracy){between(m, 'balanced_accuracy')}; "
              f"macro-F1 <b>{m['macro_f1']:.2f}</b>{between(m, 'macro_f1', '.2f')} (0 to 1, higher is better, all "
              f"periods equal).{chance}"
              if m.get("macro_f1") is not None else "No test metrics are stored for this run.")
    periods = " → ".join(f"<span class=\"period\">{e(p)}</span>" for p in g.periods)
    synthetic = ('<p class="warn"><b>Synthetic demo data</b>: these are generated pictures, not paintings.</p>'
                 if g.synthetic else "")
    return (f"<header><h1>{e(g.title)}</h1>"
            f"<p class=\"model\"><b>The model:</b> {e(g.model)}</p><p>{scores}</p>"
            f"<p><b>The periods it knows</b>, oldest first: {periods}</p>"
            f"<p class=\"filter\"><b>This gallery:</b> {e(g.filter_words)} ({len(g.tiles):,} images).</p>"
            f"{experts(g)}{synthetic}"
            f"<p class=\"small\">Made {g.made_at:%Y-%m-%d %H:%M} UTC by Period Eye · run {e(g.run_id)} · "
            f"export {e(g.export_id)}</p></header>")


def experts(g: Gallery) -> str:
    """The experts' verdicts so far on this run's test errors, when there are any."""
    x = g.experts
    if not x or not x.get("reviewed_errors"):
        return ""
    bounds = (f" (95 % intervals {span(x, 'accuracy_if_experts_right')} and {span(x, 'accuracy')})"
              if span(x, "accuracy") and span(x, "accuracy_if_experts_right") else "")
    after = (f"; if the experts are right, the model's accuracy is {percent(x.get('accuracy_if_experts_right'))} "
             f"instead of {percent(x.get('accuracy'))}{bounds}" if x.get("accuracy_if_experts_right") is not None
             else "")
    return (f"<p class=\"experts\"><b>Experts so far</b> have judged {int(x['reviewed_errors']):,} of the model's "
            f"{int(x.get('errors') or 0):,} test errors: {int(x.get('label_wrong') or 0):,} label wrong, "
            f"{int(x.get('model_right') or 0):,} model right, {int(x.get('ambiguous') or 0):,} ambiguous, "
            f"{int(x.get('outside') or 0):,} outside its period{after}.</p>")


def legend(g: Gallery) -> str:
    methods = "".join(f"<li><b>{method_name(m)}</b>: {METHOD_ABOUT[m]}.</li>" for m in in_method_order(METHOD_ABOUT))
    return ("<section class=\"legend\" id=\"legend\"><h2>How to read a tile</h2><ul>"
            "<li><b>Label</b>: the period the collection's catalogue gives the painting.</li>"
            "<li><b>Model's guess</b>: the period the model chose, in <span class=\"right\">green</span> when it "
            "matches the label and <span class=\"wrong\">red</span> when it does not.</li>"
            "<li><b>Sure</b>: the model's confidence, the probability it gave its guess (all periods add up to "
            "100%). A wrong guess made with high confidence is the most interesting: either the label or the model "
            "is wrong.</li>"
            "<li><b>Tap a picture</b> to see what the model looked at: each map colours the parts of the painting "
            "that drove its guess, from none (the painting shows through) through red and yellow to white "
            f"(strongest). Each map is scaled to its own strongest pixels.<ul>{methods}</ul></li>"
            "<li><b>Your verdict</b>: model right (its guess is defensible for this painting), label "
            "wrong, ambiguous, or outside its period (the painting belongs to none of these). Add a note if you "
            "like. Verdicts stay in this browser; <b>Download my verdicts</b> saves them as a file to send back."
            "</li></ul></section>")


def confusion_table(g: Gallery) -> str:
    """Counts, rows = label, columns = guess, chronological; a row's label links to its tiles below."""
    if g.confusion is None or g.confusion.empty:
        return ""
    grid = g.confusion.pivot_table(index="true_label", columns="pred_label", values="count", aggfunc="sum",
                                   fill_value=0).reindex(index=g.periods, columns=g.periods, fill_value=0)
    shown = set(g.tiles["true_label"])
    head = "".join(f"<th scope=\"col\">{e(p)}</th>" for p in g.periods)
    rows = []
    for i, label in enumerate(g.periods):
        name = f"<a href=\"#{anchor(i)}\">{e(label)}</a>" if label in shown else e(label)
        cells = "".join(f"<td class=\"{'diag' if label == guess else 'off' if n else ''}\">{int(n)}</td>"
                        for guess, n in grid.loc[label].items())
        rows.append(f"<tr><th scope=\"row\">{name}</th>{cells}</tr>")
    return (f"<section id=\"confusion\"><h2>Where the model goes wrong ({e(g.confusion_split)} paintings)</h2>"
            "<p class=\"small\">Rows: the label; columns: the model's guess. The diagonal counts right guesses. "
            "A linked label jumps to its paintings in this gallery.</p><div class=\"scroll\"><table>"
            f"<thead><tr><th>label ↓ · guess →</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            "</section>")


def tile(g: Gallery, n: int, r: pd.Series) -> str:
    outcome = "right" if r["true_label"] == r["pred_label"] else "wrong"
    meta = " · ".join(e(v) for v in (r.get("title"), r.get("artist"), r.get("date")) if isinstance(v, str) and v)
    path = f"<div class=\"path\">{e(r.get('path'))}</div>" if g.include_paths and isinstance(r.get("path"), str) else ""
    split = f" · {e(r['split'])} split" if g.tiles["split"].nunique() > 1 else ""
    known = ""
    if isinstance(r.get("verdict"), str):
        note = f": {e(r.get('note'))}" if isinstance(r.get("note"), str) and r.get("note") else ""
        known = f"<div class=\"known\">In Period Eye already: {e(r['verdict'])}{note} ({e(r.get('author'))})</div>"
    maps = g.overlays.get(str(r["image_id"]), [])
    details = ""
    if maps:
        cells = "".join(
            f"<div class=\"map\"><img loading=\"lazy\" alt=\"{e(method_name(o.method))}\" "
            f"src=\"{data_uri(o.jpeg)}\"><b>{e(method_name(o.method))}</b>"
            f"<span>{e(METHOD_ABOUT.get(o.method, 'a saliency map'))}</span></div>" for o in maps)
        details = (f"<details class=\"maps\"><summary>What the model looked at ({len(maps)} maps, for its guess "
                   f"{e(r['pred_label'])})</summary><div class=\"mapgrid\">{cells}</div></details>")
    buttons = "".join(f"<button type=\"button\" data-verdict=\"{e(v)}\" aria-pressed=\"false\">{e(v)}</button>"
                      for v in VERDICTS)
    options = "".join(f"<option value=\"{e(p)}\">{e(p)}</option>" for p in g.periods if p != r["true_label"])
    corrected = ("<label class=\"corrected\" hidden>The right period <select class=\"corrected\">"
                 f"<option value=\"\">not sure</option>{options}</select></label>")
    alt = e(r.get("title") if isinstance(r.get("title"), str) else "painting")
    return (f"<figure class=\"tile is-{outcome}\" data-n=\"{n}\">"
            f"<button type=\"button\" class=\"thumb\" title=\"Show what the model looked at\"><img alt=\"{alt}\" "
            f"src=\"{data_uri(r.get('thumbnail'))}\"></button><figcaption>"
            f"<div><span class=\"k\">Label</span> {e(r['true_label'])}</div>"
            f"<div class=\"guess\"><span class=\"k\">Model's guess</span> <span class=\"{outcome}\">"
            f"{e(r['pred_label'])}</span> · <span class=\"nw\">{percent(r['confidence'])} sure</span>{split}</div>"
            f"<div class=\"meta\">{meta}</div>{path}{known}</figcaption>{details}"
            f"<div class=\"verdict\" role=\"group\" aria-label=\"Your verdict\">{buttons}{corrected}"
            "<input type=\"text\" class=\"note\" placeholder=\"note (optional)\" aria-label=\"Note\" "
            "maxlength=\"5000\">"
            "</div></figure>")


def sections(g: Gallery) -> str:
    """The tiles grouped by label, periods in chronological order (the confusion table's rows link here); within a
    label, the filter's order."""
    known = [p for p in g.periods if p in set(g.tiles["true_label"])]
    others = [p for p in dict.fromkeys(g.tiles["true_label"]) if p not in known]
    out = []
    for label in known + others:
        group = g.tiles[g.tiles["true_label"] == label]
        where = f" id=\"{anchor(g.periods.index(label))}\"" if label in g.periods else ""
        out.append(f"<section class=\"group\"{where}><h2>Label: {e(label)} <span class=\"small\">({len(group):,} "
                   f"images)</span></h2><div class=\"grid\">{''.join(tile(g, int(n), r) for n, r in group.iterrows())}"
                   "</div></section>")
    return "".join(out)


def toolbar() -> str:
    return ("<div class=\"bar\" id=\"review\"><label>Your name <input type=\"text\" id=\"reviewer\" "
            "autocomplete=\"name\" maxlength=\"120\" placeholder=\"for your verdicts\"></label>"
            "<span id=\"given\" aria-live=\"polite\">0 verdicts</span>"
            "<button type=\"button\" id=\"download\">Download my verdicts</button></div>")


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def render(g: Gallery) -> str:
    """The whole file. Tiles are numbered by their row in `g.tiles`; the JSON block's `tiles` holds each one's
    image id and content hash (what a verdict names), so the page's script reads no data from the markup."""
    g.tiles = g.tiles.reset_index(drop=True)
    meta = {"format": FORMAT, "export_id": g.export_id, "run_id": g.run_id, "made": f"{g.made_at:%Y-%m-%d}",
            "verdicts": list(VERDICTS), "tiles": [
                {"image_id": str(r.image_id), "content_hash": str(r.content_hash), "title": _text(r.title)}
                for r in g.tiles.reset_index(drop=True).itertuples()]}
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            f"<title>{e(g.title)}</title><style>{asset('gallery.css')}</style></head><body>"
            f"{header(g)}{legend(g)}{confusion_table(g)}{toolbar()}<main>{sections(g)}</main>"
            f"<script type=\"application/json\" id=\"periodeye-meta\">{script_json(meta)}</script>"
            f"<script>{asset('gallery.js')}</script></body></html>")
