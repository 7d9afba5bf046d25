"""Page state in the URL (st.query_params), so any view can be sent as a link."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st


def get(name: str, default: str | None = None) -> str | None:
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


def choose(label: str, options: Sequence[str], key: str, default: str | None = None, **kwargs) -> str | None:
    """A selectbox whose value lives in the URL under `key`."""
    options = list(options)
    if not options:
        return None
    wanted = get(key, default)
    index = options.index(wanted) if wanted in options else 0
    value = st.selectbox(label, options, index=index, key=f"w_{key}", **kwargs)
    put(**{key: value})
    return value


def choose_many(label: str, options: Sequence[str], key: str, **kwargs) -> list[str]:
    """A multiselect whose values live in the URL under `key` (repeated)."""
    options = list(options)
    chosen = [v for v in get_list(key) if v in options]
    value = st.multiselect(label, options, default=chosen, key=f"w_{key}", **kwargs)
    put(**{key: value})
    return value
