"""The bad-config matrix: each hostile experiment file or argument fails before any work starts, with exit code 2,
one line on stderr naming the key (or the YAML line) at fault, no traceback, and nothing written.

Most cases run the CLI in-process with the experiment runner replaced by a tripwire, so a config that slips
through fails the test at once instead of training; a few run `python -m pipeline` for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import pipeline.config
from pipeline.__main__ import main
from pipeline.config import REPO_ROOT, ConfigError, load_experiment

BASE = {"name": "bad", "data": {"source": "demo"}, "runs": [{"name": "a"}]}
# 9 levels of 9 aliases: 387 million strings once expanded, all inside one key the old loader accepted
LAUGHS = zip("abcdefghi", ["lol"] + [f"*{c}" for c in "abcdefgh"], strict=True)  # &b is 9 x *a, ...
BILLION_LAUGHS = "name: x\nruns: [{name: r}]\ndata:\n  period_order:\n" + "".join(
    f"    - &{name} [{', '.join([item] * 9)}]\n" for name, item in LAUGHS)


def run(**settings) -> dict:
    return {"runs": [{"name": "a", **settings}]}


def data(**settings) -> dict:
    return {"data": {"source": "demo", **settings}}


def attributions(**settings) -> dict:
    return {"attributions": settings}


# (id, the file: changes to BASE or the raw text/bytes, what the one error line says right after the file name)
CASES = [
    # issue 10, item 9: these failed only after training, or with a traceback
    ("ig_steps-0", attributions(ig_steps=0), "attributions.ig_steps must be an integer >= 1, got 0"),
    ("heatmap_size-0", attributions(heatmap_size=0), "attributions.heatmap_size must be an integer in [8, 1024]"),
    ("nul-in-run-name", {"runs": [{"name": "a\0b"}]}, "runs[0].name must be a name of letters"),
    ("stage2_lr_factor-negative", run(stage2_lr_factor=-1), "runs[0].stage2_lr_factor must be a number in (0, 1]"),
    ("epochs-text", run(epochs="ten"), "runs[0].epochs must be an integer >= 1, got 'ten'"),
    ("lr-negative", run(lr=-0.01), "runs[0].lr must be a number in (0, 10], got -0.01"),
    ("yaml-syntax", "name: x\nruns: [{name: a}\ndata: {source: demo}\n",
     "not valid YAML at line 3, column 1: did not find expected ',' or ']'"),
    ("python-object-tag", "name: x\nruns: !!python/object:os.system [ls]\n",
     "line 2, column 7: tag '!!python/object:os.system' is not allowed"),
    ("data-as-list", {"data": ["demo"]}, "data must be a mapping (key: value lines), got a list"),
    ("runs-as-dict", {"runs": {"a": {"strategy": "head"}}}, "runs must be a list of runs"),
    # issue 10, item 10: nonsense that was stored as a finished run, or blamed on the wrong thing
    ("lr-0", run(lr=0), "runs[0].lr must be a number in (0, 10], got 0"),
    ("lr-nan", run(lr=float("nan")), "runs[0].lr must be a number in (0, 10], got nan"),
    ("max_minutes-negative", run(max_minutes=-1), "runs[0].max_minutes must be a number > 0, or null, got -1"),
    ("patience-negative", run(patience=-1), "runs[0].patience must be an integer >= 0, got -1"),
    ("thumbnail_size-negative", data(thumbnail_size=-5), "data.thumbnail_size must be an integer in [16, 1024]"),
    ("accelerator-gpu-without-gpu", run(accelerator="gpu"), "runs[0].accelerator: accelerator 'gpu' but this "
     "machine has no usable CUDA GPU"),
    ("resize-0", data(resize=0), "data.resize must be an integer in [8, 4096], got 0"),
    ("period_order-text", data(period_order="Baroque"), "data.period_order must be a list of strings"),
    # the same family: wrong types, out of range, impossible combinations, hostile files
    ("epochs-fraction", run(epochs=2.5), "runs[0].epochs must be an integer >= 1, got 2.5"),
    ("epochs-bool", run(epochs=True), "runs[0].epochs must be an integer >= 1, got True"),
    ("lr-inf", run(lr=float("inf")), "runs[0].lr must be a number in (0, 10], got inf"),
    ("lr-text", run(lr="fast"), "runs[0].lr must be a number in (0, 10], got 'fast'"),
    ("batch_size-0-in-defaults", {"defaults": {"batch_size": 0}, "runs": [{"name": "a"}, {"name": "b"}]},
     "defaults.batch_size must be an integer >= 1, got 0"),
    ("momentum-1.5", run(momentum=1.5), "runs[0].momentum must be a number in [0, 1), got 1.5"),
    ("dropout-1", run(dropout=1), "runs[0].dropout must be a number in [0, 1), or null, got 1"),
    ("weight_decay-negative", run(weight_decay=-0.1), "runs[0].weight_decay must be a number in [0, 1]"),
    ("plateau_factor-2", run(plateau_factor=2), "runs[0].plateau_factor must be a number in (0, 1)"),
    ("seed-negative", run(seed=-1), "runs[0].seed must be an integer in [0, 4294967295], got -1"),
    ("seed-too-big", run(seed=2**40), "runs[0].seed must be an integer in [0, 4294967295]"),
    ("num_workers-negative", run(num_workers=-1), "runs[0].num_workers must be an integer in [0, 256]"),
    ("stage2_epochs-0", run(stage2_epochs=0), "runs[0].stage2_epochs must be an integer >= 1, got 0"),
    ("warmup-negative", run(warmup_epochs=-1), "runs[0].warmup_epochs must be a number >= 0, got -1"),
    ("pretrained-text", run(pretrained="yes please"), "runs[0].pretrained must be true or false"),
    ("accelerator-tpu", run(accelerator="tpu"), "runs[0].accelerator 'tpu' unknown; choose from 'auto', 'cpu'"),
    ("freeze_until-past-blocks", run(strategy="partial", freeze_until=9, backbone="resnet18"),
     "runs[0].freeze_until must be from 1 to 4 (the blocks of resnet18), got 9"),
    ("run-name-path", {"runs": [{"name": "../../etc"}]}, "runs[0].name must be a name of letters"),
    ("run-name-number", {"runs": [{"name": 7}]}, "runs[0].name must be a name of letters"),
    ("run-without-name", {"runs": [{"strategy": "head"}]}, "runs[0].name is required"),
    ("run-as-text", {"runs": ["a"]}, "runs[0] must be a mapping (key: value lines), got 'a'"),
    ("name-with-slash", {"name": "a/b"}, "name must be a name of letters"),
    ("store-number", {"store": 5}, "store must be a string, or null, got 5"),
    ("defaults-as-list", {"defaults": ["lr: 0.1"]}, "defaults must be a mapping (key: value lines), got a list"),
    ("defaults-name", {"defaults": {"name": "x"}}, "defaults: unknown key 'name'"),
    ("attributions-as-text", {"attributions": "all"}, "attributions must be a mapping (key: value lines), got 'all'"),
    ("split-as-list", data(split=[0.2, 0.2]), "data.split must be a mapping (key: value lines), got a list"),
    ("split-val-negative", data(split={"val": -0.1}), "data.split.val must be a number >= 0, got -0.1"),
    ("split-shares-over-1", data(split={"val": 0.6, "test": 0.5}), "data.split: val + test must be < 1"),
    ("split-counts-fraction", data(split={"mode": "counts", "val": 2.5, "test": 3}),
     "data.split.val must be a whole number of images per class in mode 'counts', got 2.5"),
    ("period_order-empty", data(period_order=[]), "data.period_order must be a list of strings"),
    ("period_order-repeated", data(period_order=["Baroque", "Baroque"]), "data.period_order must be a list"),
    ("subset-on-demo", data(subset="twelve_artists"), "data.subset only applies to source 'historic_art'"),
    ("max_images-negative", attributions(max_images=-1), "attributions.max_images must be an integer >= 0"),
    ("attribution-splits", attributions(splits=["holdout"]), "attributions.splits 'holdout' unknown"),
    ("attribution-methods-text", attributions(methods="grad_cam"), "attributions.methods must be a list of strings"),
    ("sanity_images-negative", attributions(sanity_images=-2), "attributions.sanity_images must be an integer >= 0"),
    ("top-level-list", "- name: a\n- name: b\n", "an experiment must be a mapping with keys name, data"),
    ("top-level-text", "just some words\n", "an experiment must be a mapping with keys name, data"),
    ("duplicate-key", "name: x\nruns: [{name: a, lr: 0.1, lr: 0.2}]\n",
     "not valid YAML at line 2, column 27: key 'lr' is given twice"),
    ("recursive-alias", "name: x\nruns: &r [{name: a, members: *r}]\n", "line 2: an alias refers to a value that "
     "contains it (recursive alias)"),
    ("two-documents", "name: x\nruns: [{name: a}]\n---\nname: y\n", "not valid YAML at line 3, column 1"),
    ("tab-indent", "name: x\nruns:\n\t- name: a\n", "not valid YAML at line 3, column 1"),
    ("nul-byte-in-file", "name: x\0\nruns: [{name: a}]\n", "not valid YAML at line 1: control characters are "
     "not allowed (found '\\x00')"),
    ("not-utf8", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "is not UTF-8 text (byte 0xff at offset 0)"),
    ("over-1-MB", "# " + "x" * 1_100_000 + "\nname: x\n", "is larger than 1 MB"),
]


@pytest.fixture(autouse=True)
def no_gpu_no_work(monkeypatch):
    """No GPU (so the accelerator case means the same everywhere), and a tripwire where the work would start."""
    import pipeline.experiment

    def tripwire(*args, **kwargs):
        raise AssertionError("the experiment started although its config is bad")

    monkeypatch.setattr(pipeline.config, "gpu_count", lambda: 0)
    monkeypatch.setattr(pipeline.experiment, "run_experiment", tripwire)
    monkeypatch.setattr(pipeline.experiment, "prepare_data", tripwire)
    monkeypatch.delenv("PERIODEYE_STORE", raising=False)


def write(folder: Path, content: dict | str | bytes) -> Path:
    path = folder / "experiment.yaml"
    if isinstance(content, dict):
        path.write_text(yaml.safe_dump({**BASE, **content}, sort_keys=False))
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


def assert_refused(rc: int, err: str, path: Path, expected: str, folder: Path) -> None:
    """Exit code 2, one line `error: <file>: <expected>…` (`<file> is …` for the file itself), no traceback, and
    nothing but the file in `folder`."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith((f"error: {path}: {expected}", f"error: {path} {expected}")), lines[0]
    assert [p.name for p in folder.iterdir()] == ([path.name] if path.is_file() else []), "something was written"


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_is_one_clear_line(tmp_path, capsys, content, expected):
    folder = tmp_path / "work"
    folder.mkdir()
    path = write(folder, content)
    rc = main(["run", str(path), "--store", str(folder / "s.duckdb"), "--quiet"])
    assert_refused(rc, capsys.readouterr().err, path, expected, folder)


