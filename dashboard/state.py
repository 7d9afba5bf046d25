"""Page state in the URL (st.query_params), so any view can be sent as a link."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import overload

import streamlit as st

from dashboard.text import md_escape


@overload
def get(name: str, default: str) -> str: ...
@overload
def get(name: str, default: str | None = None) -> str | None: ...
def get(name: str, default: str | None = None) -> str | None:
    """The URL's value for `name`; missing or empty gives `default` (so a str default gives a str)."""
    value = st.query_params.get(name)
    return value if value not in (None, "") else default


def get_list(name: str) -> list[str]:
    return [v for v in st.query_params.get_all(name) if v]


def get_float(name: str, default: float) -> float:
    try:
        return float(get(name, str(default)))
    except ValueError:
        return default


def get_int(name: str, default: int) -> int:
    try:
        return int(get(name, str(default)))
    except ValueError:
        return default


def put(**values: str | Sequence[str] | float | int | None) -> None:
    """Write values into the URL; None or empty removes the key."""
    for name, value in values.items():
        if value is None or value == "" or (isinstance(value, list | tuple) and not value):
            if name in st.query_params:
                del st.query_params[name]
        elif isinstance(value, list | tuple):
            if st.query_params.get_all(name) != [str(v) for v in value]:
                st.query_params[name] = [str(v) for v in value]
        elif st.query_params.get(name) != str(value):
            st.query_params[name] = str(value)


def seed(widget_key: str, url_value: object) -> None:
    """Give a widget the URL's value when the URL changed (a shared link, a click elsewhere);
    otherwise leave the user's last choice alone. Every URL-backed widget goes through here."""
    if widget_key not in st.session_state or st.session_state.get(_last(widget_key)) != url_value:
        st.session_state[widget_key] = url_value
    remember(widget_key, url_value)


def remember(widget_key: str, value: object) -> None:
    """Note `value` as what the URL now holds for the widget, so the next run's seed keeps the user's choice."""
    st.session_state[_last(widget_key)] = value


def _last(widget_key: str) -> str:
    return f"_url_{widget_key}"


def _store(key: str, widget_key: str, value) -> None:
    put(**{key: value})
    remember(widget_key, value)


def choose(label: str, options: Sequence[str], key: str, default: str | None = None, **kwargs) -> str | None:
    """A selectbox whose value lives in the URL under `key`. A link naming a value that is not among `options` (a
    deleted run, a period this run lacks) is said on screen with what exists, the picker left empty and the URL
    untouched, and the page stops there: never another value shown in its place."""
    options = list(options)
    if not options:
        return None
    widget_key = f"w_{key}"
    asked = get(key)
    if asked is not None and asked not in options and (
            st.session_state.get(_last(widget_key)) != asked or st.session_state.get(widget_key) is None):
        st.session_state[widget_key] = None
        remember(widget_key, asked)  # the user's pick on the next run replaces it
        st.selectbox(label, options, key=widget_key, placeholder="Pick one", **kwargs)
        not_found(label, [asked], options, kwargs.get("format_func", str), pick=True)
        st.stop()
    wanted = get(key, default)
    seed(widget_key, wanted if wanted in options else options[0])
    if st.session_state[widget_key] not in options:
        st.session_state[widget_key] = options[0]
    value = st.selectbox(label, options, key=widget_key, **kwargs)
    _store(key, widget_key, value)
    return value


def choose_many(label: str, options: Sequence[str], key: str, **kwargs) -> list[str]:
    """A multiselect whose values live in the URL under `key` (repeated). Values a link names that are not among
    `options` are said on screen with what exists, and left out."""
    options = list(options)
    widget_key = f"w_{key}"
    asked = list(dict.fromkeys(get_list(key)))  # a link may repeat a value
    missing = [v for v in asked if v not in options]
    if missing and st.session_state.get(_last(widget_key)) != asked:
        not_found(label, missing, options, kwargs.get("format_func", str))
    seed(widget_key, asked)
    st.session_state[widget_key] = [v for v in st.session_state[widget_key] if v in options]
    value = st.multiselect(label, options, key=widget_key, **kwargs)
    _store(key, widget_key, value)
    return value


SHOWN_OPTIONS = 30  # the most values a not-found message lists


def not_found(label: str, asked: Sequence[str], options: Sequence[str], name=str, pick: bool = False) -> None:
    """One warning in the page's main area (also when the picker is in the sidebar, which a phone hides): what the
    link asked for, and what exists instead."""
    what = label.split(" (")[0].lower()
    wanted = ", ".join(f"**{md_escape(v)}**" for v in asked)
    listed = ", ".join(md_escape(name(v)) for v in options[:SHOWN_OPTIONS])
    more = f" and {len(options) - SHOWN_OPTIONS:,} more" if len(options) > SHOWN_OPTIONS else ""
    with main_area():
        st.warning(f"Not found: {what} {wanted}, which this link asks for. There "
                   f"{'is 1' if len(options) == 1 else f'are {len(options):,}'} to choose from: {listed}{more}."
                   + (f" Pick one in the {what} menu." if pick else ""), icon=":material/search_off:")


@contextmanager
def main_area() -> Iterator[None]:
    """Write to the page's main area even from inside `with st.sidebar:` (a phone hides the sidebar). Streamlit has
    no public way to leave a `with` block's container, so this sets its container stack back to the main area for
    the block; should that private name move, the message stays where the picker is."""
    try:
        from streamlit.delta_generator_singletons import context_dg_stack
    except ImportError:
        yield
        return
    stack = context_dg_stack.get()
    context_dg_stack.set(stack[:1])
    try:
        yield
    finally:
        context_dg_stack.set(stack)
