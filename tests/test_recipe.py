"""The best recipe's parts: crops that stay on the painting, test-time views, ensembles, style pooling,
mixup / label smoothing / cosine schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, DataConfig, SplitConfig, build_run, replace_run
from pipeline.data.prepare import prepare
from pipeline.data.transforms import CONTENT_LEVEL, BatchTransform, content_box, tta_views
from pipeline.experiment import predict, run_experiment
from pipeline.inference import forward_pass, softmax
from pipeline.models.backbones import build_backbone
from pipeline.models.classifier import PeriodClassifier
from pipeline.models.lightning import warmup_cosine
from pipeline.train import train
from tests.conftest import TINY_EXPERIMENT, make_experiment, sql


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    cfg = DataConfig(source="demo", resize=40, crop=32, thumbnail_size=32,
                     split=SplitConfig(mode="fractions", val=0.2, test=0.2))
    return prepare(cfg, tmp_path_factory.mktemp("cache"), progress=False)


def letterboxed(n: int, size: int = 64, band: tuple[int, int] = (20, 44), seed: int = 0) -> torch.Tensor:
    """Square-padded 'paintings' as the cache holds them: black bars above and below a textured band."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, size, size, 3, dtype=torch.uint8)
    x[:, band[0] : band[1]] = torch.randint(40, 256, (n, band[1] - band[0], size, 3), generator=g, dtype=torch.uint8)
    return x


def test_random_crops_stay_on_the_painting_never_on_its_black_bars():
    x = letterboxed(8)
    assert content_box(x[0].permute(2, 0, 1).float() / 255) == (20, 44, 0, 64)
    transform = BatchTransform(32, mean=(0, 0, 0), std=(1, 1, 1), hflip=True, crop_scale=(0.05, 1.0))
    torch.manual_seed(0)
    for _ in range(25):
        out = transform(x, train=True)  # mean 0 / std 1: values are the pixels in [0, 1]
        assert out.shape == (8, 3, 32, 32)
        dark = out.amax(1) <= CONTENT_LEVEL / 255
        assert dark.float().mean() < 0.01  # (only resampling at an edge may touch a bar)
        assert not dark.all(-1).any() and not dark.all(-2).any()  # no black row or column: no bar inside a crop
    # the centre crop the reference uses (and evaluation keeps) does show the bars: the test can tell them apart
    centre = transform(x, train=False)
    assert (centre.amax(1) <= CONTENT_LEVEL / 255).all(-1).any()


def test_random_crops_vary_in_place_and_scale():
    x = letterboxed(1, band=(0, 64))
    transform = BatchTransform(32, mean=(0, 0, 0), std=(1, 1, 1), crop_scale=(0.1, 1.0))
    torch.manual_seed(1)
    crops = torch.stack([transform(x, train=True)[0] for _ in range(6)])
    assert all(not torch.allclose(crops[0], c) for c in crops[1:])


