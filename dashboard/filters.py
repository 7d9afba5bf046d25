"""The Errors page's filter as URL keys: read by the Errors page, and carried by the Inspector, the review mode and
every link between them, so "next error" walks the gallery the user was looking at."""

from __future__ import annotations

from dashboard import state
from dashboard.queries import gallery, slices
from dashboard.queries.runs import artists, labels

SPLITS = ["test", "val", "train", "all"]  # the Errors page's choices, its default first
KEYS = ("split", "outcome", "true", "pred", "artist", "cmin", "cmax", "sort", "within")  # within: a slice
DEFAULT_SORT = "most confident first"


def errors_filter(run_id: str, outcome: str = "wrong") -> gallery.GalleryFilter:
    """The filter the URL names (absent or unknown values: the defaults; `outcome` the default outcome)."""
    periods, known_artists = labels(run_id), set(artists(run_id))
    split, chosen, sort = state.get("split", "test"), state.get("outcome", outcome), state.get("sort", DEFAULT_SORT)
    return gallery.GalleryFilter(
        run_id, None if split == "all" or split not in SPLITS else split,
        [t for t in state.get_list("true") if t in periods], [p for p in state.get_list("pred") if p in periods],
        [a for a in state.get_list("artist") if a in known_artists],
        chosen if chosen in gallery.OUTCOMES else outcome,
        state.get_float("cmin", 0.0), state.get_float("cmax", 1.0),
        sort if sort in gallery.SORTS else DEFAULT_SORT, within())


def within() -> dict[str, list[str]]:
    """The slice the URL restricts the gallery to (`within=dimension:value`, repeated; see queries/slices.py)."""
    return slices.parse_within(state.get_list("within"))


def params() -> dict[str, list[str]]:
    """The filter's URL keys as they are now, to carry into links."""
    return {k: state.get_list(k) for k in KEYS if state.get_list(k)}
