"""Every dashboard page at the full Historic Art scale: its queries (uncached) and a full AppTest render.

Per page and variant (defaults, and a typical filter):
- queries: the store queries the page issues on its first view after a store change, in the page's order, with
  Streamlit's cache bypassed, on the dashboard's shared read-only connection (dashboard/queries/reader.py);
  p50/p95 over --repeats of the page's total with the connection already open (a person clicking through pages),
  the p50 of the same with the connection opened first (the first view after the reader let go: idle, or a
  writer came), and the slowest single query's p95;
- render: a full `streamlit.testing.v1.AppTest` run of dashboard/Home.py switched to the page, URL parameters set;
  cold = st.cache_data and st.cache_resource cleared first, warm = the same session run again (everything cached),
  change = the page open with its defaults, then the URL changed to the filter and run again (what a user waits
  for after changing a filter: the filter's queries are new, the pickers' are cached). Medians over
  --render-repeats.

Targets (the issue): queries p95 < 200 ms, full render < 1 s (cold, and after a filter change).

    .venv/bin/python -m benchmarks.make_big_store /tmp/periodeye-big.duckdb
    .venv/bin/python -m benchmarks.dashboard_scale /tmp/periodeye-big.duckdb [--repeats 20] [--explain-over 100]

Timings are wall-clock on a possibly shared CPU: run it on an idle machine and compare rows of one run only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

REPO = Path(__file__).resolve().parent.parent
QUERY_TARGET_MS = 200.0
RENDER_TARGET_MS = 1000.0

Step = tuple[str, Callable[[], object]]


@dataclass
class Variant:
    page: str  # file in dashboard/views
    name: str
    params: dict  # the URL (st.query_params) for the render
    steps: Callable[[], list[Step]]  # the page's queries, in its order
    selection: list[str] | None = None  # embedding map: image ids delivered as a lasso selection
    change: bool = True  # time a filter change from the page's defaults


@dataclass
class Result:
    variant: Variant
    totals: list[float] = field(default_factory=list)  # ms per repeat, SQL only, shared connection open
    fresh: list[float] = field(default_factory=list)  # ms per repeat, SQL only, connection opened first
    per_step: dict[str, list[float]] = field(default_factory=dict)
    sql: dict[str, tuple[str, tuple]] = field(default_factory=dict)  # step -> the last SQL it ran
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    changed: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------- the store's facts a typical filter needs


def store_facts(path: Path) -> dict:
    with duckdb.connect(str(path), read_only=True) as con:
        runs = [r for (r,) in con.execute(
            "SELECT run_id FROM runs WHERE status = 'complete' ORDER BY run_id").fetchall()]
        periods = [p for (p,) in con.execute(
            "SELECT label FROM run_labels WHERE run_id = ? AND task = 'period' ORDER BY class_index",
            [runs[0]]).fetchall()]
        dataset = con.execute("SELECT dataset_id FROM runs WHERE run_id = ?", [runs[0]]).fetchone()[0]
        run_c = runs[max(0, min(6, len(runs) - 2))]  # two more runs, distinct where the store has them
        run_d = runs[min(10, len(runs) - 1)]
        # errors filter: the biggest period, its neighbour, its three most frequent painters
        big = con.execute("SELECT period FROM images GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
        i = periods.index(big)
        neighbour = periods[i + 1] if i + 1 < len(periods) else periods[i - 1]
        top_artists = [a for (a,) in con.execute(
            "SELECT artist FROM images WHERE period = ? GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 3",
            [big]).fetchall()]
        annotated = con.execute("""SELECT a.image_id, a.author, a.verdict FROM annotations a
                                   JOIN attributions m ON m.run_id = ? AND m.image_id = a.image_id
                                   ORDER BY a.created_at LIMIT 1""", [run_d]).fetchone()
        if annotated is None:
            first = con.execute("SELECT image_id FROM attributions WHERE run_id = ? LIMIT 1", [run_d]).fetchone()
            annotated = (first[0], None, None)
        lasso = [r for (r,) in con.execute("""SELECT image_id FROM embeddings WHERE run_id = ?
                                               ORDER BY x, image_id LIMIT 1000""", [runs[0]]).fetchall()]
        sizes = con.execute("PRAGMA database_size").df().iloc[0].to_dict()
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (
            "runs", "images", "predictions", "embeddings", "attributions", "attribution_agreement", "annotations")}
        dim = con.execute("SELECT len(vector) FROM embeddings LIMIT 1").fetchone()[0]
    return {"runs": runs, "periods": periods, "dataset": dataset, "A": runs[0], "B": runs[1 % len(runs)],
            "C": run_c, "D": run_d, "big": big, "neighbour": neighbour, "artists": top_artists,
            "image": annotated[0], "author": annotated[1], "verdict": annotated[2], "lasso": lasso,
            "db_size": sizes, "counts": counts, "dim": dim}


# ---------------------------------------------------------------- each page's queries, as the page issues them


def variants(f: dict) -> list[Variant]:
    from dashboard.queries import calibration as qcal
    from dashboard.queries import compare as qc
    from dashboard.queries import curves as qcu
    from dashboard.queries import embedding as qe
    from dashboard.queries import gallery as qg
    from dashboard.queries import inspector as qi
    from dashboard.queries import runs as qr
    from dashboard.queries import slices as qsl
    from dashboard.queries import sql_console as qs
    from dashboard.queries import store_path, store_problem
    from dashboard.queries import verdicts as qv

    router: list[Step] = [("Home: store_problem", store_problem)]

    def overview() -> list[Step]:
        return router + [("runs", qr.runs), ("datasets", qr.datasets), ("skipped_summary", qr.skipped_summary)]

    def errors(run: str, split: str | None, outcome: str, true: list, pred: list, artists: list, sort: str,
               page: int) -> Callable[[], list[Step]]:
        def steps() -> list[Step]:
            flt = qg.GalleryFilter(run, split, true, pred, artists, outcome, 0.0, 1.0, sort)
            pages = {}

            def count():
                n = qg.count(flt)
                pages["offset"] = (min(max(1, page), max(1, -(-n // 24))) - 1) * 24
                return n

            return router + [
                ("runs", qr.runs), ("labels", lambda: qr.labels(run)), ("artists", lambda: qr.artists(run)),
                ("gallery.confusion", lambda: qg.confusion(run, flt.split)), ("gallery.count", count),
                ("gallery.page", lambda: qg.page(flt, 24, pages["offset"])),
            ]
        return steps

    def compare(a: str, b: str, split: str, page_ab: int) -> Callable[[], list[Step]]:
        def steps() -> list[Step]:
            counts = {}

            def agreement():
                counts.update(qc.agreement(a, b, split, "period"))

            return router + [
                ("runs", qr.runs), ("splits", lambda: qc.splits([a, b])),
                ("common_tasks", lambda: qc.common_tasks([a, b])),
                ("overall_metrics", lambda: qc.overall_metrics([a, b], split, "period")),
                ("labels A", lambda: qr.labels(a)), ("labels B", lambda: qr.labels(b)),
                ("class_metric", lambda: qc.class_metric([a, b], split, "period", "f1")),
                ("compare.confusion", lambda: qc.confusion([a, b], split, "period")),
                ("agreement", agreement),
                ("right_wrong_images A>B",
                 lambda: qc.right_wrong_images(a, b, split, "period", 24, (page_ab - 1) * 24)),
                ("right_wrong_images B>A", lambda: qc.right_wrong_images(b, a, split, "period", 24, 0)),
            ]
        return steps

    def inspector(run: str, image: str | None) -> Callable[[], list[Step]]:
        def steps() -> list[Step]:
            ctx: dict = {}

            def candidates():
                ids = qi.candidates(run)["image_id"].tolist()
                ctx["image"] = image or ids[0]

            return router + [
                ("runs", qr.runs), ("run_dataset", lambda: qi.run_dataset(run)), ("candidates", candidates),
                ("image", lambda: qi.image(f["dataset"], ctx["image"])),
                ("probabilities", lambda: qi.probabilities(f["dataset"], ctx["image"])),
                ("maps", lambda: qi.maps(f["dataset"], ctx["image"])), ("geometry", lambda: qi.geometry(f["dataset"])),
                ("inspector.agreement", lambda: qi.agreement(f["dataset"], ctx["image"])),
                ("sanity", lambda: qi.sanity(run)),
                ("neighbours (with their thumbnails)", lambda: qe.neighbours(run, ctx["image"], 9)),
                ("annotations_for", lambda: qv.annotations_for(f["dataset"], ctx["image"])),
            ]
        return steps

    def embedding(run: str, split: str, image: str | None = None, lasso: list[str] | None = None
                  ) -> Callable[[], list[Step]]:
        def steps() -> list[Step]:
            out = router + [("runs", qr.runs), ("points", lambda: qe.points(run, split)),
                            ("labels", lambda: qr.labels(run))]
            if lasso:
                ctx: dict = {}

                def selected():
                    ctx["listed"] = qe.selected(run, lasso)

                out += [("selection_summary", lambda: qe.selection_summary(run, lasso)), ("selected", selected),
                        ("thumbnails", lambda: qe.thumbnails(run, ctx["listed"]["image_id"].head(12).tolist()))]
            if image:
                out.append(("neighbours", lambda: qe.neighbours(run, image, 8)))
            return out
        return steps

    def curves(chosen: list[str]) -> Callable[[], list[Step]]:
        return lambda: router + [("runs", qr.runs), ("epochs", lambda: qcu.epochs(chosen)),
                                 ("stage_changes", lambda: qcu.stage_changes(chosen)),
                                 ("best_epochs", lambda: qcu.best_epochs(chosen))]

    def sql(text: str | None) -> Callable[[], list[Step]]:
        def steps() -> list[Step]:
            out = router + [("runs", qr.runs), ("tables", qs.tables)]
            if text:
                def run_query():
                    result = qs.run_query(store_path(), text)
                    if not result.ok:
                        raise RuntimeError(result.error)
                out.append(("sql_console.run_query", run_query))
            return out
        return steps

    def annotations(run: str, image: str | None, verdicts: list, authors: list) -> Callable[[], list[Step]]:
        def steps() -> list[Step]:
            ctx: dict = {}

            def candidates():
                ids = qv.candidates(run)["image_id"].tolist()
                ctx["image"] = image or ids[0]

            return router + [
                ("runs", qr.runs), ("annotations.candidates", candidates),
                ("image_for_run", lambda: ctx.update(meta=qv.image_for_run(run, ctx["image"]))),
                ("annotations_for", lambda: qv.annotations_for(ctx["meta"]["dataset_id"], ctx["image"])),
                ("authors", qv.authors), ("annotated_runs", qv.annotated_runs),
                ("list_annotations", lambda: qv.list_annotations(verdicts, authors, ())),
            ]
        return steps

    def slices(run: str, split: str, within: dict[str, list[str]]) -> Callable[[], list[Step]]:
        """The Slices page: saved slices, the finder, every slice of the run, the slice being made across runs."""
        def steps() -> list[Step]:
            out = router + [
                ("runs", qr.runs), ("saved", qsl.saved), ("overall", lambda: qsl.overall(run, split)),
                # the finder (qsl.worst) ranks slice_metrics' rows in pandas: on the page its second call is cached
                ("slice_metrics", lambda: qsl.slice_metrics(run, split))]
            if within:
                out.append(("across_runs", lambda: qsl.across_runs(within, split)))
            return out
        return steps

    def calibration(run: str, split: str) -> Callable[[], list[Step]]:
        """The Calibration page: the run's temperatures, splits, tasks, stored ECEs and the diagram's bins."""
        def steps() -> list[Step]:
            return router + [("runs", qr.runs), ("temperatures", lambda: qcal.temperatures(run)),
                             ("splits", lambda: qcal.splits(run)), ("tasks", lambda: qcal.tasks(run)),
                             ("errors", lambda: qcal.errors(run, split, "period")),
                             ("bins", lambda: qcal.bins(run, split, "period"))]
        return steps

    def upload(run: str) -> Callable[[], list[Step]]:
        def steps() -> list[Step]:
            from pipeline.explain import load_run

            return router + [("runs", qr.runs), ("labels", lambda: qr.labels(run)),
                             ("load_run (model, not SQL)", lambda: load_run(store_path(), run))]
        return steps

    A, B, C, D = f["A"], f["B"], f["C"], f["D"]
    err_filter = dict(split="all", outcome="all", true=[f["big"]], pred=[f["big"], f["neighbour"]],
                      artist=f["artists"], sort="least confident first", page="5")
    default_curves = list(f["runs"])  # every run of the first dataset: all of them here
    sql_example = qs.EXAMPLES["Errors per artist"]
    slice_values = ["date:1600–1649", "date:1650–1699", f"period:{f['big']}"]  # two date buckets of one period
    return [
        Variant("overview", "default", {}, overview, change=False),
        Variant("errors", "default", {}, errors(A, "test", "wrong", [], [], [], "most confident first", 1),
                change=False),
        Variant("errors", "true+pred+artist, by confidence, page 5", {"run": C, **err_filter},
                errors(C, None, "all", [f["big"]], [f["big"], f["neighbour"]], f["artists"],
                       "least confident first", 5)),
        Variant("errors", "test errors, disagreement sort, page 5",
                {"run": C, "sort": "explanations disagree most", "page": "5"},
                errors(C, "test", "wrong", [], [], [], "explanations disagree most", 5)),
        Variant("compare", "default (first two runs)", {}, compare(A, B, "test", 1), change=False),
        Variant("compare", "two other runs, val, page 3", {"runs": [C, D], "split": "val", "page_ab": "3"},
                compare(C, D, "val", 3)),
        Variant("inspector", "default (first candidate)", {}, inspector(A, None), change=False),
        Variant("inspector", "one image", {"run": D, "image": f["image"]}, inspector(D, f["image"])),
        Variant("embedding", "default (all splits, by period)", {}, embedding(A, "all"), change=False),
        Variant("embedding", "one run by period, test, neighbours",
                {"run": D, "color": "period", "split": "test", "image": f["image"]},
                embedding(D, "test", image=f["image"])),
        Variant("embedding", f"lasso {len(f['lasso']):,} points", {}, embedding(A, "all", lasso=f["lasso"]),
                selection=f["lasso"], change=False),
        Variant("curves", f"default (all {len(default_curves)} runs)", {}, curves(default_curves), change=False),
        Variant("curves", "three runs", {"runs": [A, C, D]}, curves([A, C, D])),
        Variant("sql", "default (no query)", {}, sql(None), change=False),
        Variant("sql", "example 'Errors per artist'", {"q": sql_example}, sql(sql_example)),
        Variant("annotations", "default", {}, annotations(A, None, [], []), change=False),
        Variant("annotations", "run+image, verdict+author",
                {"run": D, "image": f["image"], **({"verdict": [f["verdict"]], "author": [f["author"]]}
                                                   if f["author"] else {})},
                annotations(D, f["image"], [f["verdict"]] if f["verdict"] else [],
                            [f["author"]] if f["author"] else [])),
        Variant("slices", "default (finder, every slice)", {}, slices(A, "test", {}), change=False),
        Variant("slices", "a slice across every run", {"run": D, "within": slice_values},
                slices(D, "test", qsl.parse_within(slice_values))),
        Variant("calibration", "default (best run, test)", {}, calibration(A, "test"), change=False),
        Variant("calibration", "another run, val", {"run": D, "split": "val"}, calibration(D, "val")),
        Variant("upload", "default (no file)", {}, upload(A), change=False),
    ]


# ---------------------------------------------------------------- timing


class Recorder:
    """Stands in for dashboard.queries._cached: runs the query uncached (as a cache miss does) and notes it."""

    def __init__(self, original) -> None:
        self.run = original.__wrapped__  # the undecorated function: connect read-only, execute, fetch .df()
        self.calls: list[tuple[str, tuple, float]] = []

    def __call__(self, path, version, sql, params):
        t0 = time.perf_counter()
        try:
            return self.run(path, version, sql, params)
        finally:
            self.calls.append((sql, params, (time.perf_counter() - t0) * 1000))


def time_queries(v: Variant, result: Result, repeats: int) -> None:
    import dashboard.queries as dq

    original = dq._cached
    recorder = Recorder(original)
    dq._cached = recorder
    from dashboard.queries.reader import READER

    try:
        for i in range(2 * repeats):
            if i % 2 == 0:
                READER.release()
            total = 0.0
            for label, fn in v.steps():
                recorder.calls.clear()
                t0 = time.perf_counter()
                fn()
                ms = (time.perf_counter() - t0) * 1000
                result.per_step.setdefault(label, []).append(ms)
                if not label.endswith("not SQL)"):
                    total += ms
                if recorder.calls:
                    slowest = max(recorder.calls, key=lambda c: c[2])
                    result.sql[label] = (slowest[0], slowest[1])
            (result.fresh if i % 2 == 0 else result.totals).append(total)
    finally:
        dq._cached = original


def new_app(params: dict, page: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "dashboard" / "Home.py"), default_timeout=300)
    at.switch_page(f"views/{page}.py")
    at.query_params.update({k: v for k, v in params.items()})
    return at


def run_app(at, selection: list[str] | None = None) -> float:
    t0 = time.perf_counter()
    if selection is None:
        at.run()
    else:
        deliver_selection(at, selection)
    ms = (time.perf_counter() - t0) * 1000
    if at.exception:
        raise RuntimeError(f"page raised: {at.exception[0].message if at.exception else ''}")
    return ms


def deliver_selection(at, image_ids: list[str]) -> None:
    """Rerun as if those points were lassoed on the map (the widget-state channel the browser uses; the tests
    do the same through AppTest._run)."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    chart = at.get("plotly_chart")[0]
    points = [{"customdata": [i]} for i in image_ids]
    selection = {"points": points, "point_indices": list(range(len(points))), "box": [], "lasso": [{}]}
    states = at._tree.get_widget_states()
    states.widgets.append(WidgetState(id=chart.proto.id, string_value=json.dumps({"selection": selection})))
    at._run(states)


