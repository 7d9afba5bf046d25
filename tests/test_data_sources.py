"""Sources: ImageFolder, manifest CSV, Kaggle "Historic Art" (real artist table), the demo set."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pipeline.config import REPO_ROOT, ConfigError, DataConfig, load_experiment
from pipeline.data import demo, historic_art
from pipeline.data.historic_art import parse_date
from pipeline.data.prepare import load_source, period_order
from pipeline.data.sources import SOURCES, WIKIART_STYLES, recognise


def write_jpeg(path: Path, size: tuple[int, int] = (24, 16), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG")
    return path


def test_imagefolder_reads_labels_and_records_non_images(tmp_path: Path) -> None:
    root = tmp_path / "set"
    write_jpeg(root / "Baroque" / "a.jpg")
    write_jpeg(root / "Baroque" / "b.JPEG", seed=1)
    write_jpeg(root / "Rococo" / "nested" / "c.png", seed=2)
    (root / "Rococo" / "notes.txt").write_text("not a picture")
    (root / "Rococo" / ".DS_Store").write_bytes(b"\0")
    (root / ".cache").mkdir()
    write_jpeg(root / ".cache" / "hidden.jpg")
    write_jpeg(root / "loose.jpg")

    table = load_source(DataConfig(source="imagefolder", path=str(root)), tmp_path)

    df = table.images
    assert df["image_id"].tolist() == ["Baroque/a.jpg", "Baroque/b.JPEG", "Rococo/nested/c.png"]
    assert df["period"].tolist() == ["Baroque", "Baroque", "Rococo"]
    assert df["artist"].isna().all() and not table.synthetic
    assert all(Path(p).is_absolute() and Path(p).exists() for p in df["path"])
    reasons = {Path(s["path"]).name: s["reason"] for s in table.skipped}
    assert set(reasons) == {"notes.txt", "loose.jpg", ".DS_Store", ".cache"}
    assert "not an image file" in reasons["notes.txt"] and "class folder" in reasons["loose.jpg"]
    assert reasons[".DS_Store"].startswith("hidden file") and reasons[".cache"].startswith("hidden folder")
    assert {s["stage"] for s in table.skipped} == {"source"}


def test_imagefolder_hidden_entries_blank_padded_labels_and_symlink_loops(tmp_path: Path) -> None:
    root = tmp_path / "set"
    write_jpeg(root / "Baroque" / "a.jpg")
    write_jpeg(root / "Baroque " / "b.jpg", seed=1)  # trailing space: the same class, as in a manifest
    write_jpeg(root / " Rococo" / "c.jpg", seed=2)
    write_jpeg(root / "Baroque" / ".hidden.jpg", seed=3)
    write_jpeg(root / ".Hidden" / "d.jpg", seed=4)
    write_jpeg(root / "Baroque" / ".Hidden" / "e.jpg", seed=5)
    write_jpeg(root / "   " / "f.jpg", seed=6)
    (root / "Baroque" / "self.jpg").symlink_to("self.jpg")
    (root / "Baroque" / "ping.jpg").symlink_to("pong.jpg")
    (root / "Baroque" / "pong.jpg").symlink_to("ping.jpg")
    (root / "Baroque" / "gone.jpg").symlink_to("nowhere.jpg")  # dangling: left for the decode stage to name
    (root / "Rococo").mkdir()
    (root / "Rococo" / "back").symlink_to("..")  # a folder loop: root/Rococo/back/Rococo/back/...

    table = load_source(DataConfig(source="imagefolder", path=str(root)), tmp_path)

    df = table.images.set_index("image_id")
    assert sorted(df.index) == [" Rococo/c.jpg", "Baroque /b.jpg", "Baroque/a.jpg", "Baroque/gone.jpg"]
    assert df["period"].to_dict() == {"Baroque/a.jpg": "Baroque", "Baroque /b.jpg": "Baroque",
                                      " Rococo/c.jpg": "Rococo", "Baroque/gone.jpg": "Baroque"}
    reasons = {Path(s["path"]).relative_to(root).as_posix(): s["reason"] for s in table.skipped}
    assert reasons["Baroque/.hidden.jpg"].startswith("hidden file")
    assert reasons[".Hidden"].startswith("hidden folder") and reasons["Baroque/.Hidden"].startswith("hidden folder")
    assert not any(name.endswith(("d.jpg", "e.jpg")) for name in reasons)  # one row per hidden folder
    assert reasons["   /f.jpg"].startswith("blank class folder name")
    for link in ("Baroque/self.jpg", "Baroque/ping.jpg", "Baroque/pong.jpg", "Rococo/back"):
        assert reasons[link].startswith("symlink loop"), (link, reasons[link])
    assert len(reasons) == len(table.skipped) == 8


def test_manifest_names_a_symlink_loop(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "img" / "one.jpg")
    (tmp_path / "img" / "loop.jpg").symlink_to("loop.jpg")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,period\nimg/one.jpg,Baroque \nimg/loop.jpg,Baroque\n")

    table = load_source(DataConfig(source="manifest", path=str(manifest)), tmp_path)

    assert table.images["period"].tolist() == ["Baroque"]
    assert [(s["row"], s["reason"].split(" (")[0]) for s in table.skipped] == [(3, "symlink loop")]


def test_manifest_relative_paths_missing_period_and_unknown_label(tmp_path: Path) -> None:
    folder = tmp_path / "collection"
    write_jpeg(folder / "img" / "one.jpg")
    write_jpeg(folder / "img" / "two.jpg", seed=1)
    absolute = write_jpeg(tmp_path / "elsewhere" / "three.jpg", seed=2)
    write_jpeg(folder / "img" / "four.jpg", seed=3)
    manifest = folder / "manifest.csv"
    manifest.write_text(
        "path,period,artist,title,date\n"
        'img/one.jpg,Baroque,"REMBRANDT, van Rijn",Night Watch,1642\n'
        "img/two.jpg,,Someone,Untitled,\n"
        f"{absolute},Rococo,,,\n"
        "img/four.jpg,Cubism,Picasso,,1910\n"
    )
    cfg = DataConfig(source="manifest", path=str(manifest), period_order=["Baroque", "Rococo"])

    table = load_source(cfg, tmp_path)

    df = table.images.set_index("image_id")
    assert list(df.index) == ["img/one.jpg", str(absolute)]
    assert df.loc["img/one.jpg", "path"] == str(folder / "img" / "one.jpg")
    assert df.loc["img/one.jpg", "artist"] == "REMBRANDT, van Rijn"
    assert df.loc["img/one.jpg", "date"] == "1642"
    assert df.loc[str(absolute), "artist"] is None
    skipped = {s["row"]: s["reason"] for s in table.skipped}
    assert skipped[3] == "missing period (empty 'period' cell)"
    assert skipped[5] == "unknown period 'Cubism' (known: Baroque, Rococo)"


def test_manifest_missing_columns_is_one_error_naming_them(tmp_path: Path) -> None:
    manifest = tmp_path / "labels.csv"
    manifest.write_text("file,label\na.jpg,Baroque\n")
    with pytest.raises(ConfigError) as err:
        load_source(DataConfig(source="manifest", path=str(manifest)), tmp_path)
    message = str(err.value)
    assert "labels.csv" in message and "path, period" in message


def test_missing_data_path_raises(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_source(DataConfig(source="imagefolder", path=str(tmp_path / "nowhere")), tmp_path)


ART_COLUMNS = ["ID", "artist", "title", "picture data", "file info", "jpg url"]


def write_historic_art(root: Path, works: list[tuple[str, str, str]]) -> None:
    """artwork_dataset.csv in the real column format, plus a small JPEG per work."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "artwork_dataset.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(ART_COLUMNS)
        for i, (artist, folder, data) in enumerate(works):
            url = f"https://www.wga.hu/art/{folder}/work{i}.jpg"
            writer.writerow([i, artist, f"work {i}", data, "1700*1211, true color, 252 kb", url])
            write_jpeg(root / "artwork" / f"{i}.jpg", seed=i)


