"""Command line: `periodeye` (installed by `pip install -e .`) or `python -m pipeline`, one parser:
{artifacts,run,prepare,audit,list,explain,evaluate,upgrade,dashboard,annotations,merge,export} --help.

Every command but `dashboard` checks the store first (pipeline.store.check_store): a file that is not a usable store
ends in one line saying what is wrong and what to do, exit status 2. Read-only commands open the store read-only;
writing commands refuse another application's DuckDB file or a newer store unless given --adopt-store. The dashboard
checks the store itself and says what is wrong on its page (it stays open while a writer runs, which a check here
would wait for). torch is imported only inside the commands that train or predict, after those checks."""

from __future__ import annotations

import argparse
import os
import sys

from pipeline.config import REPO_ROOT, ConfigError, load_experiment
from pipeline.cpu_memory import keep_freed_memory
from pipeline.store import StoreError, StoreLockedError, check_store

DEFAULT_EXPERIMENT = REPO_ROOT / "configs" / "demo.yaml"


def main(argv: list[str] | None = None) -> int:
    """The `periodeye` console script and `python -m pipeline`: the exit status."""
    prog = "periodeye" if os.path.basename(sys.argv[0]) == "periodeye" else "python -m pipeline"
    args = build_parser(prog).parse_args(argv)
    keep_freed_memory()  # before torch allocates: CPU batches stop page-faulting (pipeline/cpu_memory.py)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, StoreError, StoreLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_parser(prog: str = "python -m pipeline") -> argparse.ArgumentParser:
    """Every command and option, in one place (both entry points share it)."""
    parser = argparse.ArgumentParser(prog=prog, description="Period Eye: train, evaluate, store.")
    sub = parser.add_subparsers(dest="command", required=True)

    def experiment_args(p: argparse.ArgumentParser, default: str | None) -> None:
        p.add_argument("experiment", nargs="?" if default else None, default=default, help="experiment YAML")
        p.add_argument("--data", help="use this collection instead (ImageFolder dir, manifest CSV, Historic Art dir)")
        p.add_argument("--store", help="DuckDB store (default artifacts/periodeye.duckdb or $PERIODEYE_STORE)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="change the experiment file's value: runs.NAME.epochs=1, defaults.lr=0.01, data.resize=96")
        adopt_arg(p)
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("artifacts", help="run every run of an experiment still missing from the store (default demo)")
    experiment_args(p, str(DEFAULT_EXPERIMENT))
    p = sub.add_parser("run", help="run an experiment file, or some runs of it")
    experiment_args(p, None)
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these runs of the experiment")
    p.add_argument("--force", action="store_true", help="redo runs already complete in the store")
    p = sub.add_parser("prepare", help="load, check, de-duplicate, split and cache the data; report skips")
    experiment_args(p, str(DEFAULT_EXPERIMENT))
    p = sub.add_parser("audit", help="likely label errors: score every image's label (cross-validated linear head on "
                       "the frozen backbone's features, Cleanlab's confident learning) into the store")
    experiment_args(p, None)
    p = sub.add_parser("list", help="list the runs in the store")
    p.add_argument("--store", help="DuckDB store")
    p = sub.add_parser("explain", help="probabilities and saliency overlays for one new image with a stored run")
    p.add_argument("image", help="an image file")
    p.add_argument("--run", required=True, help="run id, e.g. demo/lite0-head (see `list`)")
    p.add_argument("--target", help="explain this period instead of the predicted one")
    p.add_argument("--out", help="overlay PNG to write (default: <image>.explained.png)")
    p.add_argument("--store", help="DuckDB store")

    p = sub.add_parser("evaluate", help="score a stored run on another labelled collection; stored as RUN@NAME")
    p.add_argument("--run", required=True, help="run id, e.g. demo/lite0-head (see `list`)")
    p.add_argument("--data", required=True, help="the collection: ImageFolder dir, manifest CSV, Historic Art dir")
    p.add_argument("--name", help="collection name in the stored run id RUN@NAME (default: the folder/file stem)")
    p.add_argument("--store", help="DuckDB store (default artifacts/periodeye.duckdb or $PERIODEYE_STORE)")
    p.add_argument("--no-attributions", action="store_true", help="store no saliency maps")
    p.add_argument("--max-attributions", type=int, metavar="N", help="explain at most N images (default: as the "
                   "run's experiment did, else 200)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    adopt_arg(p)
    p = sub.add_parser("upgrade", help="bring a store written by an older Period Eye to this code's schema (runs and "
                       "annotations are kept)")
    p.add_argument("--store", help="DuckDB store (default artifacts/periodeye.duckdb or $PERIODEYE_STORE)")
    adopt_arg(p)
    p = sub.add_parser("dashboard", help="the Streamlit dashboard over a store, on http://ADDRESS:PORT (by default "
                       "127.0.0.1: this machine only)")
    p.add_argument("--store", help="DuckDB store (default artifacts/periodeye.duckdb or $PERIODEYE_STORE)")
    p.add_argument("--port", type=int, help="port to serve on (default: Streamlit's, 8501)")
    p.add_argument("--address", help="address to listen on (default 127.0.0.1; with --share 0.0.0.0: every "
                   "interface). Beyond this machine a password is required: README, 'Share with art historians'")
    p.add_argument("--share", action="store_true", help="serve to colleagues: the toolbar's Deploy button and "
                   "developer menu hidden, no browser opened here, listening on every interface unless --address")
    p.add_argument("--no-password", action="store_true", help="serve beyond this machine with no password "
                   "(anyone who can reach the port sees the store and may annotate)")
    p = sub.add_parser("annotations", help="expert annotations: `annotations import FILE` brings in the verdicts an "
                       "exported gallery's reviewer downloaded")
    action = p.add_subparsers(dest="action", required=True)
    p = action.add_parser("import", help="import a verdicts CSV (the gallery's \"Download my verdicts\"): bad rows are "
                          "reported by row number and skipped; importing a file again adds nothing")
    p.add_argument("file", help="the verdicts CSV")
    p.add_argument("--store", help="DuckDB store (default artifacts/periodeye.duckdb or $PERIODEYE_STORE)")
    p = sub.add_parser("merge", help="bring in the runs of other stores (one job's store per machine) or Parquet "
                       "exports: each run whole or not at all; annotations and saved slices come too")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="a store file, or a folder written by `export "
                   "--parquet`; read only, never written")
    p.add_argument("--store", help="DuckDB store to merge into (default artifacts/periodeye.duckdb or "
                   "$PERIODEYE_STORE)")
    p.add_argument("--force", action="store_true", help="replace runs the store already has (default: skip them)")
    p = sub.add_parser("export", help="write every table of the store as Parquet (per-run tables partitioned by run)")
    p.add_argument("--parquet", required=True, metavar="DIR", help="a new (or empty) folder to write")
    p.add_argument("--store", help="DuckDB store (default artifacts/periodeye.duckdb or $PERIODEYE_STORE)")
    return parser


def adopt_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adopt-store", action="store_true", help="write into the store even if it is another "
                   "application's DuckDB file (Period Eye's tables are added beside its own) or was written by a "
                   "newer Period Eye; without it, such a store is refused and left as it is")


