"""A run's saved model file: written so that no kill leaves a stored run without a loadable checkpoint.

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
from pathlib import Path

import torch

REQUIRED = ("backbone", "labels", "state_dict", "resize", "crop")


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
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
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
    return torch.load(path, map_location="cpu", weights_only=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
