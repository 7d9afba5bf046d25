"""Test-time crops (`tta: [crops]`) look at the painting, not at its padding: the shared paintings are letterboxed
with black bars, and a crop of the padded square can be mostly bar, or (resize = crop, as the best recipe has it)
the centre view again. Real paintings from the shared set, decoded as the cache decodes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data.images import decode_square
from pipeline.data.transforms import CONTENT_LEVEL, BatchTransform, content_box, tta_views

CROP_VIEWS = [v for v in tta_views(["crops"]) if v != "centre"]


def _letterboxed(shared_datasets: Path, size: int) -> torch.Tensor:
    """The real paintings with the widest bars (landscape and portrait) as uint8 (B, size, size, 3) squares, their
    own darkest tones lifted to 30 so that any black row or column in a view can only be padding."""
    squares = []
    for style in ("Baroque", "Impressionism"):
        for path in sorted((shared_datasets / "wikiart-styles" / style).glob("*.jpg"))[:24]:
            square = decode_square(str(path), size)[0]
            lit = square.max(-1) > CONTENT_LEVEL
            rows, cols = np.flatnonzero(lit.any(1)), np.flatnonzero(lit.any(0))
            inside = np.zeros_like(lit)
            inside[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
            squares.append(np.where(inside[..., None], np.maximum(square, 30), 0).astype(np.uint8))
    painted = np.array([min(s.max(-1).any(1).mean(), s.max(-1).any(0).mean()) for s in squares])
    assert painted.min() < 0.6  # letterboxed: some paintings leave 40 % of the square black
    return torch.from_numpy(np.stack(squares)[np.argsort(painted)[:12]])


@pytest.mark.parametrize(("resize", "crop"), [(224, 224), (160, 144)])
def test_crop_views_are_inside_the_painting_and_never_bars(shared_datasets: Path, resize: int, crop: int) -> None:
    x = _letterboxed(shared_datasets, resize)
    transform = BatchTransform(crop, mean=(0, 0, 0), std=(1, 1, 1))
    assert len(CROP_VIEWS) == 5
    centre = transform(x, view="centre")
    assert (centre.amax(1) <= CONTENT_LEVEL / 255).all(-1).any()  # the centre view does show bars: they are there
    for view in CROP_VIEWS:
        out = transform(x, view=view)  # mean 0 / std 1: the pixels in [0, 1]
        assert out.shape == (len(x), 3, crop, crop)
        dark = out.amax(1) <= CONTENT_LEVEL / 255
        assert not dark.all(-1).any() and not dark.all(-2).any(), view  # no black row or column: no bar inside
        assert not torch.allclose(out, centre), view
    corners = torch.stack([transform(x, view=v) for v in CROP_VIEWS])
    assert all(not torch.allclose(corners[i], corners[j]) for i in range(5) for j in range(i))


def test_a_crop_view_is_four_fifths_of_the_paintings_shorter_side_at_its_corner() -> None:
    """A painting 40 high and 64 wide in a 64 square: top-left is its 32 x 32 corner (0.8 x 40), resized."""
    x = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    x[:, 12:52] = torch.randint(40, 256, (1, 40, 64, 3), generator=torch.Generator().manual_seed(0),
                                dtype=torch.uint8)
    assert content_box(x[0].permute(2, 0, 1).float() / 255) == (12, 52, 0, 64)
    transform = BatchTransform(32, mean=(0, 0, 0), std=(1, 1, 1))
    expected = {"top-left": x[0, 12:44, 0:32], "bottom-right": x[0, 20:52, 32:64], "middle": x[0, 16:48, 16:48]}
    for view, patch in expected.items():
        got = transform(x, view=view)[0]
        torch.testing.assert_close(got, patch.permute(2, 0, 1).float() / 255, atol=1e-6, rtol=0)
    flipped = transform(x, view="top-left-flip")[0]
    torch.testing.assert_close(flipped, transform(x, view="top-left")[0].flip(-1))
