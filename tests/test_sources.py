"""Several sources in one dataset (`data.sources`): one table of images with a `source` column, paintings found in
two sources kept once, a `[train, val]` source never tested on, and the main source's test split the one it has
alone, so results stay comparable with a single-source run. Real paintings from the shared sets, copied small."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.config import ConfigError, DataConfig, SourceConfig, SplitConfig, load_experiment
from pipeline.data.prepare import prepare
from pipeline.store import write_dataset
from tests.conftest import copy_store, open_dashboard

PER_STYLE = 24  # paintings per style and source: 7 styles x 24 x 2 sources, decoded at 32 px
SPLIT = SplitConfig(mode="fractions", val=0.2, test=0.2, seed=0)


def _small(**settings: Any) -> DataConfig:
    """A data config at 32 px (decoding is the cost), 60/20/20 seeded."""
    return DataConfig(resize=32, crop=28, thumbnail_size=16, split=SPLIT, **settings)


def _copy_styles(source: Path, folder: Path, per_style: int) -> Path:
    """The first `per_style` paintings (by name) of every style, as an ImageFolder of real files."""
    for style in sorted(d for d in source.iterdir() if d.is_dir()):
        (folder / style.name).mkdir(parents=True)
        for image in sorted(style.glob("*.jpg"))[:per_style]:
            shutil.copyfile(image, folder / style.name / image.name)
    return folder


@pytest.fixture(scope="module")
def sets(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`main` (from wikiart-styles) alone, then with `extra` (from wikiart-styles-extra, train/val only) into which
    one test painting and one train painting of `main` are copied under the same names, and one of its own
    paintings twice (the extra set has copies of its own)."""
    root = tmp_path_factory.mktemp("sources")
    main = _copy_styles(shared_datasets / "wikiart-styles", root / "main", PER_STYLE)
    extra = _copy_styles(shared_datasets / "wikiart-styles-extra", root / "extra", PER_STYLE)
    alone = prepare(_small(source="imagefolder", path=str(main)), root / "cache", progress=False)
    by_split = alone.images.groupby("split")["image_id"].min()
    copied = {"test": by_split["test"], "train": by_split["train"]}
    for image_id in copied.values():
        shutil.copyfile(main / image_id, extra / image_id)  # same name, same bytes: a collision and a copy
    own = sorted((extra / "Baroque").glob("*.jpg"))[0]
    shutil.copyfile(own, extra / "Baroque" / f"copy-of-{own.name}")
    cfg = _small(sources=[SourceConfig(path=str(extra), source="imagefolder", name="extra", splits=["train", "val"]),
                          SourceConfig(path=str(main), source="imagefolder", name="main")], source="imagefolder")
    both = prepare(cfg, root / "cache", progress=False)
    return {"alone": alone, "both": both, "copied": copied, "own": own, "root": root}


def test_the_main_sources_splits_are_those_it_has_alone(sets: dict) -> None:
    """Listed second, it still keeps its ids and every split: the test split equals the single-source one."""
    alone, both = sets["alone"].images, sets["both"].images
    mine = both[both["source"] == "main"]
    assert set(mine.loc[mine["split"] == "test", "image_id"]) == set(alone.loc[alone["split"] == "test", "image_id"])
    assert set(both.loc[both["split"] == "test", "image_id"]) == set(alone.loc[alone["split"] == "test", "image_id"])
    assert dict(zip(mine["image_id"], mine["split"], strict=True)) == dict(
        zip(alone["image_id"], alone["split"], strict=True))


def test_a_train_val_source_is_never_tested_and_fills_train_and_val(sets: dict) -> None:
    both = sets["both"].images
    extra = both[both["source"] == "extra"]
    counts = extra["split"].value_counts()
    assert "test" not in counts
    assert len(extra) == 7 * PER_STYLE + 1  # its own and its own copy; its copies of main's paintings are gone
    # 0.2 of 0.8 of every class goes to val: the configured shares renormalised over train and val
    assert counts["val"] == pytest.approx(0.25 * len(extra), abs=7)
    assert sets["both"].periods == sets["alone"].periods and sets["both"].name == "extra+main"


