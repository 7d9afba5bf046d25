"""Bad and unusual image files: each is converted to RGB or skipped with a reason, never a crash."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.config import ConfigError, DataConfig
from pipeline.data.images import BadImage, decode_square, open_rgb
from pipeline.data.prepare import prepare


def jpeg_bytes(size: tuple[int, int] = (64, 48), mode: str = "RGB", color: object = (200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def make_cases(folder: Path) -> tuple[dict[str, str], list[str]]:
    """Write every awkward case; return ({bad file: expected reason start}, [convertible files])."""
    folder.mkdir(parents=True, exist_ok=True)
    bad = {
        "zero.jpg": "empty file",
        "truncated.jpg": "truncated or corrupt image",
        "corrupt.jpg": "truncated or corrupt image",
        "text.jpg": "not an image",
        "bomb.png": "image too large",
        "missing.jpg": "file not found",
        "loop.jpg": "symlink loop",
    }
    (folder / "zero.jpg").write_bytes(b"")
    noisy = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(noisy, "JPEG")
    (folder / "truncated.jpg").write_bytes(noisy.getvalue()[: len(noisy.getvalue()) // 2])
    (folder / "corrupt.jpg").write_bytes(noisy.getvalue()[:200] + bytes(range(256)) * 8)
    (folder / "text.jpg").write_text("<html>404 not found</html>")
    Image.new("1", (14000, 14000)).save(folder / "bomb.png")  # 196 Mpx > 2 x the default limit, ~30 kB on disk
    os.symlink(folder / "gone.jpg", folder / "missing.jpg")  # a dangling link: listed, but no file behind it
    os.symlink(folder / "loop.jpg", folder / "loop.jpg")  # a link to itself: not "file not found"

    (folder / "cmyk.jpg").write_bytes(jpeg_bytes(mode="CMYK", color=(0, 255, 255, 0)))
    Image.new("L", (40, 30), 128).save(folder / "grey.png")
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 20, 30))
    rgba.save(folder / "rgba.png")
    Image.fromarray(np.full((30, 40), 65535, np.uint16)).save(folder / "deep16.png")
    palette = Image.new("P", (40, 30), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(0, (0, 0, 20, 30))
    palette.save(folder / "palette.png", transparency=0)
    rotated = Image.new("RGB", (60, 20), (0, 200, 0))
    exif = rotated.getexif()
    exif[0x0112] = 6  # stored landscape, displayed portrait
    rotated.save(folder / "rotated.jpg", exif=exif.tobytes())
    good = ["cmyk.jpg", "grey.png", "rgba.png", "deep16.png", "palette.png", "rotated.jpg"]
    return bad, good


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], list[str]]:
    folder = tmp_path_factory.mktemp("bad") / "Baroque"
    bad, good = make_cases(folder)
    return folder, bad, good


def test_each_bad_file_raises_bad_image_with_a_reason(cases: tuple[Path, dict[str, str], list[str]]) -> None:
    folder, bad, _ = cases
    for name, reason in bad.items():
        with pytest.raises(BadImage) as err:
            open_rgb(folder / name)
        assert str(err.value).startswith(reason), (name, str(err.value))


def test_bomb_warning_zone_is_an_error_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (80, 80)).save(tmp_path / "big.png")  # 6400 px: above the limit, below twice it (a warning)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64)
    with pytest.raises(BadImage, match="image too large: 80x80 exceeds the limit of 4096 pixels"):
        open_rgb(tmp_path / "big.png")


def test_unusual_modes_become_rgb(cases: tuple[Path, dict[str, str], list[str]]) -> None:
    folder, _, good = cases
    images = {name: open_rgb(folder / name) for name in good}
    assert all(img.mode == "RGB" for img in images.values())
    px = {name: np.asarray(img).astype(int) for name, img in images.items()}
    assert np.abs(px["cmyk.jpg"].mean(axis=(0, 1)) - [255, 0, 0]).max() < 10  # cyan-free magenta+yellow = red
    assert (px["grey.png"] == 128).all()
    assert (px["rgba.png"][:, :20] == 255).all() and (px["rgba.png"][:, 20:] == [255, 0, 0]).all()
    assert (px["deep16.png"] == 255).all()  # 65535 scaled to 255, not clipped garbage
    assert (px["palette.png"][:, :20] == 255).all() and (px["palette.png"][:, 20:] == [0, 0, 255]).all()
    assert images["rotated.jpg"].size == (20, 60)


def test_sixteen_bit_values_are_scaled(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 257 * 128, 65535]], np.uint16)).save(tmp_path / "ramp.png")
    assert np.asarray(open_rgb(tmp_path / "ramp.png"))[0, :, 0].tolist() == [0, 128, 255]


def test_decode_square_pads_and_reports_display_size(cases: tuple[Path, dict[str, str], list[str]]) -> None:
    folder, _, _ = cases
    arr, width, height, thumb = decode_square(folder / "rotated.jpg", 32, thumb_size=16)
    assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8
    assert (width, height) == (20, 60)
    assert arr[:, :5].max() < 20 and arr[:, 13:19, 1].min() > 150  # black bars left and right, green centre
    assert Image.open(io.BytesIO(thumb)).size == (5, 16)


def test_prepare_over_a_folder_of_bad_files_never_raises(tmp_path: Path,
                                                         cases: tuple[Path, dict[str, str], list[str]]) -> None:
    folder, bad, good = cases
    root = folder.parent
    (root / "Baroque" / "readme.txt").write_text("about this folder")
    Image.new("RGB", (30, 20), (9, 9, 9)).save(root / "Baroque" / "plain.jpg")
    (root / "Rococo").mkdir(exist_ok=True)
    Image.new("RGB", (30, 20)).save(root / "Rococo" / "alone.jpg")  # one image: too small to split

    data = prepare(DataConfig(source="imagefolder", path=str(root), resize=32, crop=28), tmp_path / "cache",
                   progress=False)

    assert sorted(data.images["image_id"]) == sorted(f"Baroque/{n}" for n in [*good, "plain.jpg"])
    reasons = {Path(p).name: r for p, r in zip(data.skipped["path"], data.skipped["reason"], strict=True)}
    for name, reason in bad.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    assert "not an image file" in reasons["readme.txt"]
    assert reasons["alone.jpg"].startswith("class too small")
    stages = dict(zip(data.skipped["path"].map(lambda p: Path(p).name), data.skipped["stage"], strict=True))
    assert stages["readme.txt"] == "source" and stages["bomb.png"] == "decode" and stages["alone.jpg"] == "split"
    assert stages["loop.jpg"] == "source"
    assert data.periods == ["Baroque"]
    widths = dict(zip(data.images["image_id"], data.images["width"], strict=True))
    assert widths["Baroque/rotated.jpg"] == 20


def test_no_usable_image_at_all_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "set" / "Baroque").mkdir(parents=True)
    (tmp_path / "set" / "Baroque" / "a.jpg").write_bytes(b"")
    (tmp_path / "set" / "Baroque" / "b.jpg").write_text("not a picture")
    with pytest.raises(ConfigError, match="no usable images .*empty file.*not an image"):
        prepare(DataConfig(source="imagefolder", path=str(tmp_path / "set")), tmp_path / "cache", progress=False)
