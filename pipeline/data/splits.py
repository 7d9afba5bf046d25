"""Deterministic, grouped, stratified train/val/test splits.

Rows are split in groups, never one by one: byte-identical copies (same content_hash) form a
group so a duplicate can never leak from train into test, near-copies of one work (same `near_group`, set by
prepare from pipeline/data/near_copies.py) join it the same way, and with `artist_disjoint` every
work of an artist joins one group so the test measures recognising a period in painters the
model has never seen.

Per class the groups are shuffled with a generator seeded by (seed, class name) and fill
val, then test, then train. With single images (the usual case) val/test get exactly the
requested counts (mode 'counts') or rounded shares (mode 'fractions'). With large groups
(artist-disjoint) the counts are approximate: a group only goes to val/test if it fits, and
if none fits the smallest group is used so that val and test are never empty. A group's
class is its majority label (ties: alphabetical). The result depends only on the rows and
the seed, not on their order.

Mode 'none' puts every row in test: a collection a stored run is only evaluated on.

With several sources (`assign_source_splits`), the sources that may go to every split are split as above as if
they were alone, so their test split is the one they have by themselves; a source limited to some splits (a
`[train, val]` collection that only adds training data) then fills those splits by the same shares renormalised.
Its images that are near-copies (or, artist-disjoint, works of a painter) of an already placed image follow that
image's split, or are dropped when their source may not go there (a copy of a test image never trains).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.config import ConfigError, SplitConfig

SPLITS = ("train", "val", "test")


def assign_splits(
    df: pd.DataFrame, split: SplitConfig, label_col: str = "period"
) -> tuple[pd.DataFrame, list[dict]]:
    """Return (df with a `split` column, skipped rows of classes too small to split)."""
    _check(split)
    df = df.copy()
    if split.mode == "none":  # a collection only evaluated on: nothing to hold out, every class size is fine
        df["split"] = "test"
        return df, []
    group_of = _groups(df, split.artist_disjoint)
    df["_group"] = group_of
    votes = df.groupby(["_group", label_col]).size().reset_index(name="n")
    votes = votes.sort_values(["_group", "n", label_col], ascending=[True, False, True])
    group_label = votes.drop_duplicates("_group").set_index("_group")[label_col]  # majority, ties alphabetical
    group_size = df.groupby("_group").size()

    assignment: dict[str, str] = {}
    skipped: list[dict] = []
    for label in sorted(group_label.unique()):
        groups = sorted(group_label.index[group_label == label])
        n = int(group_size[groups].sum())
        targets, problem = _targets(n, split)
        if problem:
            skipped.extend(
                {"path": r.path, "row": getattr(r, "row", None), "stage": "split",
                 "reason": f"class too small: {label!r} has {n} image(s); {problem}"}
                for r in df[df["_group"].isin(groups)].itertuples(index=False)
            )
            continue
        rng = np.random.default_rng([split.seed, zlib.crc32(label.encode())])
        order = [groups[i] for i in rng.permutation(len(groups))]
        filled = _fill(order, group_size, targets)
        if split.artist_disjoint:
            _check_disjoint(label, filled, targets)
        assignment.update(filled)

    df = df[df["_group"].isin(assignment)].copy()
    df["split"] = df["_group"].map(assignment)
    return df.drop(columns="_group"), skipped


def assign_source_splits(
    df: pd.DataFrame, split: SplitConfig, allowed: Mapping[str, Sequence[str] | None], label_col: str = "period"
) -> tuple[pd.DataFrame, list[dict]]:
    """Splits of a dataset with a `source` column: `allowed` maps a source to the splits it may go to (None: all).

    The unrestricted sources are split by `assign_splits` alone; a restricted image linked (near-copy, or painter
    when artist-disjoint) to one of theirs follows it or is dropped; the other restricted groups are placed in the
    splits every member may go to, by the configured shares renormalised over those splits, seeded."""
    _check(split)
    free = df["source"].map(lambda s: allowed.get(s) is None).astype(bool)
    placed, skipped = assign_splits(df[free], split, label_col)
    rest = df[~free]
    if rest.empty:
        return placed, skipped
    both = pd.concat([placed, rest.assign(split=None)], ignore_index=True)
    group = _groups(both, split.artist_disjoint)
    is_rest = both.index >= len(placed)
    main_split = both[~is_rest].groupby(group[~is_rest])["split"].agg(lambda s: "test" if "test" in set(s) else
                                                                     sorted(set(s))[0])
    main_source = both[~is_rest].groupby(group[~is_rest])["source"].first()
    rest = both[is_rest].copy()
    rest["link"] = group[is_rest]
    rest["split"] = rest["link"].map(main_split)
    may = rest["source"].map(lambda s: tuple(allowed[s] or SPLITS))
    follows = rest["split"].notna()
    barred = follows & ~pd.Series([s in m for s, m in zip(rest["split"], may, strict=True)], index=rest.index)
    for r in rest[barred].itertuples(index=False):
        how = "near-copy or work of the same painter" if split.artist_disjoint else "near-copy"
        skipped.append({"path": r.path, "row": getattr(r, "row", None), "stage": "split",
                        "reason": f"{how} of a {r.split} image in {main_source[r.link]}"})
    out = [placed, rest[follows & ~barred]]
    free_rows = rest[~follows]
    where = free_rows.groupby("link")["source"].transform(
        lambda names: ",".join(s for s in SPLITS if all(s in (allowed[n] or SPLITS) for n in names)))
    for splits, rows in free_rows.groupby(where):
        if not splits:
            skipped.extend({"path": r.path, "row": getattr(r, "row", None), "stage": "split",
                            "reason": "copies in sources with no split in common"} for r in rows.itertuples())
            continue
        got, small = _place(rows.drop(columns=["link", "split"]), split, splits.split(","), label_col)
        out.append(got)
        skipped += small
    result = pd.concat(out, ignore_index=True).drop(columns="link", errors="ignore")
    return result, skipped


def _place(df: pd.DataFrame, split: SplitConfig, splits: list[str], label_col: str) -> tuple[pd.DataFrame, list[dict]]:
    """Rows that may go to `splits` only: the configured shares renormalised over them (counts: the same counts),
    the first of train/val that is allowed taking the rest."""
    if len(splits) == 1:
        return df.assign(split=splits[0]), []
    fill = "train" if "train" in splits else "val"
    held = [s for s in splits if s != fill]
    if split.mode == "fractions":
        share = {"train": 1 - split.val - split.test, "val": split.val, "test": split.test}
        total = sum(share[s] for s in splits)
        amount = {s: share[s] / total for s in held}
    else:
        amount = {s: float(getattr(split, s)) for s in held}
    cfg = dataclasses.replace(split, val=amount.get("val", 0.0), test=amount.get("test", 0.0))
    placed, skipped = assign_splits(df, cfg, label_col)
    placed["split"] = placed["split"].replace({"train": fill})
    return placed, skipped


def _check(split: SplitConfig) -> None:
    """Reject split settings that cannot mean anything, rather than guessing."""
    val, test = float(split.val), float(split.test)
    if split.mode == "none":
        return
    if split.mode == "counts" and val.is_integer() and test.is_integer() and min(val, test) >= 0:
        return
    if split.mode == "fractions" and min(val, test) >= 0 and val + test < 1:
        return
    raise ConfigError(f"split {split.mode!r} with val={split.val}, test={split.test} is not usable: 'counts' needs "
                      f"whole numbers >= 0, 'fractions' needs shares >= 0 with val + test < 1 ('none': all test)")


def _check_disjoint(label: str, filled: dict[str, str], targets: dict[str, int]) -> None:
    """An artist-disjoint class needs a painter (group) for train and one for each of val and test that it asks for:
    fewer would silently leave a split without this class, so say so instead."""
    used = set(filled.values())
    wanted = ["train"] + [name for name in ("val", "test") if targets[name] > 0]
    missing = [name for name in wanted if name not in used]
    if missing:
        raise ConfigError(
            f"artist-disjoint split impossible: {label!r} has {len(filled)} painter(s), so {' and '.join(missing)} "
            f"would get none of its images; it needs {len(wanted)} (one per split), or drop artist_disjoint")


def _targets(n: int, split: SplitConfig) -> tuple[dict[str, int], str | None]:
    """Images wanted in val and test for a class of n images, or why the class is too small."""
    if split.mode == "counts":
        val, test = int(split.val), int(split.test)
        if n < val + test + 1:
            return {}, f"counts mode needs val {val} + test {test} + 1 train = {val + test + 1}"
        return {"val": val, "test": test}, None
    if n < 3:
        return {}, "fractions mode needs at least 3 (one per split)"
    val = max(1, round(n * split.val)) if split.val > 0 else 0
    test = max(1, round(n * split.test)) if split.test > 0 else 0
    while val + test >= n:  # keep at least one training image
        if test >= val and test > 0:
            test -= 1
        else:
            val -= 1
    return {"val": val, "test": test}, None


def _fill(order: list[str], size: pd.Series, targets: dict[str, int]) -> dict[str, str]:
    """Groups in shuffled order go to val, then test, while they fit; the rest to train."""
    filled = {"val": 0, "test": 0}
    out: dict[str, str] = {}
    for g in order:
        s = int(size[g])
        for name in ("val", "test"):
            if filled[name] + s <= targets[name]:
                out[g] = name
                filled[name] += s
                break
        else:
            out[g] = "train"
    for name in ("val", "test"):  # large groups: never leave val/test empty if it can be helped
        train = [g for g in order if out[g] == "train"]
        if targets[name] > 0 and filled[name] == 0 and len(train) > 1:
            g = min(train, key=lambda g: int(size[g]))  # min() keeps the first (shuffled) of equals
            out[g] = name
            filled[name] += int(size[g])
    return out


def _groups(df: pd.DataFrame, artist_disjoint: bool) -> pd.Series:
    """A group key per row: rows linked by content hash, near-copy group (and artist, if asked) share one.

    Union-find over the links; a group is named after its smallest image_id, which makes the
    result independent of row order.
    """
    ids = df["image_id"].astype(str).tolist()
    parent = {i: i for i in ids}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(members: list[str]) -> None:
        roots = sorted({find(m) for m in members})
        for r in roots[1:]:
            parent[r] = roots[0]

    keys = ["content_hash", "near_group"] + (["artist"] if artist_disjoint else [])
    for key in keys:
        if key not in df.columns:
            continue
        col = df[key]
        linked = col.notna() & col.duplicated(keep=False)
        for _, members in pd.Series(ids, index=df.index)[linked].groupby(col[linked]):
            union(members.tolist())
    return pd.Series([find(i) for i in ids], index=df.index)