def test_a_painting_in_both_sources_is_kept_once_in_the_unrestricted_one(sets: dict) -> None:
    both, skipped = sets["both"].images, sets["both"].skipped
    for split, image_id in sets["copied"].items():
        same = both[both["content_hash"] == both.loc[both["image_id"] == image_id, "content_hash"].iat[0]]
        assert list(same["image_id"]) == [image_id] and list(same["source"]) == ["main"]
        assert list(same["split"]) == [split]
        reason = skipped.loc[skipped["path"].str.endswith(f"extra/{image_id}"), "reason"]
        assert list(reason) == [f"copy of a {split} image in main"]
    assert not both["image_id"].str.startswith("extra/").any()  # the colliding names were the copies, now gone


def test_copies_inside_the_restricted_source_stay_together(sets: dict) -> None:
    both, own = sets["both"].images, sets["own"]
    pair = both[both["image_id"].isin([f"Baroque/{own.name}", f"Baroque/copy-of-{own.name}"])]
    assert len(pair) == 2 and pair["split"].nunique() == 1 and pair["split"].iat[0] in ("train", "val")


def test_colliding_ids_get_the_source_name(sets: dict, tmp_path: Path) -> None:
    """Two sources with the same file names and different paintings: the second's ids get `<name>/` in front."""
    root = sets["root"]
    other = tmp_path / "other"
    shutil.copytree(root / "extra" / "Baroque", other / "Baroque")
    taken = {p.name for p in (other / "Baroque").iterdir()}
    main_name = next(p.name for p in sorted((root / "main" / "Baroque").glob("*.jpg")) if p.name not in taken)
    painting = sorted((root / "extra" / "Expressionism").glob("*.jpg"))[0]  # another painting, a main file's name
    shutil.copyfile(painting, other / "Baroque" / main_name)
    cfg = _small(sources=[SourceConfig(path=str(root / "main"), source="imagefolder", name="main"),
                          SourceConfig(path=str(other), source="imagefolder", name="other", splits=["train", "val"])],
                 source="imagefolder")
    images = prepare(cfg, tmp_path / "cache", progress=False).images
    assert images["image_id"].is_unique
    assert f"other/Baroque/{main_name}" in set(images["image_id"])
    assert images.loc[images["image_id"] == f"Baroque/{main_name}", "source"].tolist() == ["main"]


def test_the_store_has_one_dataset_with_a_source_per_image(sets: dict, tmp_path: Path) -> None:
    """Several sources: the source's name; one source: NULL (as every dataset stored before sources existed)."""
    store = tmp_path / "store.duckdb"
    both, alone = sets["both"], sets["alone"]
    write_dataset(store, both)
    write_dataset(store, alone)
    with duckdb.connect(str(store), read_only=True) as con:
        rows = con.execute("SELECT dataset_id, source, split, count(*) FROM images GROUP BY ALL").fetchall()
    per = {(d == both.dataset_id, s, split): n for d, s, split, n in rows}
    assert per[(True, "extra", "train")] + per[(True, "extra", "val")] == (both.images["source"] == "extra").sum()
    assert (True, "extra", "test") not in per
    assert {s for (mine, s, _) in per if not mine} == {None}


def test_a_single_source_keeps_its_dataset_id() -> None:
    """Adding `sources` (at its default) changes no stored dataset's id (ids computed before it existed)."""
    assert DataConfig(source="imagefolder", path="/data/wikiart-styles", resize=160, crop=144).key() == \
        "wikiart-styles-934099f6"
    assert DataConfig().key() == "demo-1faa1bc6"


def test_the_key_covers_every_source() -> None:
    one = SourceConfig(path="/data/a", source="imagefolder", name="a")
    two = SourceConfig(path="/data/b", source="imagefolder", name="b", splits=["train", "val"])
    keys = {DataConfig(sources=s).key() for s in (
        [one], [one, two], [one, SourceConfig(path="/data/b", source="imagefolder", name="b")],
        [one, SourceConfig(path="/data/c", source="imagefolder", name="b", splits=["train", "val"])])}
    assert len(keys) == 4


