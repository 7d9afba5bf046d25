"""Exact duplicates, found by content hash before splitting.

A painting stored twice under two names would otherwise land in train and test at once and
inflate test accuracy. Copies that agree on the label are all kept (the splitter keeps them
together); copies whose labels disagree cannot all be right, so all of them are excluded and
reported, never silently resolved.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

REPORT_COLUMNS = ["content_hash", "image_id", "path", "period", "conflict"]


def content_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha1 of the file's bytes, read in chunks so a huge file never sits in memory."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def deduplicate(df: pd.DataFrame, label_col: str = "period") -> tuple[pd.DataFrame, list[dict], pd.DataFrame]:
    """Split `df` (with a content_hash column) into kept rows, skipped rows and a duplicate report.

    Returns (kept, skipped, report): report has one row per member of every group of two or
    more identical files, with `conflict` telling whether the group's labels disagree.
    """
    sizes = df.groupby("content_hash")["content_hash"].transform("size")
    dups = df[sizes > 1].sort_values(["content_hash", "image_id"])
    skipped: list[dict] = []
    report_rows: list[dict] = []
    conflicting: set[str] = set()
    for digest, group in dups.groupby("content_hash", sort=True):
        labels = sorted(set(group[label_col]))
        conflict = len(labels) > 1
        if conflict:
            conflicting.add(str(digest))
        for r in group.itertuples(index=False):
            report_rows.append(
                {"content_hash": digest, "image_id": r.image_id, "path": r.path, "period": getattr(r, label_col),
                 "conflict": conflict}
            )
            if conflict:
                others = ", ".join(
                    f"{o.path} ({getattr(o, label_col)!r})" for o in group.itertuples() if o.path != r.path
                )
                skipped.append(
                    {"path": r.path, "row": getattr(r, "row", None), "stage": "duplicate",
                     "reason": f"conflicting duplicate: labelled {getattr(r, label_col)!r}, "
                     f"byte-identical copy {others}"}
                )
    kept = df[~df["content_hash"].isin(conflicting)]
    report = pd.DataFrame(report_rows, columns=REPORT_COLUMNS)
    report["conflict"] = report["conflict"].astype(bool)
    return kept, skipped, report


def cross_source_copies(df: pd.DataFrame, priority: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A painting in several sources is kept in one: the first of `priority` (source names: those that may go to
    every split first, then as listed) that holds it; the other sources' copies are set aside.

    Returns (kept, copies): copies are the set-aside rows with `kept_as` (the image id kept) and `kept_in` (its
    source), so the skip report can say where the painting went once splits are known. Copies inside one source
    are left to `deduplicate`, as with a single source.
    """
    rank = df["source"].map({name: i for i, name in enumerate(priority)})
    best = rank.groupby(df["content_hash"]).transform("min")
    copy = rank > best
    winners = df[~copy & (rank == best)].sort_values("image_id").drop_duplicates("content_hash")
    copies = df[copy].copy()
    kept_as = winners.set_index("content_hash")
    copies["kept_as"] = copies["content_hash"].map(kept_as["image_id"])
    copies["kept_in"] = copies["content_hash"].map(kept_as["source"])
    return df[~copy], copies