def clear_caches() -> None:
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


def time_renders(v: Variant, result: Result, repeats: int) -> None:
    for _ in range(repeats):
        if v.selection is not None:  # open the map (cached), then lasso with the query cache cleared
            at = new_app(v.params, v.page)
            run_app(at)
            clear_caches()
            result.cold.append(run_app(at, v.selection))
            result.warm.append(run_app(at, v.selection))
            continue
        clear_caches()
        at = new_app(v.params, v.page)
        result.cold.append(run_app(at))
        result.warm.append(run_app(at))
        if v.change:
            clear_caches()
            at = new_app({}, v.page)
            run_app(at)
            at.query_params.clear()
            at.query_params.update(v.params)
            result.changed.append(run_app(at))


# ---------------------------------------------------------------- report


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    import streamlit

    return (f"{os.cpu_count()} CPUs ({model}){mem}, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; "
            f"Python {platform.python_version()}, DuckDB {duckdb.__version__}, Streamlit {streamlit.__version__}")


def verdict(r: Result) -> str:
    misses = []
    if pct(r.totals, 95) >= QUERY_TARGET_MS:
        misses.append("queries")
    if med(r.cold) >= RENDER_TARGET_MS:
        misses.append("render")
    if r.changed and med(r.changed) >= RENDER_TARGET_MS:
        misses.append("change")
    return "yes" if not misses else "NO (" + ", ".join(misses) + ")"