def _experiment(tmp_path: Path, data: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(f"data:\n{data}\nruns:\n  - {{name: a}}\n")
    return path


@pytest.mark.parametrize(("data", "line"), [
    ("  sources:\n    - {path: MAIN, source: flickr}", "data.sources[0].source 'flickr' unknown"),
    ("  sources:\n    - {path: MAIN}\n    - {path: /nowhere/at-all}",
     "data.sources[1].path /nowhere/at-all does not exist"),
    ("  sources:\n    - {path: MAIN}\n    - {path: EXTRA, splits: []}",
     "data.sources[1].splits must be a list of splits"),
    ("  sources:\n    - {path: MAIN}\n    - {path: EXTRA, splits: [train, tset]}",
     "data.sources[1].splits must be a list of splits"),
    ("  path: MAIN\n  sources:\n    - {path: EXTRA}", "data.path and data.sources both given"),
    ("  sources:\n    - {path: MAIN}\n    - {path: MAIN}", "data.sources[1].name 'main' is also the name of "
     "data.sources[0]"),
    ("  sources:\n    - {path: MAIN, colour: red}", "data.sources[0]: unknown key 'colour'"),
    ("  sources: []", "data.sources must be a non-empty list"),
    ("  split: {mode: none}\n  sources:\n    - {path: MAIN}\n    - {path: EXTRA, splits: [train, val]}",
     "cannot be used with data.split.mode 'none'"),
])
def test_a_bad_source_entry_is_one_line_before_any_work(tmp_path: Path, data: str, line: str) -> None:
    (tmp_path / "main" / "Baroque").mkdir(parents=True)
    (tmp_path / "extra" / "Baroque").mkdir(parents=True)
    text = data.replace("MAIN", str(tmp_path / "main")).replace("EXTRA", str(tmp_path / "extra"))
    with pytest.raises(ConfigError) as caught:
        load_experiment(_experiment(tmp_path, text), store=str(tmp_path / "store.duckdb"))
    assert len(caught.value.problems) == 1 and line in caught.value.problems[0]
    assert not (tmp_path / "store.duckdb").exists()


def test_sources_read_from_yaml_resolve_kind_name_and_splits(tmp_path: Path) -> None:
    (tmp_path / "main" / "Baroque").mkdir(parents=True)
    (tmp_path / "extra" / "Baroque").mkdir(parents=True)
    text = (f"  sources:\n    - {{path: {tmp_path / 'main'}, splits: [train, val, test]}}\n"
            f"    - {{path: {tmp_path / 'extra'}, name: more, splits: [train, val]}}")
    data = load_experiment(_experiment(tmp_path, text), store=str(tmp_path / "store.duckdb")).data
    assert [(s.source, s.name, s.splits) for s in data.sources] == [("imagefolder", "main", None),
                                                                      ("imagefolder", "more", ["train", "val"])]
    assert data.dataset_name == "main+more" and data.path is None and data.source == "imagefolder"



@pytest.mark.slow  # the demo store (trained runs: the dashboard shows an empty store otherwise)
def test_the_data_page_counts_images_per_source(sets: dict, demo_store: Path, tmp_path: Path, monkeypatch) -> None:
    store = copy_store(demo_store, tmp_path)
    both = sets["both"]
    write_dataset(store, both)
    at = open_dashboard(store, monkeypatch, "data.py", dataset=both.dataset_id)
    n = both.images.groupby("source")["split"].value_counts().unstack(fill_value=0)
    line = next(c.value for c in at.caption if c.value.startswith("From 2 sources"))
    assert f"main {len(both.images[both.images['source'] == 'main'])} (train {n.loc['main', 'train']} · " in line
    assert f"extra {n.loc['extra'].sum()} (train {n.loc['extra', 'train']} · val {n.loc['extra', 'val']} · test 0)" \
        in line
    single = open_dashboard(store, monkeypatch, "data.py")  # the demo's own dataset: one source, no such line
    assert not any(c.value.startswith("From ") for c in single.caption)
