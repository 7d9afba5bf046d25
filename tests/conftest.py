"""Shared fixtures: where the real paintings are, and small generated images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import browser, page, served  # noqa: F401  (the browser suite's fixtures, for every file)

REPO_ROOT = Path(__file__).resolve().parent.parent

# A developer's own dashboard passwords would put every page test behind the gate: tests that want one set it.
for _name in ("PERIODEYE_REVIEWER_PASSWORD", "PERIODEYE_VIEWER_PASSWORD", "PERIODEYE_NO_PASSWORD"):
    os.environ.pop(_name, None)


def shared_datasets_dir() -> Path:
    return Path(os.environ.get("PAINTINGS_SHARED", REPO_ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real datasets beside the project; CI sets PERIODEYE_REQUIRE_SHARED=1 so absence fails."""
    root = shared_datasets_dir()
    if not (root / "wikiart-styles").is_dir():
        msg = f"shared datasets not found at {root}; set PAINTINGS_SHARED to their folder"
        if os.environ.get("PERIODEYE_REQUIRE_SHARED") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


TINY_EXPERIMENT = {
    "name": "tiny",
    "data": {"source": "demo", "resize": 40, "crop": 32, "thumbnail_size": 48,
             "split": {"mode": "fractions", "val": 0.2, "test": 0.2, "seed": 0}},
    "defaults": {"backbone": "efficientnet_lite0", "epochs": 2, "stage2_epochs": 1, "lr": 0.01, "batch_size": 64,
                 "projection": "pca"},
    "attributions": {"ig_steps": 4, "max_images": 12, "sanity_images": 3, "heatmap_size": 32},
    "runs": [
        {"name": "head", "strategy": "head"},
        {"name": "finetune", "strategy": "finetune", "epochs": 1},
        {"name": "two-stage", "strategy": "two_stage", "epochs": 1},
        {"name": "freeze3", "strategy": "partial", "freeze_until": 3, "epochs": 1},
        {"name": "period-artist", "strategy": "head", "tasks": ["period", "artist"]},
    ],
}


def make_experiment(tmp: Path, spec: dict | None = None):
    """A real experiment file in `tmp` with its own store and artifacts folder."""
    import yaml

    from pipeline.config import load_experiment

    path = tmp / "experiment.yaml"
    path.write_text(yaml.safe_dump(spec or TINY_EXPERIMENT))
    exp = load_experiment(path, store=str(tmp / "store.duckdb"))
    exp.artifacts_dir = str(tmp / "artifacts")
    return exp


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Path:
    """A real store: the tiny demo experiment (5 runs, attributions for 12 test images each).

    Shared by the dashboard tests, which only read it; tests that write get their own copy."""
    from pipeline.experiment import run_experiment

    exp = make_experiment(tmp_path_factory.mktemp("demo-store"))
    run_experiment(exp, progress=False)
    return Path(exp.store)


@pytest.fixture(scope="session")
def store_without_attributions(tmp_path_factory) -> Path:
    """A real store whose one run has no saliency maps (attributions disabled)."""
    from pipeline.experiment import run_experiment

    spec = {**TINY_EXPERIMENT, "attributions": {"enabled": False}, "runs": [{"name": "head", "strategy": "head"}]}
    exp = make_experiment(tmp_path_factory.mktemp("plain-store"), spec)
    run_experiment(exp, progress=False)
    return Path(exp.store)


PAINTINGS_PER_STYLE = 45


def painting_manifest(wikiart: Path, folder: Path, per_style: int = PAINTINGS_PER_STYLE) -> Path:
    """A manifest CSV of the first `per_style` paintings (by file name) of every style: the same set each session."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "paintings.csv"
    with manifest.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["path", "period", "image_id"])  # ids as an ImageFolder names them (style/file), not absolute
        for style in sorted(d for d in wikiart.iterdir() if d.is_dir()):
            for image in sorted(style.glob("*.jpg"))[:per_style]:
                out.writerow([str(image.absolute()), style.name, f"{style.name}/{image.name}"])
    return manifest


def real_experiment(manifest: Path) -> dict:
    """Small real paintings: a frozen-head run and a short two-stage run (so a kept stage shows), few maps."""
    return {
        "name": "wikiart-mini",
        "audit": True,  # label quality for the Errors sort and filter (changes no run identity)
        "data": {"source": "manifest", "path": str(manifest), "name": "wikiart-styles", "resize": 80, "crop": 64,
                 "thumbnail_size": 128, "split": {"mode": "fractions", "val": 0.2, "test": 0.2, "seed": 0}},
        "defaults": {"backbone": "efficientnet_lite0", "epochs": 2, "stage2_epochs": 1, "lr": 0.01,
                     "batch_size": 64, "projection": "pca"},
        "attributions": {"splits": ["test"], "max_images": 8, "ig_steps": 4, "sanity_images": 2,
                         "heatmap_size": 32},
        "runs": [
            {"name": "lite0-head", "strategy": "head"},
            {"name": "lite0-two-stage", "strategy": "two_stage", "epochs": 1, "lr": 0.003},
        ],
    }


@pytest.fixture(scope="session")
def real_store(shared_datasets, tmp_path_factory) -> Path:
    """A real-painting store, built once per session: 315 WikiArt paintings (7 styles), two runs, small images.

    The browser tests read it (tests/browser.py serves it); the demo's synthetic pictures hide problems with
    long class names, dark paintings and real thumbnails."""
    from pipeline.experiment import run_experiment

    folder = tmp_path_factory.mktemp("real-store")
    manifest = painting_manifest(shared_datasets / "wikiart-styles", folder / "data")
    exp = make_experiment(folder, real_experiment(manifest))
    run_experiment(exp, progress=False)
    return Path(exp.store)


def copy_store(store: Path, folder: Path) -> Path:
    """A private copy (with its WAL, if any) that a test may write."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "store.duckdb"
    shutil.copy(store, target)
    wal = store.with_name(store.name + ".wal")
    if wal.exists():
        shutil.copy(wal, target.with_name(target.name + ".wal"))
    return target


def sql(store: Path, text: str, params=()) -> list[tuple]:
    """Ask the store directly (read-only), to check what a page shows."""
    import duckdb

    with duckdb.connect(str(store), read_only=True) as con:
        return con.execute(text, list(params or [])).fetchall()


def open_dashboard(store: Path, monkeypatch, page: str | None = None, timeout: int = 120, **params):  # noqa: F811
    """The real dashboard over `store` in AppTest: Home, then `page` (e.g. "errors.py") with `params` in the URL."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PERIODEYE_STORE", str(store))
    at = AppTest.from_file(str(REPO_ROOT / "dashboard" / "Home.py"), default_timeout=timeout)
    if page:
        at.switch_page(f"views/{page}")
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def painting(width: int, height: int, seed: int):
    """A smooth generated picture with blocky noise, so resizing differences stay small but visible."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([np.sin(6 * x + seed), np.cos(5 * y), np.sin(4 * (x + y))], axis=-1) * 90 + 128
    noise = rng.normal(0, 12, (height // 8 + 1, width // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:height, :width]
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