@pytest.fixture
def historic_env(shared_datasets: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PAINTINGS_SHARED", str(shared_datasets))
    return shared_datasets


def test_historic_art_joins_artists_without_duplicating_works(tmp_path: Path, historic_env: Path) -> None:
    works = [
        ("AACHEN, Hans von", "a/aachen", "1574-88, oil on canvas, 68 x 95 cm, fogg art museum"),
        ("STEVENS, Alfred", "s/steven_b", "1867, oil on canvas"),  # the painter of the two
        ("STEVENS, Alfred", "s/steven_a", "1860, bronze"),  # the sculptor: dropped
        ("ZUCCHI, Francesco", "z/zucchi/francesc", "c. 1590, oil on panel"),  # the painter
        ("ZUCCHI, Francesco", "z/zucchi1/francesc", "1750, etching"),  # graphic artist: dropped
        ("BRUEGEL, Pieter the Elder", "b/bruegel/pieter_e/1", "1563, oil on oak panel"),  # nested folder
        ("ABADIE, Paul", "a/abadie", "1875, architecture"),  # architect: dropped
        ("NOBODY, Invented", "n/nobody", "-, oil"),  # not in info_dataset.csv: skipped
    ]
    root = tmp_path / "historic"
    write_historic_art(root, works)  # no info_dataset.csv here: the shared one is used

    table = load_source(DataConfig(source="historic_art", path=str(root)), tmp_path)

    df = table.images.set_index("image_id")
    assert sorted(df.index) == ["0", "1", "3", "5"]
    assert df.index.is_unique
    assert df["period"].to_dict() == {"0": "Mannerism", "1": "Realism", "3": "Mannerism", "5": "Northern Renaissance"}
    assert df.loc["0", "artist"] == "AACHEN, Hans von" and df.loc["0", "date"] == "1574-88"
    assert df.loc["3", "date"] == "c. 1590" and df.loc["0", "title"] == "work 0"
    assert df.loc["5", "path"] == str(root / "artwork" / "5.jpg")
    info = pd.read_csv(historic_env / "historic-art-metadata" / "info_dataset.csv")
    painters = set(info.loc[info["school"] == "painter", "artist"])
    assert set(df["artist"]) <= painters
    assert len(table.skipped) == 1
    assert table.skipped[0]["row"] == 9 and "NOBODY, Invented" in table.skipped[0]["reason"]


def test_historic_art_twelve_artists_subset(tmp_path: Path, historic_env: Path) -> None:
    twelve = pd.read_csv(historic_env / "historic-art-metadata" / "twelve_artists.csv")
    works = []
    for artist, url in zip(twelve["artist"], twelve["url"], strict=True):
        folder = url.split("/html/")[1].rsplit("/index.html")[0]
        works += [(artist, folder, "1500, oil"), (artist, folder, "1501, oil")]
    works += [("AACHEN, Hans von", "a/aachen", "1580, oil"), ("AAGAARD, Carl Frederik", "a/aagaard", "1870, oil")]
    root = tmp_path / "historic"
    write_historic_art(root, works)

    subset = load_source(DataConfig(source="historic_art", path=str(root), subset="twelve_artists"), tmp_path).images
    everyone = load_source(DataConfig(source="historic_art", path=str(root)), tmp_path).images

    assert sorted(subset["artist"].unique()) == sorted(twelve["artist"])
    assert subset["period"].nunique() == 6 and len(subset) == 24
    assert len(everyone) == 26 and everyone["artist"].nunique() == 14


def test_historic_art_missing_columns(tmp_path: Path, historic_env: Path) -> None:
    (tmp_path / "artwork_dataset.csv").write_text("ID,title\n0,venus\n")
    with pytest.raises(ConfigError, match="artist, jpg url"):
        load_source(DataConfig(source="historic_art", path=str(tmp_path)), tmp_path)


def test_parse_date() -> None:
    assert parse_date("1574-88, oil on canvas, 68 x 95 cm") == "1574-88"
    assert parse_date("c. 1500, tempera on wood") == "c. 1500"
    assert parse_date("-, oil on canvas") is None
    assert parse_date("oil on canvas, 1500") is None


@pytest.mark.slow
def test_demo_is_deterministic_with_five_periods_of_three_artists(tmp_path: Path) -> None:
    first = demo.generate_demo(tmp_path / "one")
    second = demo.generate_demo(tmp_path / "two")
    files = sorted(p.relative_to(first.parent) for p in first.parent.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second.parent) for p in second.parent.rglob("*") if p.is_file())
    assert all((first.parent / f).read_bytes() == (second.parent / f).read_bytes() for f in files)

    stamp = first.stat().st_mtime_ns
    demo.generate_demo(tmp_path / "one")  # already there: not regenerated
    assert first.stat().st_mtime_ns == stamp

    table = load_source(DataConfig(source="demo"), tmp_path)
    df = table.images
    assert table.synthetic
    assert sorted(df["period"].unique()) == sorted(demo.PERIODS)
    assert df.groupby("period")["artist"].nunique().tolist() == [3] * 5
    assert len(df) == 5 * 3 * demo.IMAGES_PER_ARTIST + 2  # plus the two deliberately bad files
    sizes = {Image.open(p).size for p in df["path"][:50] if "bad" not in p}
    assert len(sizes) > 10 and any(w != h for w, h in sizes)
    assert period_order(set(df["period"])) == demo.PERIODS