def cmd_run(args: argparse.Namespace) -> int:
    exp = load_experiment(args.experiment, data_path=args.data, store=args.store, overrides=args.overrides)
    check_store(exp.store, writing=True, adopt=args.adopt_store)
    from pipeline.experiment import run_experiment  # torch and Lightning: only once the config and store are known good

    run_experiment(exp, only=getattr(args, "only", None), force=getattr(args, "force", False), progress=not args.quiet)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    exp = load_experiment(args.experiment, data_path=args.data, store=args.store, overrides=args.overrides)
    check_store(exp.store, writing=True, adopt=args.adopt_store)
    from pipeline.experiment import prepare_data  # torch and Lightning: only once the config and store are known good

    data = prepare_data(exp, progress=not args.quiet)
    print(data.images.groupby(["split", "period"]).size().unstack(0).fillna(0).astype(int).to_string())
    if len(data.skipped):
        print(f"\n{len(data.skipped)} skipped:")
        print(data.skipped.groupby("stage").size().to_string())
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Prepare (or reuse) the experiment's data, audit its labels, store the scores; one line of summary."""
    exp = load_experiment(args.experiment, data_path=args.data, store=args.store, overrides=args.overrides)
    check_store(exp.store, writing=True, adopt=args.adopt_store)
    from pipeline.audit import audit_dataset  # torch: only once the config and store are known good
    from pipeline.experiment import prepare_data

    data = prepare_data(exp, progress=not args.quiet)
    print(audit_dataset(exp, data, progress=not args.quiet).line())
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    import pandas as pd

    from pipeline import store

    path = store_path(args)
    check_store(path)
    runs = store.list_runs(path)
    if runs.empty:
        print("no runs stored yet: run `make artifacts`")
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(runs.to_string(index=False))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.data.images import BadImage
    from pipeline.explain import explain_to_file

    out = args.out or str(Path(args.image).with_suffix(".explained.png"))
    check_store(store_path(args))
    try:
        explain_to_file(store_path(args), args.run, args.image, out, target=args.target)
    except BadImage as exc:
        print(f"error: cannot read {args.image}: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline.collection import evaluate_collection

    if args.max_attributions is not None and args.max_attributions < 0:
        raise ConfigError(f"--max-attributions must be >= 0, got {args.max_attributions}")
    check_store(store_path(args), writing=True, adopt=args.adopt_store)
    evaluate_collection(store_path(args), args.run, args.data, name=args.name, attributions=not args.no_attributions,
                        max_attributions=args.max_attributions, progress=not args.quiet)
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    from pipeline import store
    from pipeline.backfill import backfill_intervals

    path = store_path(args)
    if not os.path.isfile(path):
        raise StoreError(f"no store at {path}: nothing to upgrade (`make artifacts` writes a new one)")
    check_store(path, writing=True, adopt=args.adopt_store)
    with store.connect(path) as con:  # a writer's connection brings the schema up to date (never down)
        version = store.scalar(con, "SELECT value FROM meta WHERE key = 'schema_version'")  # ensure_schema wrote it
        filled = backfill_intervals(con)  # runs written before schema 6 get their metrics' 95 % intervals
    print(f"{path}: schema {version}" + (f", 95 % intervals filled on {filled} metric rows" if filled else ""))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Becomes `streamlit run <the installed dashboard/Home.py>` on 127.0.0.1 (exec: Ctrl-C and signals reach
    Streamlit itself). Found by its spec, not imported: pipeline never imports the dashboard."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("dashboard")
    if spec is None or spec.origin is None:
        raise ConfigError("the dashboard package is not installed: `pip install -e .` in the Period Eye checkout")
    home = Path(spec.origin).parent / "Home.py"
    address = args.address or ("0.0.0.0" if args.share else "127.0.0.1")
    if not loopback(address) and not access_configured() and not args.no_password:
        raise ConfigError(f"serving on {address} reaches beyond this machine: set PERIODEYE_REVIEWER_PASSWORD (and "
                          "PERIODEYE_VIEWER_PASSWORD) or copy .streamlit/secrets.toml.example to "
                          ".streamlit/secrets.toml, or pass --no-password")
    if args.no_password:
        os.environ["PERIODEYE_NO_PASSWORD"] = "1"  # the dashboard's own check (dashboard/access.py) reads it
    command = [sys.executable, "-m", "streamlit", "run", str(home), "--server.address", address,
               "--browser.gatherUsageStats", "false"]
    if args.share:
        # colleagues see no Deploy button or developer menu, and a failing page shows its message, not our traceback
        command += ["--client.toolbarMode", "viewer", "--client.showErrorDetails", "type", "--server.headless", "true"]
    if args.port is not None:
        command += ["--server.port", str(args.port)]
    command += ["--", "--store", str(Path(store_path(args)).resolve())]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
    return 0  # not reached: execv replaces this process


def loopback(address: str) -> bool:
    """Does `address` keep the dashboard on this machine?"""
    import ipaddress

    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name: assume others can reach it
        return False


def access_configured() -> bool:
    """Is a password or an identity provider set up where the dashboard will find it (dashboard/access.py reads the
    same: the environment, then the secrets.toml files Streamlit reads from this folder and from ~/.streamlit)?"""
    import tomllib
    from pathlib import Path

    if os.environ.get("PERIODEYE_REVIEWER_PASSWORD") or os.environ.get("PERIODEYE_VIEWER_PASSWORD"):
        return True
    for path in (Path.home() / ".streamlit" / "secrets.toml", Path.cwd() / ".streamlit" / "secrets.toml"):
        try:
            secrets = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            continue
        passwords = secrets.get("passwords") or {}
        given = [passwords.get(role) or [] for role in ("reviewers", "viewers")]
        if secrets.get("auth") or any(str(p) for g in given for p in ([g] if isinstance(g, str) else g)):
            return True
    return False


def cmd_annotations(args: argparse.Namespace) -> int:
    """`annotations import FILE`: the summary, then each skipped row (first 20); status 1 when a row was skipped."""
    from pipeline.annotations import AnnotationError, import_file

    path = store_path(args)
    check_store(path, writing=True)
    try:
        report = import_file(path, args.file)
    except AnnotationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 1 if report.skipped else 0


def cmd_merge(args: argparse.Namespace) -> int:
    from pipeline.merge import merge

    print(merge(store_path(args), args.sources, force=args.force).line())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.parquet_export import export_parquet

    path = store_path(args)
    check_store(path)
    counts = export_parquet(path, args.parquet)
    print(f"{args.parquet}: {len(counts)} tables, {sum(counts.values()):,} rows as Parquet")
    return 0


def store_path(args: argparse.Namespace) -> str:
    from pipeline.config import DEFAULT_STORE

    return args.store or os.environ.get("PERIODEYE_STORE") or str(DEFAULT_STORE)


COMMANDS = {"artifacts": cmd_run, "run": cmd_run, "prepare": cmd_prepare, "audit": cmd_audit, "list": cmd_list,
            "explain": cmd_explain, "evaluate": cmd_evaluate, "upgrade": cmd_upgrade, "dashboard": cmd_dashboard,
            "annotations": cmd_annotations, "merge": cmd_merge, "export": cmd_export}

if __name__ == "__main__":
    sys.exit(main())
