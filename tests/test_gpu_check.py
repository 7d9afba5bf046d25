"""benchmarks/gpu_check.sh in its tiny mode on the CPU: the GPU script runs end to end and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_tiny_mode_writes_one_json_with_every_part(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "gpu_check.json"
    env = {**os.environ, "PERIODEYE_GPU_CHECK_TINY": "1", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["mode"] == "tiny" and result["device"] == "cpu"
    assert {"data", "ceiling", "train_epoch", "evaluation", "attributions", "store_write", "total_seconds",
            "machine"} <= set(result)
    assert result["ceiling"]["backbone"] == "resnet18" and result["ceiling"]["bf16_channels_last"] is False
    assert result["ceiling"]["cache_images_per_s"] > 0 and result["ceiling"]["ceiling_images_per_s"] > 0
    assert result["data"]["images"] == 144 and result["data"]["source"] == "manifest"
    assert result["train_epoch"]["train_images"] > 0 and result["train_epoch"]["store_train_seconds"] > 0
    assert result["evaluation"]["images"] == 144
    # 4 test images x 3 methods, plus true-class maps of the errors
    assert result["attributions"]["stored_maps"] >= 12