def test_period_order_uses_a_known_chronology() -> None:
    assert period_order({"Rococo", "Medieval", "Baroque"}) == ["Medieval", "Baroque", "Rococo"]
    assert period_order(set(WIKIART_STYLES)) == WIKIART_STYLES
    assert period_order(set(historic_art.PERIODS)) == historic_art.PERIODS
    assert period_order({"b", "a"}) == ["a", "b"]
    assert period_order({"x", "y"}, ["y", "x", "z"]) == ["y", "x"]


# The class orders as they were when the chronologies lived in prepare.py, written out so a moved or edited
# chronology that changes a stored run's class order fails here.
ORDERS = {
    "historic_art": ["Medieval", "Early Renaissance", "Northern Renaissance", "High Renaissance", "Mannerism",
                     "Baroque", "Rococo", "Neoclassicism", "Romanticism", "Realism", "Impressionism", "Art Nouveau"],
    "wikiart-styles": ["Baroque", "Romanticism", "Impressionism", "Post-Impressionism", "Symbolism", "Art_Nouveau",
                       "Expressionism"],
    "demo": ["Synthetic Gothic", "Synthetic Renaissance", "Synthetic Baroque", "Synthetic Impressionism",
             "Synthetic Modern"],
}
CONFIGS = sorted((REPO_ROOT / "configs").glob("*.yaml"))


