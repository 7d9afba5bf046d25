"""A run's saved model: the one owner of what it holds, where it lives and how it predicts.

The file holds everything needed to predict exactly as the run's evaluation did (backbone, pooling, labels per
task, resize, crop, normalisation, test-time views); `contents` writes it, `SavedModel` reads it back, and files
written before a key existed are read through `LEGACY`, the one place their defaults live. `SavedModel.predict`
is the prediction function evaluation, explain, Upload and collection evaluation share. The store keeps the
path relative to its own folder (`stored_path`/`resolve`), so a moved artifacts folder still works.

An ensemble run is a model too: its file (`ensemble_contents`) names its members and each member's checkpoint
token, and `for_run` gives an `Ensemble` with SavedModel's interface (predict, probabilities, labels, resize,
crop), predicting as `run_ensemble` stored: the mean of the members' probabilities, their embeddings side by side.
A member re-trained since (another token) is refused. An ensemble stored before it kept a file (checkpoint NULL)
is read from its resolved config (`members_of`).

Writes are such that no kill leaves a stored run without a loadable checkpoint.

A run's checkpoint lives at `<run folder>/model.pt`. A new one is first written beside it as
`model.pt.<token>.tmp` and fsynced, before the store transaction; only once the run is committed is it renamed
over model.pt. The token is kept inside the file and in the run's `summary`, so the store says which file
belongs to the stored run:

- killed before the commit: the store and model.pt still hold the old run, untouched (the .tmp is litter);
- killed between the commit and the rename: model.pt is the previous run's; the committed model is the .tmp
  file with the stored token, which `locate` finds and `repair` (on resume) renames into place.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline import store
from pipeline.config import ConfigError
from pipeline.data.transforms import BatchTransform
from pipeline.inference import predict_views, softmax
from pipeline.models.backbones import build_backbone
from pipeline.models.classifier import PeriodClassifier

if TYPE_CHECKING:
    from pipeline.config import RunConfig

REQUIRED = ("backbone", "labels", "state_dict", "resize", "crop")
ENSEMBLE = "ensemble"  # the `kind` of an ensemble's file; a trained run's file has no kind
REQUIRED_ENSEMBLE = ("kind", "members", "labels", "resize", "crop")
# What a file written before a key existed meant by its absence (mean/std: None, the backbone's own).
LEGACY = {"dropout": 0.0, "pooling": "avg", "tta": [], "mean": None, "std": None}


def pending(final: Path, token: str) -> Path:
    """Where the checkpoint with `token` waits until its run is committed."""
    return final.with_name(f"{final.name}.{token}.tmp")


def save(payload: dict, final: Path, token: str) -> Path:
    """Write the checkpoint beside `final` (fsynced, `final` untouched); returns the pending file."""
    path = pending(final, token)
    with open(path, "wb") as f:
        torch.save({**payload, "token": token}, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def install(path: Path, final: Path) -> None:
    """After the store commit: rename the pending file over `final`, make it durable, drop leftovers."""
    os.replace(path, final)
    _fsync_dir(final.parent)
    for stale in final.parent.glob(f"{final.name}.*.tmp"):
        stale.unlink(missing_ok=True)  # files of killed writes, never committed (or superseded)


def problem(path: Path, token: str | None = None) -> str | None:
    """Why `path` is not the run's loadable checkpoint (None: it is). Reads the file once: CRCs, then structure."""
    if not path.is_file():
        return f"missing ({path})"
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
        if bad is not None:
            return f"damaged ({path}: {bad} fails its checksum)"
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # a truncated, foreign or unreadable file: any reason is the same verdict
        return f"damaged ({path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    required = REQUIRED_ENSEMBLE if isinstance(ckpt, dict) and ckpt.get("kind") == ENSEMBLE else REQUIRED
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in required):
        return f"not a Period Eye checkpoint ({path})"
    if token is not None and ckpt.get("token") != token:
        return f"from another write of the run ({path}; a re-run was stopped after storing its result)"
    return None


