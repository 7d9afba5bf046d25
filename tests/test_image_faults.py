"""Hostile images: strips and bombs decoded under a memory cap, and a decode worker that dies.

Each hostile decode runs in a child process whose address space is capped (RLIMIT_AS), so a regression
fails there with MemoryError instead of taking this machine's memory, and the child reports its own peak
RSS. A dying worker is real: a test-only image format (registered with PIL, inherited by the forked
workers) whose decoder SIGKILLs its own process, as the out-of-memory killer does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from pipeline.data.images import BadImage, decode_square, open_rgb, pad_resize, shrink, square_pad, to_rgb
from tests.conftest import REPO_ROOT, painting

CAP_MB = 1536  # the old code needed 2.7 GB for a 30000x10 JPEG, 12.9 GB for a 65535x1 PNG
PROBE = r"""
import json, resource, sys
cap = int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
import numpy as np
from pipeline.data.images import BadImage, decode_square
try:
    arr, w, h, _ = decode_square(sys.argv[2], 256)
    np.save(sys.argv[3], arr)
    out = {"size": [w, h]}
except BadImage as exc:
    out = {"reason": str(exc)}
except MemoryError:
    out = {"reason": "MemoryError"}
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent (pytest, with torch loaded)
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
out["peak_mb"] = int(hwm.split()[1]) / 1024
print(json.dumps(out))
"""


def decode_capped(path: Path) -> dict:
    """decode_square(path, 256) in a child capped at CAP_MB: {"size"} or {"reason"}, "peak_mb", "pixels"."""
    out = path.with_suffix(".npy")
    proc = subprocess.run([sys.executable, "-c", PROBE, str(CAP_MB), str(path), str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "size" in result:
        result["pixels"] = np.load(out)
    return result



def write_strip(path: Path, size: tuple[int, int], mode: str = "L") -> Path:
    Image.new(mode, size, 200 if mode == "L" else 1).save(path, quality=90)
    return path


@pytest.mark.parametrize("name,size,mode", [
    ("strip.jpg", (30000, 10), "L"),  # 17 kB; padded first: 30000^2 pixels, 2.7 GB
    ("strip.png", (65535, 1), "L"),  # 142 bytes; padded first: 12.9 GB
    ("column.png", (1, 65535), "1"),
    ("scan-line.jpg", (4000, 100), "L"),  # 40:1
])
def test_strips_are_refused_from_the_header_in_little_memory(tmp_path: Path, name: str, size: tuple[int, int],
                                                             mode: str) -> None:
    result = decode_capped(write_strip(tmp_path / name, size, mode))
    assert result.get("reason", "").startswith("extreme aspect ratio"), result
    assert f"{size[0]}x{size[1]}" in result["reason"] and "25:1" in result["reason"]
    assert result["peak_mb"] < 200, result


def test_a_decompression_bomb_is_refused_in_little_memory(tmp_path: Path) -> None:
    Image.new("1", (14000, 14000)).save(tmp_path / "bomb.png")  # 196 Mpx, ~30 kB
    result = decode_capped(tmp_path / "bomb.png")
    assert result.get("reason", "").startswith("image too large: 14000x14000"), result
    assert result["peak_mb"] < 200, result


def test_a_long_scroll_decodes_in_bounded_memory(tmp_path: Path) -> None:
    """24:1 is within the limit: resized first, it costs its own pixels, not 24000^2 (1.7 GB)."""
    scroll = Image.new("RGB", (24000, 1000), (200, 30, 30))
    scroll.paste((30, 30, 200), (12000, 0, 24000, 1000))
    scroll.save(tmp_path / "scroll.png", compress_level=1)
    del scroll

    result = decode_capped(tmp_path / "scroll.png")

    assert result.get("size") == [24000, 1000], result
    assert result["peak_mb"] < 400, result
    square = result["pixels"].astype(int)
    band = np.nonzero(square.max(axis=(1, 2)) > 8)[0]
    assert band.tolist() == list(range(122, 133))  # round(1000 * 256 / 24000) = 11 rows, centred
    assert square[:122].max() == 0 and square[133:].max() == 0
    assert np.abs(square[band, :120] - [200, 30, 30]).max() <= 2
    assert np.abs(square[band, 136:] - [30, 30, 200]).max() <= 2


@pytest.mark.parametrize("mode", ["RGBA", "I;16"])
def test_a_large_non_jpeg_costs_about_its_decoded_size(tmp_path: Path, mode: str) -> None:
    """6000x6000 (36 Mpx): reduced before the RGB conversion, which used to copy it 3-4 times (0.7-1 GB)."""
    if mode == "RGBA":
        Image.new("RGBA", (6000, 6000), (10, 120, 30, 128)).save(tmp_path / "big.png", compress_level=1)
    else:
        Image.fromarray(np.full((6000, 6000), 40000, np.uint16)).save(tmp_path / "big.png", compress_level=1)
    result = decode_capped(tmp_path / "big.png")
    assert result.get("size") == [6000, 6000], result
    assert result["peak_mb"] < 450, result
    expected = [133, 188, 143] if mode == "RGBA" else [156, 156, 156]  # over white; 40000/65535 of 255
    assert np.abs(result["pixels"][128, 128].astype(int) - expected).max() <= 1


def test_aspect_limit_is_25_to_1(tmp_path: Path) -> None:
    for size in [(10, 260), (251, 10), (250, 10), (10, 250)]:
        Image.new("RGB", size).save(tmp_path / f"{size[0]}x{size[1]}.png")
    with pytest.raises(BadImage, match="extreme aspect ratio: 10x260 is 26:1, over the limit of 25:1"):
        open_rgb(tmp_path / "10x260.png")
    with pytest.raises(BadImage, match="251x10 is 25.1:1"):
        open_rgb(tmp_path / "251x10.png")
    assert open_rgb(tmp_path / "250x10.png").size == (250, 10)
    assert open_rgb(tmp_path / "10x250.png").size == (10, 250)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "YCbCr"])
def test_shrink_keeps_colours_and_enough_pixels_in_every_mode(mode: str) -> None:
    img = Image.new(mode, (900, 450), {"I;16": 30000, "I": 200, "F": 0.5}.get(mode, 1))
    if mode in ("P", "PA"):
        img.putpalette([0, 0, 0, 200, 40, 90] + [0] * 762)
    small = shrink(img, 100)
    assert min(small.size) >= 100 and (max(small.size) <= 450 or mode == "I;16")
    expected = np.asarray(to_rgb(img))[200, 400]
    assert np.abs(np.asarray(to_rgb(small)).astype(int)[100, 200] - expected).max() <= 1, (mode, small.mode)


def test_a_large_turned_jpeg_keeps_its_orientation_when_reduced(tmp_path: Path) -> None:
    img = Image.new("RGB", (3000, 1000), (0, 200, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # stored landscape, displayed portrait
    img.save(tmp_path / "turned.jpg", exif=exif.tobytes())
    assert open_rgb(tmp_path / "turned.jpg", draft=64).size == (125, 375)  # decoded at 1/8 scale, then turned
    arr, width, height, _ = decode_square(tmp_path / "turned.jpg", 64)
    assert (width, height) == (1000, 3000)
    assert arr[:, :10].max() < 20 and arr[:, 30:34, 1].min() > 150  # portrait: bars left and right


@pytest.mark.parametrize("w,h,size", [(300, 120, 64), (120, 300, 64), (257, 256, 64), (1000, 40, 256),
                                      (640, 480, 224), (33, 100, 256), (2000, 1500, 256)])
def test_pad_resize_is_pad_then_resize_up_to_rounding(w: int, h: int, size: int) -> None:
    img = painting(w, h, seed=w)
    old = np.asarray(square_pad(img).resize((size, size), Image.Resampling.BILINEAR)).astype(int)
    new = np.asarray(pad_resize(img, size)).astype(int)
    scale = size / max(w, h)
    top, left = (size - h * scale) / 2, (size - w * scale) / 2
    lit = np.nonzero(new.max(2) > 8)
    assert abs(lit[0].min() - top) <= 1 and abs(lit[1].min() - left) <= 1  # the painting where it belongs
    assert abs(lit[0].max() + 1 - (size - top)) <= 1 and abs(lit[1].max() + 1 - (size - left)) <= 1
    t, b = int(np.ceil(top)) + 2, int(np.floor(size - top)) - 2
    lft, r = int(np.ceil(left)) + 2, int(np.floor(size - left)) - 2
    assert np.abs(old - new)[t:b, lft:r].mean() < 2.5  # inside: the same picture, bars differ by a pixel edge


KILL_MAGIC = b"PERIODEYE-KILL\n"


class KillerImage(ImageFile.ImageFile):
    """A test-only format whose decoder dies as the out-of-memory killer kills it: SIGKILL, no result."""

    format = "PEKILL"
    format_description = "Period Eye test image that kills its decoder"

    def _open(self) -> None:
        if self.fp.read(len(KILL_MAGIC)) != KILL_MAGIC:
            raise SyntaxError("not a PEKILL file")
        self._mode, self._size = "RGB", (8, 8)

    def load(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


def register_killer() -> None:
    Image.register_open(KillerImage.format, KillerImage, lambda prefix: prefix.startswith(KILL_MAGIC))


def write_set(root: Path, killers: list[str]) -> None:
    """Two classes of 10 small paintings, plus files that kill whoever decodes them."""
    for label in ("Baroque", "Rococo"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(10):
            painting(30 + 3 * i, 20 + 2 * i, seed=i + 20 * len(label)).save(root / label / f"{i}.png")
    for name in killers:
        (root / name).write_bytes(KILL_MAGIC + name.encode())


def build_with_killers(root: str, cache: str, workers: int) -> None:
    """Child process: the cache over `root` with the killer format known; prints what it recorded."""
    from pipeline.data.cache import load_or_build
    from pipeline.data.images import decode_square

    register_killer()
    paths = sorted(str(p) for p in Path(root).rglob("*.png"))
    built = load_or_build(paths, Path(cache), "faults", 24, thumb_size=16, progress=False, workers=workers)
    good = [p for p in paths if p not in built.failures]
    same = all(np.array_equal(built.pixels[i], decode_square(p, 24, 16)[0]) for i, p in enumerate(built.paths)
               if p in good)
    print(json.dumps({"failures": {Path(p).name: r for p, r in built.failures.items()}, "good": len(good),
                      "same": same, "pid": os.getpid()}))


def prepare_with_killer(root: str, cache: str) -> None:
    """Child process: the whole data step over a folder holding a killer file; prints its skip rows."""
    from pipeline.config import DataConfig
    from pipeline.data.prepare import prepare

    register_killer()
    data = prepare(DataConfig(source="imagefolder", path=root, resize=24, crop=20, thumbnail_size=16), Path(cache),
                   progress=False)
    rows = data.skipped[data.skipped["stage"] == "decode"]
    print(json.dumps({"skipped": dict(zip(rows["path"].map(lambda p: Path(p).name), rows["reason"], strict=True)),
                      "images": len(data.images)}))


def run_child(call: str) -> dict:
    """Run `call` from this module in a fresh interpreter; a hang or a dead parent fails the test."""
    code = f"import tests.test_image_faults as t; t.{call}"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(180)
@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_decode_worker_is_recorded_and_everything_else_decoded(tmp_path: Path, workers: int) -> None:
    killers = ["Baroque/killer-a.png", "Rococo/killer-b.png"]
    write_set(tmp_path / "set", killers)

    result = run_child(f"build_with_killers({str(tmp_path / 'set')!r}, {str(tmp_path / 'cache')!r}, {workers})")

    assert result["failures"] == {"killer-a.png": "decode worker died (killed, out of memory?)",
                                  "killer-b.png": "decode worker died (killed, out of memory?)"}
    assert result["good"] == 20 and result["same"]


@pytest.mark.timeout(180)
def test_prepare_records_the_file_that_killed_its_worker(tmp_path: Path) -> None:
    write_set(tmp_path / "set", ["Rococo/killer.png"])

    result = run_child(f"prepare_with_killer({str(tmp_path / 'set')!r}, {str(tmp_path / 'cache')!r})")

    assert result == {"skipped": {"killer.png": "decode worker died (killed, out of memory?)"}, "images": 20}