def historic_stand_in(shared: Path, root: Path) -> Path:
    """A Historic Art folder with a work by each of the reference twelve and by a painter of every period."""
    metadata = shared / "historic-art-metadata"
    info = pd.read_csv(metadata / "info_dataset.csv", dtype=str).fillna("")
    painters = info[(info["school"].str.lower() == "painter") & info["url"].str.contains("/html/")]
    painters = painters[~painters["artist"].duplicated(keep=False)]
    chosen = pd.concat([painters.drop_duplicates("period"),
                        painters[painters["artist"].isin(pd.read_csv(metadata / "twelve_artists.csv")["artist"])]])
    write_historic_art(root, [(r.artist, r.url.split("/html/")[1].rsplit("/index.html")[0], "1600, oil")
                              for r in chosen.itertuples()])
    return root


def expected_order(data: DataConfig) -> list[str]:
    """The class order each config's data had: a wikiart-styles folder, or the source's own chronology."""
    paths = [data.path] if data.path else [s.path for s in data.sources]  # several sources: wikiart-styles + extra
    if data.source == "imagefolder" and paths and all(Path(p).name.startswith("wikiart-styles") for p in paths):
        return ORDERS["wikiart-styles"]
    return ORDERS[data.source]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_keeps_its_period_order(config: Path, tmp_path: Path, shared_datasets: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAINTINGS_SHARED", str(shared_datasets))
    path = (yaml.safe_load(config.read_text())["data"].get("path") or "")
    if "${HISTORIC_ART}" in path and not os.environ.get("HISTORIC_ART"):  # the Kaggle set is not shared: a stand-in
        monkeypatch.setenv("HISTORIC_ART", str(historic_stand_in(shared_datasets, tmp_path / "historic")))
    data = load_experiment(config).data
    labels = set(load_source(data, tmp_path).images["period"])

    order = period_order(labels, data.period_order)

    assert order == [p for p in expected_order(data) if p in labels] and set(order) == labels


def test_data_path_on_the_shared_wikiart_folder_keeps_its_order(shared_datasets: Path, tmp_path: Path) -> None:
    config = REPO_ROOT / "configs" / "reference-wikiart.yaml"
    data = load_experiment(config, data_path=str(shared_datasets / "wikiart-styles")).data
    assert data.source == "imagefolder" and data.period_order is None
    assert period_order(set(load_source(data, tmp_path).images["period"])) == ORDERS["wikiart-styles"]


def test_the_registry_is_the_list_of_sources(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,period\n")
    (tmp_path / "kaggle").mkdir()
    (tmp_path / "kaggle" / "artwork_dataset.csv").write_text("")
    assert [recognise(tmp_path / "m.csv"), recognise(tmp_path / "kaggle"), recognise(tmp_path)] == \
        ["manifest", "historic_art", "imagefolder"]
    with pytest.raises(ConfigError, match="neither a directory nor a manifest"):
        recognise(tmp_path / "nowhere")
    config = tmp_path / "x.yaml"
    config.write_text(yaml.safe_dump({"name": "x", "data": {"source": "flickr"}, "runs": [{"name": "r"}]}))
    with pytest.raises(ConfigError) as err:
        load_experiment(config)
    assert all(name in str(err.value) for name in SOURCES)
    with pytest.raises(ConfigError, match="unknown data source 'flickr'"):
        load_source(DataConfig(source="flickr"), tmp_path)


def loaded_after(module: str) -> list[str]:
    """Which of torch, the config and the source registry a fresh interpreter has loaded after importing `module`."""
    code = (f"import sys, {module}; "
            "print(' '.join(m for m in ('torch', 'pipeline.config', 'pipeline.data.sources') if m in sys.modules))")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout.split()


def test_config_and_registry_import_one_way_without_torch() -> None:
    """The config reads the registry's names when it checks a file; the registry never reads the config back."""
    assert loaded_after("pipeline.data.sources") == ["pipeline.data.sources"]
    assert loaded_after("pipeline.config") == ["pipeline.config"]
