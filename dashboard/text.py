"""Text from the store or a URL, shown literally wherever Streamlit reads Markdown."""

from __future__ import annotations

import html
import json
import re

import pandas as pd

from pipeline.config import ATTRIBUTION_METHODS

# Characters that mean something anywhere in a line of Markdown: emphasis, code, links and images, strikethrough,
# Streamlit's :emoji: and :color[…], $math$, tables. (HTML's < > & are escaped as entities.)
_INLINE = re.compile(r"([\\`*_\[\]()!~$:{}|^])")
# ... and what means something only at the start of a line: a heading, a list, a quote, a setext rule.
_LINE_START = re.compile(r"^(\s*)(#|[-+=]|\d+(?=[.)]))")
_WWW = re.compile(r"\b(www)\.", re.IGNORECASE)  # GFM links www.… by itself


def md_escape(value: object, lines: bool = False) -> str:
    """Text from the store (a title, an artist, a period, a path, a run name) or from a URL, shown literally by
    st.markdown and by everything that reads Markdown (captions, alerts, labels, image captions): HTML-escaped, so
    no tag survives even where HTML is allowed, and Markdown-escaped, so `![t](http://…)` fetches nothing and
    `_x_` stays as typed. One line (whitespace collapsed), or with `lines` its line breaks kept."""
    rows = str(value).splitlines() if lines else [" ".join(str(value).split())]
    return "  \n".join(_escape_line(row) for row in rows)


def _escape_line(row: str) -> str:
    row = _WWW.sub(r"\1\\.", _INLINE.sub(r"\\\1", html.escape(row, quote=False)))
    match = _LINE_START.match(row)
    if match:  # "# x", "- x", "1. x": the marker (for a number, the dot after it) escaped
        cut = match.end(1) + (len(match.group(2)) if match.group(2)[0].isdigit() else 0)
        row = f"{row[:cut]}\\{row[cut:]}"
    return row


# Saliency methods in words: their names, and one line on what each map shows (every page and export says the same).
METHOD_NAMES = {"guided_backprop": "Guided Backprop", "integrated_gradients": "Integrated Gradients",
                "grad_cam": "Grad-CAM"}
METHOD_ABOUT = {  # for art historians too: the exported gallery says the same
    "grad_cam": "the regions whose features weighed most in the guess (coarse: a blob per region)",
    "integrated_gradients": "the pixels that moved the guess most, fading in the painting from black",
    "guided_backprop": "fine edges and textures that pushed the network toward its guess",
}


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method.replace("_", " "))


def method_rank(method: str) -> int:
    """The config's method order on every page; unknown methods after, by name."""
    return ATTRIBUTION_METHODS.index(method) if method in ATTRIBUTION_METHODS else len(ATTRIBUTION_METHODS)


def in_method_order(methods) -> list[str]:
    return sorted(set(methods), key=lambda m: (method_rank(m), m))


def methods_legend(methods) -> str:
    """One Markdown line naming what each shown method's map means, in the config's order."""
    return " · ".join(f"**{method_name(m)}**: {METHOD_ABOUT[m]}" for m in in_method_order(methods)
                      if m in METHOD_ABOUT)


def corrections_of(config: str | None) -> dict | None:
    """What experts' corrections did to a run's data (its resolved config's data.corrections_applied), if any."""
    applied = (json.loads(config).get("data") or {}).get("corrections_applied") if config else None
    return applied if isinstance(applied, dict) and applied.get("count") else None


def corrections_words(a: str, b: str, configs: dict[str, str | None]) -> str | None:
    """One line when the two runs' data differ by experts' corrections, so the test below is read as before/after."""
    def said(applied: dict | None) -> str:
        if applied is None:
            return "no experts' corrections"
        return (f"{applied['count']:,} experts' correction(s) applied ({applied.get('label_wrong')}: "
                f"{applied.get('relabelled', 0):,} relabelled, {applied.get('excluded', 0):,} excluded)")

    ca, cb = corrections_of(configs.get(a)), corrections_of(configs.get(b))
    if ca == cb:
        return None
    return (f"The runs' data differ by experts' corrections: A has {said(ca)}, B has {said(cb)}; the test below "
            "compares them on the images both were scored on.")


def with_interval(value: float | None, low: float | None, high: float | None, digits: int = 3) -> str:
    """A metric with its 95 % interval, one form on every page: '0.459 ± 0.026', the ± being the wider side of the
    interval (Wilson's and the bootstrap's are lopsided at small n or near 0 and 1: the wider side never understates
    the uncertainty, and the form stays narrow enough for a table column). The value alone when it has none."""
    if value is None or pd.isna(value):
        return ""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f}\u00a0±\u00a0{max(high - value, value - low, 0.0):.{digits}f}"  # one unbroken phrase