def fmt(x: float) -> str:
    return "–" if x != x else f"{x:,.0f}"


def rows(results: list[Result]) -> list[list[str]]:
    out = []
    for r in results:
        slow_label, slow = max(((k, pct(v, 95)) for k, v in r.per_step.items() if not k.endswith("not SQL)")),
                               key=lambda kv: kv[1], default=("", float("nan")))
        out.append([r.variant.page, r.variant.name, fmt(pct(r.totals, 50)), fmt(pct(r.totals, 95)),
                    fmt(pct(r.fresh, 50)), f"{slow_label} {fmt(slow)}", fmt(med(r.cold)), fmt(med(r.warm)),
                    fmt(med(r.changed)), verdict(r)])
    return out


HEADER = ["page", "variant", "queries p50 ms", "queries p95 ms", "first view p50 ms", "slowest query (p95 ms)",
          "render cold ms", "render warm ms", "filter change ms", "target met?"]


def plain_table(table: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(HEADER)]
    line = "  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in table]
    return "\n".join([line, "-" * len(line), *body])


def markdown_table(table: list[list[str]]) -> str:
    right = {2, 3, 4, 6, 7, 8}
    lines = ["| " + " | ".join(HEADER) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(HEADER))) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in table]
    return "\n".join(lines)


def breakdown(results: list[Result], over_ms: float) -> str:
    lines = [f"Queries with p95 >= {over_ms:.0f} ms (page / variant / step: p50, p95 ms):"]
    for r in results:
        for label, values in r.per_step.items():
            if pct(values, 95) >= over_ms:
                lines.append(f"  {r.variant.page} / {r.variant.name} / {label}: {pct(values, 50):,.0f}, "
                             f"{pct(values, 95):,.0f}")
    return "\n".join(lines) if len(lines) > 1 else lines[0] + " none"