def test_directory_as_experiment(tmp_path, capsys):
    rc = main(["run", str(tmp_path), "--store", str(tmp_path / "s.duckdb")])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"error: {tmp_path} is a directory; give an experiment YAML file " \
                              "(for example configs/demo.yaml)\n"
    assert list(tmp_path.iterdir()) == []


def test_every_problem_at_once_one_line_each(tmp_path, capsys):
    """Fix them all in one go: every key at fault, in file order, a shared default's problem once."""
    spec = {"name": "bad", "data": {"source": "demo", "resize": 0, "period_order": "Baroque"},
            "defaults": {"epochs": "ten"},
            "runs": [{"name": "a", "lr": 0}, {"name": "b"}, {"name": "c", "patience": -1, "stratgy": "head"}],
            "attributions": {"ig_steps": 0}}
    path = write(tmp_path, spec)
    rc = main(["run", str(path), "--store", str(tmp_path / "s.duckdb")])
    lines = capsys.readouterr().err.removeprefix("error: ").splitlines()
    assert rc == 2 and all(line.startswith(f"{path}: ") for line in lines)
    assert [line.removeprefix(f"{path}: ").split(" ")[0] for line in lines] == [
        "data.resize", "data.period_order", "defaults.epochs", "runs[0].lr", "runs[2].patience", "runs[2]:",
        "attributions.ig_steps"]


