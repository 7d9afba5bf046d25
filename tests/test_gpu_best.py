"""benchmarks/gpu_best.sh on the CPU, shrunk by --set: the GPU recipe's config (two sources, two backbones, two-stage,
test-time views, ensemble) runs end to end and its README rows come back as JSON with their intervals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHRINK = ["data.resize=64", "data.crop=64", "defaults.batch_size=8", "defaults.num_workers=0",
          "defaults.projection=pca", "attributions.max_images=2", "attributions.ig_steps=2",
          *(f"runs.{run}.{key}=1" for run in ("lite2-style-full", "lite0-style-full")
            for key in ("epochs", "stage2_epochs"))]


def small_copy(shared: Path, dest: Path, per_class: dict[str, int]) -> None:
    """The first few real paintings of each style of each source, under the sources' own names."""
    for source, n in per_class.items():
        for style in sorted(p for p in (shared / source).iterdir() if p.is_dir()):
            (dest / source / style.name).mkdir(parents=True)
            for image in sorted(style.glob("*.jpg"))[:n]:
                shutil.copy(image, dest / source / style.name / image.name)


@pytest.mark.slow
def test_gpu_recipe_runs_end_to_end_and_reports_intervals(shared_datasets: Path, tmp_path: Path) -> None:
    small_copy(shared_datasets, tmp_path / "shared", {"wikiart-styles": 6, "wikiart-styles-extra": 3})
    out, store = tmp_path / "out", tmp_path / "gpu.duckdb"
    env = {**os.environ, "PYTHON": sys.executable, "PAINTINGS_SHARED": str(tmp_path / "shared"),
           "GPU_BEST_STORE": str(store)}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_best.sh"), str(out),
                           *(arg for kv in SHRINK for arg in ("--set", kv))],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    probe = json.loads((out / "probe.json").read_text())
    assert probe["crop"] == 64 and probe["batch"] == 8 and probe["device"] == "cpu"
    assert set(probe["images_per_s"]) == {"efficientnet_lite2", "efficientnet_lite0"}
    assert all(rate > 0 for rate in probe["images_per_s"].values())
    assert (out / "run.log").read_text().splitlines()[-1].startswith("pipeline run: exit 0 after")
    rows = json.loads((out / "summary.json").read_text())
    assert list(rows) == [f"wikiart-best-gpu/{r}" for r in ("lite2-style-full", "lite0-style-full", "ensemble")]
    lite2 = rows["wikiart-best-gpu/lite2-style-full"]
    assert lite2["status"] == "complete" and lite2["backbone"] == "efficientnet_lite2"
    assert [stage for stage, _, _ in lite2["epochs_val_acc"]] == ["head", "finetune"]
    for row in rows.values():
        for figure in ("accuracy", "balanced_accuracy", "macro_f1"):
            value, low, high = row[f"test_{figure}"]
            assert 0 <= low <= value <= high <= 1


def test_a_run_that_left_no_store_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_best", "summary", str(tmp_path / "none.duckdb"),
                           str(tmp_path / "summary.json")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and not (tmp_path / "summary.json").exists()
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(f"gpu_best summary: {tmp_path / 'none.duckdb'} cannot be used")
