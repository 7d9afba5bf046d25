"""The runs whose identity (`config_hash`) must never change, and the small real dataset they are hashed over.

tests/data/run_identities.json was written by `make_fixture()` with the code before configs were grouped (see the
file's `source`); tests/test_identity.py checks today's code gives the same hashes, so no stored run is retrained.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "data" / "run_identities.json"

# Flat-style runs that set every field (old names) away from its default, and an ensemble in the old style.
VARIANTS = """
name: variants
data: {source: imagefolder, path: /nonexistent/paintings}
defaults: {backbone: resnet18, epochs: 3, lr: 0.01}
runs:
  - {name: everything, pretrained: false, strategy: partial, freeze_until: 2, tasks: [period], epochs: 4,
     stage2_epochs: 2, stage2_lr_factor: 0.2, batch_size: 8, lr: 0.002, momentum: 0.8, weight_decay: 0.01,
     dropout: 0.25, patience: 2, plateau_patience: 2, plateau_factor: 0.5, lr_finder: true, feature_cache: false,
     hflip: true, seed: 7, num_workers: 1, accelerator: cpu, devices: 1, num_nodes: 1, distributed: auto,
     max_minutes: 5.5, projection: pca, pooling: style, optimizer: adamw, schedule: cosine, warmup_epochs: 0.5,
     label_smoothing: 0.1, mixup: 0.2, layer_decay: 0.7, class_balanced: true, crop_scale: [0.3, 1.0],
     tta: [flip, crops]}
  - {name: two-stage, strategy: two_stage, devices: 2, num_nodes: 2, distributed: ddp}
  - {name: finetune, strategy: finetune, backbone: efficientnet_lite0}
  - {name: old-ensemble, strategy: ensemble, members: [everything, two-stage]}
"""


def small_data(folder: Path):
    """A real PreparedData: 3 periods x 5 generated paintings in an ImageFolder, prepared as any dataset is."""
    from pipeline.config import DataConfig, SplitConfig
    from pipeline.data.prepare import prepare
    from tests.conftest import painting

    for p, period in enumerate(("Gothic", "Baroque", "Modern")):
        (folder / "images" / period).mkdir(parents=True, exist_ok=True)
        for i in range(5):
            painting(40 + 4 * i, 32 + 3 * p, seed=10 * p + i).save(folder / "images" / period / f"{i}.png")
    cfg = DataConfig(source="imagefolder", path=str(folder / "images"), resize=16, crop=16, thumbnail_size=16,
                     split=SplitConfig(mode="fractions", val=0.2, test=0.2, seed=0))
    data = prepare(cfg, folder / "cache", progress=False)
    data.dataset_id = "identity-fixture"  # its key names the temporary folder; the content stays in the hash
    return data


def experiment_files(folder: Path) -> list[Path]:
    variants = folder / "variants.yaml"
    variants.write_text(VARIANTS)
    return sorted((REPO_ROOT / "configs").glob("*.yaml")) + [variants]


def every_run(folder: Path) -> dict:
    """`<file stem>/<run name>` -> RunConfig, every run of every file."""
    from pipeline.config import load_experiment

    # the Historic Art configs need the variable to load; set only while loading, so later tests see the real one
    unset = {} if "HISTORIC_ART" in os.environ else {"HISTORIC_ART": "/nonexistent/historic-art"}
    runs = {}
    with mock.patch.dict(os.environ, unset):
        for path in experiment_files(folder):
            for run in load_experiment(path, store=str(folder / "store.duckdb")).runs:
                runs[f"{path.stem}/{run.name}"] = run
    return runs


def identities(folder: Path) -> dict[str, str]:
    """`<file stem>/<run name>` -> config_hash, every run of every file, over one small dataset."""
    from pipeline.experiment import config_hash

    data = small_data(folder)
    return {key: config_hash(run, data) for key, run in every_run(folder).items()}


def make_fixture(folder: Path, commit: str) -> None:
    """Run once, with the code whose identities are kept: python -c "from tests.identity_cases import ..."."""
    FIXTURE.write_text(json.dumps({
        "source": f"written by tests.identity_cases.make_fixture at commit {commit} (the flat RunConfig with "
                  "ADDED_FIELDS, before config groups): PYTHONPATH=. .venv/bin/python -c \"import tempfile, "
                  "pathlib; from tests.identity_cases import make_fixture; "
                  f"make_fixture(pathlib.Path(tempfile.mkdtemp()), '{commit}')\"",
        "identities": identities(folder),
    }, indent=1) + "\n")