CLI_CASES = [c for c in CASES if c[0] in ("epochs-text", "python-object-tag", "nul-in-run-name")]


@pytest.mark.slow
@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_the_real_command_says_one_line(tmp_path, content, expected):
    folder = tmp_path / "work"
    folder.mkdir()
    path = write(folder, content)
    env = {k: v for k, v in os.environ.items() if k != "PERIODEYE_STORE"}
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", str(path), "--store", str(folder / "s.duckdb")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert_refused(done.returncode, done.stderr, path, expected, folder)


def test_alias_bomb_is_refused_without_expanding(tmp_path):
    """In a process capped at 1 GB and 60 s: refused from the node graph, never built (the issue saw 92 s, then
    MemoryError)."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))\n"
            "from pipeline.config import ConfigError, load_experiment\n"
            "try:\n    load_experiment(sys.argv[1])\n"
            "except ConfigError as exc:\n    print(exc, file=sys.stderr)\n    sys.exit(2)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr == f"{path}: the YAML expands to more than 100,000 values through its aliases (*name " \
                          "repeats &name); an experiment needs a few hundred\n"


def test_aliases_within_reason_and_exponents_are_read(tmp_path):
    """Anchors for shared settings still work, and `lr: 1e-3` is a number (YAML 1.1 would read it as text)."""
    path = tmp_path / "e.yaml"
    path.write_text("name: x\ndefaults: &s {strategy: head, lr: 1e-3}\n"
                    + "runs:\n  - {<<: *s, name: a}\n  - {<<: *s, name: b, lr: 2E-2}\n")
    a, b = load_experiment(path).runs
    assert (a.freezing.strategy, a.optim.lr, b.optim.lr) == ("head", 0.001, 0.02)


def test_a_gpu_asked_for_is_checked_against_this_machine(tmp_path, monkeypatch):
    path = write(tmp_path, {"defaults": {"accelerator": "gpu"}, "runs": [{"name": "a"}, {"name": "b", "devices": 2}]})
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert err.value.problems == [f"{path}: defaults.accelerator: accelerator 'gpu' but this machine has no usable "
                                  "CUDA GPU (torch.cuda.is_available() is false); use 'auto' (a GPU when there is "
                                  "one) or 'cpu'"]
    monkeypatch.setattr(pipeline.config, "gpu_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"runs\[1\]\.devices: 2 GPUs asked for but this machine has 1$"):
        load_experiment(path)
    path = write(tmp_path, {"defaults": {"accelerator": "gpu"}})
    assert load_experiment(path).runs[0].hardware.accelerator == "gpu"
