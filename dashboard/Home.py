"""Period Eye dashboard: `streamlit run dashboard/Home.py [-- --store PATH]`.

The entry point and router. Every page reads the DuckDB store that `make artifacts` wrote;
nothing here trains or loads a model (the Upload page aside).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import access
from dashboard.queries import failure_message, store_path, store_problem
from dashboard.queries.runs import runs
from dashboard.text import md_escape
from dashboard.ui import chart_toolbar_rule

HERE = Path(__file__).resolve().parent / "views"  # not pages/: Streamlit would list that folder on its own
PAGES = [
    ("overview.py", "Overview", ":material/dashboard:", "overview"),
    ("errors.py", "Errors", ":material/photo_library:", "errors"),
    ("compare.py", "Compare runs", ":material/compare:", "compare"),
    ("inspector.py", "Inspector", ":material/zoom_in:", "inspector"),
    ("embedding.py", "Embedding map", ":material/scatter_plot:", "embedding"),
    ("curves.py", "Training curves", ":material/show_chart:", "curves"),
    ("sql.py", "SQL", ":material/terminal:", "sql"),
    ("annotations.py", "Annotations", ":material/rate_review:", "annotations"),
    ("data.py", "Data", ":material/dataset:", "data"),
    ("calibration.py", "Calibration", ":material/speed:", "calibration"),
    ("slices.py", "Slices", ":material/pie_chart:", "slices"),
    ("upload.py", "Upload", ":material/upload:", "upload"),
]



def nav_pages() -> list:
    """Every page in PAGES. A missing file stops the app with its name on screen: a page quietly gone from the menu
    looks like a feature that never existed."""
    missing = [file for file, *_ in PAGES if not (HERE / file).is_file()]
    if missing:
        st.error(f"Dashboard page file missing from {HERE}: {', '.join(missing)}")
        st.stop()
    return [st.Page(HERE / file, title=title, icon=icon, url_path=url, default=i == 0)
            for i, (file, title, icon, url) in enumerate(PAGES)]


# An emoji favicon is drawn in the browser; a ":material/…:" one is fetched from fonts.gstatic.com, which fails
# offline (tests/test_browser.py checks that no page asks another host for anything).
st.set_page_config(page_title="Period Eye", page_icon="🎨", layout="wide")
chart_toolbar_rule()
# The menu is hidden until the gate lets this session in; the page the URL names (and its query) is resolved here
# either way, so a shared link with filters opens that view once the password is given.
navigation = st.navigation(nav_pages(), position="sidebar" if access.role() else "hidden")
access.gate()  # with access configured: the login, and st.stop() before any store query, until this session is in



def no_runs_message() -> str:
    """Said in place of every page while the store has no runs (or no file yet): each page needs runs to show."""
    return (f"No runs in the store yet ({md_escape(store_path())}).\n\n"
            "Make some with `make artifacts` (a synthetic demo, a few minutes on a laptop CPU), or "
            "`make artifacts EXPERIMENT=configs/wikiart-styles.yaml` for real paintings, then refresh this page.")


def run_page() -> None:
    """The page, unless the store is not one it can read: then one line saying what is wrong and what to do, in place
    of a traceback; or, with no runs yet, how to make some (checked here once, so pages can assume runs). The store
    problem holds for a damaged block a page's query runs into, too (DuckDB finds it only then); Streamlit's own
    st.stop and reruns are BaseExceptions, not caught here."""
    try:
        problem = store_problem()
        if problem is None:
            if runs().empty:
                st.info(no_runs_message())
            else:
                navigation.run()
            return
    except Exception as exc:  # anything not about the store is re-raised just below
        problem = failure_message(exc)
        if problem is None:
            raise
    st.error(problem)


run_page()