def locate(final: Path, token: str | None) -> Path:
    """The file holding the stored run's model: `final`, or its committed pending file if the rename never ran."""
    if token and problem(final, token) is not None and problem(pending(final, token), token) is None:
        return pending(final, token)
    return final


def repair(final: Path, token: str | None) -> bool:
    """Finish an interrupted install: move the stored run's committed pending file into place, if it is sound."""
    waiting = pending(final, token) if token else None
    if waiting is None or problem(waiting, token) is not None:
        return False
    install(waiting, final)
    return True


def load(path: Path) -> dict:
    """The file's dict as written (`build` reads it, filling in what older files lack)."""
    return torch.load(path, map_location="cpu", weights_only=True)


@dataclass
class SavedModel:
    """A run's model as its evaluation used it: network, evaluation transform and test-time views."""

    backbone: str
    model: PeriodClassifier
    transform: BatchTransform
    labels: dict[str, list[str]]
    resize: int
    crop: int
    tta: list[str]
    dropout: float = 0.0
    run_id: str = ""  # the stored run it is the model of (set by for_run), for captions
    temperatures: dict[str, float] = field(default_factory=dict)  # task -> T of the run's calibration (for_run)

    def predict(self, pixels: np.ndarray, rows: np.ndarray, batch_size: int, device: torch.device,
                progress: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Centre-view embeddings and logits (the mean over the run's test-time views) of cached squares."""
        return predict_views(self.model, self.transform, pixels, rows, batch_size, device, self.tta, progress)

    def probabilities(self, square: np.ndarray) -> dict[str, np.ndarray]:
        """Per task, the probabilities of one padded+resized uint8 square, as evaluation stored them."""
        return _probabilities(self, square)

    def described(self) -> str:
        """How its probabilities are made, for people ("" when plainly: the centre view)."""
        return f"probabilities averaged over its test-time views ({', '.join(self.tta)}), as evaluated" if self.tta \
            else ""


@dataclass
class Ensemble:
    """An ensemble run's model: its members' saved models (run id -> model, in the run's order), which share
    labels, resize and crop. It predicts as `run_ensemble` stored: probabilities are the members' mean (each
    with its own test-time views), the embedding the members' centre embeddings side by side. There is no one
    network: saliency maps are the members' own."""

    members: dict[str, SavedModel]
    run_id: str = ""

    def __post_init__(self) -> None:
        first, *rest = self.members.values()
        for name, m in self.members.items():
            if (m.labels, m.resize, m.crop) != (first.labels, first.resize, first.crop):
                raise ConfigError(f"ensemble {self.run_id or ''} members differ: {first.run_id} has labels "
                                  f"{first.labels}, resize {first.resize}, crop {first.crop}; {name} has "
                                  f"{m.labels}, {m.resize}, {m.crop}: members must share all three")

    @property
    def labels(self) -> dict[str, list[str]]:
        return next(iter(self.members.values())).labels

    @property
    def resize(self) -> int:
        return next(iter(self.members.values())).resize

    @property
    def crop(self) -> int:
        return next(iter(self.members.values())).crop

    def predict(self, pixels: np.ndarray, rows: np.ndarray, batch_size: int, device: torch.device,
                progress: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Members' centre embeddings side by side; logits = log of the members' mean probability (so softmax
        gives the mean), exactly as run_ensemble computes them from the members' stored probabilities (each member's
        calibrated by its own temperature, as it stored them)."""
        outputs = [(m, m.predict(pixels, rows, batch_size, device, progress)) for m in self.members.values()]
        embeddings = np.concatenate([emb for _, (emb, _) in outputs], axis=1)
        return embeddings, {task: mean_logits([softmax(logits[task].astype(np.float64) / m.temperatures.get(task, 1.0))
                                               for m, (_, logits) in outputs]) for task in self.labels}

    def probabilities(self, square: np.ndarray) -> dict[str, np.ndarray]:
        """Per task, the members' mean probabilities of one padded+resized uint8 square, as the run stored them."""
        return _probabilities(self, square)

    def described(self) -> str:
        parts = [name + (" over " + ", ".join(m.tta) if m.tta else "") for name, m in self.members.items()]
        return f"probabilities the mean of its members' ({'; '.join(parts)}), as evaluated"


Model = SavedModel | Ensemble


def mean_logits(probabilities: list[np.ndarray]) -> np.ndarray:
    """An ensemble's logits from its members' probabilities: softmax of them is the members' mean."""
    return np.log(np.mean(probabilities, axis=0) + 1e-12)


def _probabilities(model: Model, square: np.ndarray) -> dict[str, np.ndarray]:
    """Calibrated as the run stored them: softmax(logits / T) for a task with a temperature (a trained run's
    predict() gives the logits before scaling, which evaluation scales itself; an ensemble's are its calibrated
    members' mean already)."""
    _, logits = model.predict(square[None], np.zeros(1, dtype=np.int64), 1, torch.device("cpu"), progress=False)
    scale = model.temperatures if isinstance(model, SavedModel) else {}
    return {task: softmax(v.astype(np.float64) / scale.get(task, 1.0))[0] for task, v in logits.items()}


def members_of(settings: dict) -> list[str]:
    """The member run names an ensemble's run settings (`dataclasses.asdict(RunConfig)`, or a stored resolved
    config's "run") list; [] for a trained run. The one place that knows where the config keeps them: `ensemble`
    today, `members` in the flat configs stored before config groups."""
    return list(settings.get("ensemble") or settings.get("members") or [])


def ensemble_contents(labels: dict[str, list[str]], resize: int, crop: int,
                      members: dict[str, str | None]) -> dict:
    """What an ensemble's file holds: its members (run id -> the member's checkpoint token when the ensemble was
    made) and what they share."""
    return {"kind": ENSEMBLE, "labels": labels, "resize": resize, "crop": crop,
            "members": [{"run_id": run_id, "token": token} for run_id, token in members.items()]}


def trained(run: RunConfig, labels: dict[str, list[str]], resize: int, crop: int, model: PeriodClassifier,
            transform: BatchTransform) -> SavedModel:
    """A just-trained run's model as its checkpoint will hold it; its evaluation predicts through it."""
    return SavedModel(run.model.backbone, model, transform, labels, resize, crop, list(run.augment.tta),
                      run.model.head_dropout)


def contents(saved: SavedModel) -> dict:
    """What a checkpoint file holds: the weights and every setting the run's evaluation predicted with."""
    return {"backbone": saved.backbone, "labels": saved.labels, "dropout": saved.dropout,
            "pooling": saved.model.pooling, "tta": list(saved.tta), "resize": saved.resize, "crop": saved.crop,
            "mean": saved.transform.mean.flatten().tolist(), "std": saved.transform.std.flatten().tolist(),
            "state_dict": saved.model.state_dict()}


def build(ckpt: dict) -> SavedModel:
    """Rebuild the network and its evaluation transform from a checkpoint dict (no network access)."""
    ckpt = {**LEGACY, **ckpt}
    backbone = build_backbone(ckpt["backbone"], pretrained=False)
    labels = ckpt["labels"]
    model = PeriodClassifier(backbone, {t: len(n) for t, n in labels.items()}, dropout=ckpt["dropout"],
                             pooling=ckpt["pooling"])
    model.load_state_dict(ckpt["state_dict"])
    transform = BatchTransform(ckpt["crop"], mean=ckpt["mean"] or backbone.mean, std=ckpt["std"] or backbone.std)
    return SavedModel(ckpt["backbone"], model.eval(), transform, labels, ckpt["resize"], ckpt["crop"],
                      list(ckpt["tta"]), ckpt["dropout"])


def stored_path(store_path: str | Path, final: Path) -> str:
    """The path the store keeps: relative to the store's folder, so the two can move together."""
    return os.path.relpath(Path(final).absolute(), Path(store_path).absolute().parent)


def resolve(store_path: str | Path, stored: str, origin: str | None = None) -> Path:
    """The file a store's `checkpoint` names. It is relative to the store's folder (store and artifacts moved
    together); a store copied without its artifacts finds it where it was written (`origin`, in the summary);
    older stores kept absolute paths, or ones relative to the working directory."""
    path = Path(stored)
    if path.is_absolute():
        return path
    beside = Path(store_path).absolute().parent / path
    for candidate in (beside, path, Path(origin) if origin else None):
        if candidate is not None and candidate.exists():
            return candidate
    return beside


def for_run(store_path: str | Path, row: dict) -> Model:
    """The model of a stored run (its `runs` row), or ConfigError saying what is missing and how to get it back."""
    run_id, stored, summary = row["run_id"], row.get("checkpoint"), row.get("summary") or {}
    if not stored:
        members = members_of((row.get("config") or {}).get("run") or {})
        if members:  # an ensemble stored before ensembles kept a file: members from its resolved config
            experiment = (row.get("config") or {}).get("experiment") or row["experiment"]
            return _ensemble(store_path, row, {f"{experiment}/{m}": None for m in members})
        raise ConfigError(f"run {run_id} keeps no checkpoint, so it cannot predict new images")
    wanted = resolve(store_path, stored, summary.get("checkpoint_origin"))
    path = locate(wanted, summary.get("checkpoint_token"))  # also when a re-run stopped before moving it in
    if not path.exists():
        raise ConfigError(f"checkpoint of {run_id} not found at {path} (the store names it relative to its own "
                          f"folder, {Path(store_path).absolute().parent}: move artifacts/ and the store together); "
                          "re-run it with `python -m pipeline run`")
    why = problem(path)
    if why is not None:
        raise ConfigError(f"checkpoint of {run_id} is {why}; `python -m pipeline run` on its experiment trains "
                          "such runs again")
    ckpt = load(path)
    if ckpt.get("kind") == ENSEMBLE:
        return _ensemble(store_path, row, {m["run_id"]: m.get("token") for m in ckpt["members"]})
    saved = build(ckpt)
    saved.run_id = run_id
    saved.temperatures = {str(t): float(v) for t, v in (summary.get("temperatures") or {}).items()}  # calibration's
    return saved


def _ensemble(store_path: str | Path, row: dict, tokens: dict[str, str | None]) -> Ensemble:
    """The ensemble of `row` from its members' checkpoints; refused when a member is gone or was re-trained
    since (its token differs from the one the ensemble kept; with none kept, it finished after the ensemble
    started), as the ensemble's stored predictions would then not be this model's."""
    run_id = row["run_id"]
    members: dict[str, SavedModel] = {}
    for member, token in tokens.items():
        member_row = store.get_run(store_path, member)
        if member_row is None:
            raise ConfigError(f"member {member} of ensemble {run_id} is not in {store_path}; re-run the ensemble")
        now = (member_row.get("summary") or {}).get("checkpoint_token")
        legacy = not row.get("checkpoint")
        later = (legacy and member_row.get("finished_at") and row.get("started_at")
                 and member_row["finished_at"] > row["started_at"])
        if (not legacy and now != token) or later:
            raise ConfigError(f"member {member} was re-trained after the ensemble; re-run the ensemble {run_id}")
        model = for_run(store_path, member_row)
        if not isinstance(model, SavedModel):  # the config takes only trained runs as members
            raise ConfigError(f"member {member} of ensemble {run_id} is itself an ensemble; members must be "
                              "trained runs")
        members[member] = model
    return Ensemble(members, run_id)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
