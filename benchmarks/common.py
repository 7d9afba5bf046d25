"""What every benchmark shares: the machine, timing, interleaved rounds, tables, the results file, real paintings.

The machines these run on are shared and noisy, so a figure worth reporting is a ratio of variants measured side by
side in one process: `interleave` runs the variants in turn, round after round (order rotated each round), and
`ratio` takes the median of the per-round ratios.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.config import DEFAULT_SHARED, DataConfig
from pipeline.cpu_memory import keep_freed_memory
from pipeline.data.prepare import PreparedData, prepare

REPO = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO / "artifacts" / "bench-cache"  # decoded paintings, built once and reused
RESULTS = REPO / "artifacts" / "bench" / "results.json"
TABLES: list[str] = []  # every table printed by this process, in order, for the results file
keep_freed_memory()  # the benchmarks time the pipeline's functions as `python -m pipeline` runs them


# ----------------------------------------------------------------------------------------------- machine

def machine() -> dict:
    """CPU model, cores, GPU, library versions and the load when asked (a busy shared machine shows here)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def load() -> float | None:
    """The 1-minute load average: above the core count, other jobs were competing for the CPU."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def machine_line(m: dict) -> str:
    return (f"machine: {m['cpu']}, {m['usable_cores']} of {m['cores']} cores usable, {m['torch_threads']} torch "
            f"threads, GPU {m['gpu'] or 'none'}, torch {m['torch']}, Python {m['python']}, "
            f"load average {m['load_average']}")


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(dev: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock time covers it."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn: Callable[[], object], dev: torch.device | None = None) -> tuple[float, object]:
    """(seconds, result) of one call, GPU work included."""
    if dev is not None:
        sync(dev)
    t0 = time.perf_counter()
    out = fn()
    if dev is not None:
        sync(dev)
    return time.perf_counter() - t0, out


def interleave(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call every variant once per round, in turn (order rotated each round); each call returns its figure."""
    names = list(variants)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            out[name].append(variants[name]())
    return out


def ratio(num: list[float], den: list[float]) -> float:
    """Median of per-round ratios (round i of `num` against round i of `den`)."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def median(values: list[float]) -> float:
    return statistics.median(values)


# ----------------------------------------------------------------------------------------------- output

def result(benchmark: str, measure: str, value: float, target: float | None = None, unit: str = "x",
           applies: bool = True, note: str = "") -> dict:
    """One summary row; met: value >= target, None where there is no target or it does not apply here."""
    met = value >= target if target is not None and applies else None
    return {"benchmark": benchmark, "measure": measure, "value": value, "unit": unit, "target": target, "met": met,
            "note": note}


def fmt_value(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}×"
    if unit == "share":
        return f"{100 * value:.0f} %"
    return f"{value:.3g} {unit}"


def table(title: str, header: list[str], rows: list[list[object]], note: str = "") -> str:
    """Print a markdown table (floats to 3 significant digits) and remember it for the results file."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    if note:
        lines += ["", note]
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    TABLES.append(text)
    return text


def summary_table(rows: list[dict]) -> str:
    def met(r: dict) -> str:
        return {True: "yes", False: "**no**", None: "n/a"}[r["met"]]

    body = [[r["benchmark"], r["measure"], fmt_value(r["value"], r["unit"]),
             "—" if r["target"] is None else f"≥ {fmt_value(r['target'], r['unit'])}", met(r), r["note"]]
            for r in rows]
    return table("Summary", ["benchmark", "measure", "measured", "target", "met?", "note"], body)


def standalone(run: Callable[[bool], list[dict]], doc: str, full_help: str) -> None:
    """`python -m benchmarks.NAME [--full]`: one benchmark alone, its tables and its summary rows."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--full", action="store_true", help=full_help)
    args = parser.parse_args()
    print(machine_line(machine()))
    summary_table(run(not args.full))


def write_results(payload: dict, path: Path = RESULTS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow the pipeline's, Lightning's and Captum's chatter (prepare summaries, 'GPU available', warnings)."""
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def now() -> str:
    return datetime.now().isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------------- paintings

def paintings_root() -> Path:
    return Path(os.environ.get("PAINTINGS_SHARED", DEFAULT_SHARED)) / "wikiart-styles"


def wikiart(crop: int) -> PreparedData:
    """The 7,000 real WikiArt paintings, prepared as the pipeline does (cache resized to crop·256/224)."""
    resize = round(crop * 256 / 224)
    cfg = DataConfig(source="imagefolder", path=str(paintings_root()), resize=resize, crop=crop)
    with quiet():
        return prepare(cfg, CACHE_DIR, progress=False)


def subset(data: PreparedData, per_class: int, seed: int = 0) -> PreparedData:
    """`per_class` images of every period, their stored splits kept; same cache, fewer rows."""
    rng = np.random.default_rng(seed)
    groups = data.images.groupby("period").indices.values()
    keep = np.sort(np.concatenate([rng.permutation(idx)[:per_class] for idx in groups]))
    return dataclasses.replace(data, images=data.images.iloc[keep].reset_index(drop=True))


def split_counts(images: pd.DataFrame) -> dict[str, int]:
    counts = images["split"].value_counts()
    return {s: int(counts.get(s, 0)) for s in ("train", "val", "test")}


def as_batches(data: PreparedData, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cache rows and period targets of `split` (all images if None)."""
    images = data.images if split is None else data.images[data.images["split"] == split]
    targets = pd.Categorical(images["period"], categories=data.periods).codes.astype(np.int64)
    return images["cache_index"].to_numpy(), targets


@contextlib.contextmanager
def wrapped(patches: dict, wrap) -> Iterator[None]:
    """Replace each (module, function) of `patches` by `wrap(original, stage)` for the block, then put it back: how
    the stage benchmarks clock the pipeline's own functions without changing them."""
    originals = {key: getattr(*key) for key in patches}
    for (module, name), stage in patches.items():
        setattr(module, name, wrap(originals[(module, name)], stage))
    try:
        yield
    finally:
        for (module, name), fn in originals.items():
            setattr(module, name, fn)