def painting_crops(pixels: torch.Tensor, place: str, crop: int) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] → each painting's square crop (0.8 of its shorter side, inside its black padding) at a
    corner or its middle, resized to crop x crop: the test-time crops, made here by hand."""
    out = []
    for img in pixels:
        lit = (img.amax(0) > CONTENT_LEVEL / 255).numpy()
        rows, cols = np.flatnonzero(lit.any(1)), np.flatnonzero(lit.any(0))
        top0, bottom, left0, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        side = int(round(0.8 * min(bottom - top0, right - left0)))
        top = {"top": top0, "bottom": bottom - side}.get(place.split("-")[0], top0 + (bottom - top0 - side) // 2)
        left = {"left": left0, "right": right - side}.get(place.split("-")[-1], left0 + (right - left0 - side) // 2)
        patch = img[None, :, top : top + side, left : left + side]
        out.append(torch.nn.functional.interpolate(patch, size=(crop, crop), mode="bilinear", align_corners=False,
                                                   antialias=True)[0])
    return torch.stack(out)


@pytest.mark.slow
def test_test_time_views_are_exactly_the_declared_ones(tiny_data):
    """TTA changes a prediction only through its declared views: its probabilities are the mean of the model's
    probabilities on those views, each made by hand here (validation and test images; training images get the
    centre view alone), and a view-free run is the plain forward pass."""
    run = build_run(name="t", strategy="finetune", epochs=1, lr=0.01, batch_size=64, tta=["flip", "crops"])
    result = train(run, tiny_data, progress=False)
    assert result.features is None
    _, logits = predict(run, result, tiny_data, progress=False)
    rows = tiny_data.images["cache_index"].to_numpy()
    model = result.model.eval()
    mean, std = result.transform.mean, result.transform.std
    pixels = torch.from_numpy(np.ascontiguousarray(tiny_data.pixels[rows])).permute(0, 3, 1, 2).float() / 255
    size, crop = pixels.shape[-1], result.transform.crop
    c = (size - crop) // 2
    by_hand = [pixels[..., c : c + crop, c : c + crop], pixels[..., c : c + crop, c : c + crop].flip(-1),
               *[painting_crops(pixels, place, crop) for place in ("top-left", "top-right", "bottom-left",
                                                                    "bottom-right", "middle")]]
    assert len(by_hand) == len(tta_views(run.augment.tta))
    with torch.inference_mode():
        probs = [torch.softmax(model((v - mean) / std)["period"], 1).numpy() for v in by_hand]
    viewed = (tiny_data.images["split"] != "train").to_numpy()
    assert viewed.any() and not viewed.all()
    want = np.where(viewed[:, None], np.mean(probs, axis=0), probs[0])
    np.testing.assert_allclose(softmax(logits["period"]), want, atol=1e-5)
    _, plain = predict(replace_run(run, tta=[]), result, tiny_data, progress=False)
    _, direct = forward_pass(model, result.transform, tiny_data.pixels, rows, 64, torch.device("cpu"),
                             progress=False)
    np.testing.assert_allclose(plain["period"], direct["period"], atol=1e-5)
    assert not np.allclose(plain["period"][viewed], logits["period"][viewed], atol=1e-3)
    np.testing.assert_allclose(plain["period"][~viewed], logits["period"][~viewed], atol=1e-5)


@pytest.mark.slow
def test_flip_augmentation_on_the_feature_cache_trains_on_both_orientations(tiny_data):
    run = build_run(name="f", strategy="head", epochs=2, lr=0.01, batch_size=64, hflip=True, tta=["flip"])
    result = train(run, tiny_data, progress=False)
    assert set(result.view_features) == {"centre", "centre-flip"}
    rows = tiny_data.images["cache_index"].to_numpy()
    mirrored, _ = forward_pass(result.model, result.transform, tiny_data.pixels, rows, 64, torch.device("cpu"),
                               heads=False, progress=False, view="centre-flip")
    np.testing.assert_allclose(result.view_features["centre-flip"], mirrored, atol=1e-5)
    n_train = int((tiny_data.images["split"] == "train").sum())
    steps_per_epoch = -(-2 * n_train // run.loop.batch_size)
    assert len(result.epochs) == 2 and steps_per_epoch > -(-n_train // run.loop.batch_size)


@pytest.mark.slow
def test_an_ensemble_run_is_the_mean_of_its_members_probabilities(tmp_path):
    spec = {**TINY_EXPERIMENT, "attributions": {"enabled": False}, "runs": [
        {"name": "a", "strategy": "head", "epochs": 2},
        {"name": "b", "strategy": "head", "epochs": 2, "pooling": "style", "optimizer": "adamw", "lr": 0.003,
         "schedule": "cosine", "warmup_epochs": 1, "label_smoothing": 0.1, "mixup": 0.2, "tta": ["flip"]},
        {"name": "ab", "strategy": "ensemble", "members": ["a", "b"]},
    ]}
    exp = make_experiment(tmp_path, spec)
    run_experiment(exp, progress=False)
    probs = {}
    for run in ("a", "b", "ab"):
        rows = sql(exp.store, "SELECT image_id, probs FROM predictions WHERE run_id = ? AND task = 'period' "
                              "ORDER BY image_id", [f"tiny/{run}"])
        probs[run] = np.array([p for _, p in rows])
    assert len(probs["ab"]) == len(probs["a"]) > 0
    np.testing.assert_allclose(probs["ab"], (probs["a"] + probs["b"]) / 2, atol=1e-5)
    assert not np.allclose(probs["a"], probs["b"], atol=1e-3)
    (checkpoint, strategy), = sql(exp.store, "SELECT checkpoint, strategy FROM runs WHERE run_id = 'tiny/ab'")
    assert checkpoint is not None and strategy == "ensemble"  # its members, by token
    dims = dict(sql(exp.store, "SELECT run_id, len(any_value(vector)) FROM embeddings GROUP BY run_id"))
    assert dims["tiny/ab"] == dims["tiny/a"] + dims["tiny/b"]


def test_ensemble_members_must_be_listed_before_it(tmp_path):
    spec = {**TINY_EXPERIMENT, "runs": [{"name": "ab", "strategy": "ensemble", "members": ["a"]},
                                        {"name": "a", "strategy": "head"}]}
    with pytest.raises(ConfigError, match="before the ensemble"):
        make_experiment(tmp_path, spec)


@pytest.mark.slow
def test_style_pooling_adds_mean_and_std_of_every_earlier_block():
    backbone = build_backbone("efficientnet_lite0", pretrained=False)
    model = PeriodClassifier(backbone, {"period": 3}, pooling="style").eval()
    channels = [16, 24, 40, 80, 112, 192]  # stage outputs of EfficientNet-Lite0 but the last (1280 after its head)
    assert model.dim == 1280 + 2 * sum(channels)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        emb = model.embed(x)
        assert torch.allclose(emb[:, :1280], backbone.body(x), atol=1e-5)  # the usual pooled features come first
    assert emb.shape == (2, model.dim)
    assert not model.body._forward_hooks and all(not t._forward_hooks for t in model.body.taps)


def test_warmup_then_cosine_reaches_zero_at_the_end():
    f = warmup_cosine(100, 10)
    assert f(0) < f(5) < f(9) <= 1.0
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


def test_discriminative_learning_rates_fall_block_by_block_towards_the_stem():
    from pipeline.models.freezing import apply_strategy, parameter_groups

    backbone = build_backbone("efficientnet_lite0", pretrained=False)
    model = PeriodClassifier(backbone, {"period": 3})
    apply_strategy(backbone, "partial", 4)  # blocks 1-4 of 7 frozen: they get no group
    groups = parameter_groups(model, backbone.blocks, 1e-3, layer_decay=0.5)
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 5e-4, 2.5e-4, 1.25e-4])
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.heads.parameters()}
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped)) == sum(p.requires_grad for p in model.parameters())


def test_class_balanced_weights_make_every_class_weigh_the_same():
    from pipeline.data.labels import IGNORE
    from pipeline.train import class_weights

    targets = np.array([[0], [0], [0], [0], [0], [0], [1], [1], [2], [IGNORE]])
    w = class_weights(targets, {"period": ["a", "b", "c", "d"]})["period"].numpy()
    np.testing.assert_allclose(w, [9 / (4 * 6), 9 / (4 * 2), 9 / (4 * 1), 0.0])
    counts = np.array([6, 2, 1, 0])
    np.testing.assert_allclose((w * counts)[:3], 9 / 4)  # each present class carries the same total weight