def explain(path: Path, results: list[Result], over_ms: float) -> None:
    """EXPLAIN ANALYZE of every slow query (its last SQL and parameters), on a fresh read-only connection."""
    seen = set()
    for r in results:
        for label, values in r.per_step.items():
            if pct(values, 95) < over_ms or label not in r.sql:
                continue
            sql, params = r.sql[label]
            if sql in seen:
                continue
            seen.add(sql)
            print(f"\n===== EXPLAIN ANALYZE: {r.variant.page} / {label} (p95 {pct(values, 95):,.0f} ms)")
            with duckdb.connect(str(path), read_only=True) as con:
                plan = con.execute("EXPLAIN ANALYZE " + sql, list(params)).fetchall()
            print(plan[0][1])


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--repeats", type=int, default=20, help="uncached query passes per page variant")
    parser.add_argument("--render-repeats", type=int, default=5, help="AppTest renders per page variant")
    parser.add_argument("--no-render", action="store_true", help="time the queries only")
    parser.add_argument("--pages", nargs="*", help="only these pages (e.g. errors compare)")
    parser.add_argument("--explain-over", type=float, default=None, metavar="MS",
                        help="print EXPLAIN ANALYZE for every query whose p95 is at least MS")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args(argv)
    store = args.store.resolve()
    if not store.exists():
        parser.error(f"no store at {store}; make one with `python -m benchmarks.make_big_store {store}`")

    os.environ["PERIODEYE_STORE"] = str(store)
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    from pipeline import store as pipeline_store

    with pipeline_store.connect(store):  # a store generated by an older version gets the current schema (as a
        pass  # `make artifacts` would give it); the dashboard asks for that instead of reading an old one
    facts = store_facts(store)
    size = store.stat().st_size
    wal = store.with_name(store.name + ".wal")
    print(f"store: {store}  {size / 2**30:.2f} GiB on disk ({size:,} bytes"
          f"{f', + WAL {wal.stat().st_size:,}' if wal.exists() else ''}); DuckDB reports "
          f"{facts['db_size'].get('database_size')} in {facts['db_size'].get('used_blocks')} blocks")
    print("rows: " + ", ".join(f"{t} {n:,}" for t, n in facts["counts"].items()) + f"; embedding dim {facts['dim']}")
    print(f"machine: {machine()}")
    t0 = time.perf_counter()
    for _ in range(5):
        duckdb.connect(str(store), read_only=True).close()
    print(f"opening the store read-only (the first query after the shared reader let go does): "
          f"{(time.perf_counter() - t0) / 5 * 1000:.0f} ms")

    chosen = [v for v in variants(facts) if not args.pages or v.page in args.pages]

    # warm-up: imports (plotly, scipy, torch for Upload) and the OS page cache, not measured
    t0 = time.perf_counter()
    for page in dict.fromkeys(v.page for v in chosen if not args.no_render):
        clear_caches()
        run_app(new_app({}, page))
    print(f"warm-up (first render of each page in this process: imports, page cache): "
          f"{time.perf_counter() - t0:.1f} s\n")

    results = []
    for v in chosen:
        r = Result(v)
        try:
            time_queries(v, r, args.repeats)
            if not args.no_render:
                time_renders(v, r, args.render_repeats)
        except Exception as exc:  # report and go on: one broken page should not hide the others
            r.problems.append(f"{type(exc).__name__}: {exc}")
            print(f"!! {v.page} / {v.name}: {r.problems[-1]}", file=sys.stderr)
        results.append(r)
        print(f"{v.page:12s} {v.name:45s} queries p95 {fmt(pct(r.totals, 95)):>6s} ms  cold {fmt(med(r.cold)):>6s} ms  "
              f"warm {fmt(med(r.warm)):>6s} ms  change {fmt(med(r.changed)):>6s} ms", flush=True)

    table = rows(results)
    print("\n" + plain_table(table))
    print("\n" + breakdown(results, 50.0))
    print(f"\nTargets: the page's queries (all of them, uncached, in order) p95 < {QUERY_TARGET_MS:.0f} ms; "
          f"full AppTest render (cold, and after a filter change; medians) < {RENDER_TARGET_MS:.0f} ms.")
    print("\n<!-- markdown for BENCHMARKS.md -->")
    print(f"Store: {facts['counts']['runs']} runs x {facts['counts']['images']:,} images, "
          f"{facts['counts']['predictions']:,} predictions, {facts['counts']['attributions']:,} saliency maps, "
          f"embeddings dim {facts['dim']}; {size / 2**30:.2f} GiB on disk. Machine: {machine()}. "
          f"Query repeats {args.repeats}, render repeats {args.render_repeats}.\n")
    print(markdown_table(table))
    if args.explain_over is not None:
        explain(store, results, args.explain_over)
    if args.json:
        args.json.write_text(json.dumps({
            "store": str(store), "bytes": size, "facts": {k: v for k, v in facts.items() if k != "lasso"},
            "machine": machine(),
            "results": [{"page": r.variant.page, "variant": r.variant.name, "params": r.variant.params,
                         "totals_ms": r.totals, "per_step_ms": r.per_step, "cold_ms": r.cold, "warm_ms": r.warm,
                         "change_ms": r.changed, "problems": r.problems} for r in results],
        }, indent=1, default=str))
    return results


BIG_STORE = Path(os.environ.get("PERIODEYE_BIG_STORE", "/tmp/periodeye-big.duckdb"))


def run(quick: bool = True) -> list[dict]:
    """For `python -m benchmarks`: the full-size store (generated once, ~2 min), fewer repeats in quick mode."""
    from benchmarks import common, make_big_store

    if not BIG_STORE.exists():
        make_big_store.main([str(BIG_STORE)])
    repeats, renders = (6, 2) if quick else (20, 5)
    results = main([str(BIG_STORE), "--repeats", str(repeats), "--render-repeats", str(renders)])
    met = [r for r in results if verdict(r) == "yes" and not r.problems]
    worst = max(results, key=lambda r: pct(r.totals, 95))
    slowest = max(results, key=lambda r: med(r.cold))
    return [common.result("dashboard", "page views meeting both targets (queries p95 < 200 ms, render < 1 s)",
                          len(met) / len(results), 1.0, unit="share",
                          note=f"worst queries p95 {pct(worst.totals, 95):.0f} ms ({worst.variant.page}); slowest "
                               f"cold render {med(slowest.cold):.0f} ms ({slowest.variant.page})")]


if __name__ == "__main__":
    main()
