"""A run's model said in words a reader outside machine learning can follow, for the exported gallery's header:
"EfficientNet-Lite0 pretrained on ImageNet, fine-tuned on 4,190 WikiArt paintings of 7 periods".

Pure: it reads the runs/datasets row the caller fetched (dashboard.queries.gallery.run_facts), never the store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

BACKBONES = {"resnet18": "ResNet-18", "resnet34": "ResNet-34", "resnet50": "ResNet-50"}


def backbone_name(backbone: str) -> str:
    """`efficientnet_lite0` → "EfficientNet-Lite0", `resnet50` → "ResNet-50"; an unknown name as it is."""
    if backbone in BACKBONES:
        return BACKBONES[backbone]
    lite = re.fullmatch(r"efficientnet_lite(\d+)", backbone or "")
    return f"EfficientNet-Lite{lite.group(1)}" if lite else str(backbone)


def training_words(strategy: str, freeze_until: int | None, members: int) -> str:
    """How much of the network learnt from the collection."""
    if strategy == "ensemble":
        return f"an average of {members} such models" if members else "an average of several models"
    if strategy == "head":
        return "only a new final layer trained (the rest kept as it was)"
    if strategy == "two_stage":
        return "a new final layer trained first, then the whole network fine-tuned"
    if strategy == "partial":
        blocks = f"its first {freeze_until} blocks" if freeze_until else "its first blocks"
        return f"fine-tuned except {blocks}"
    return "fine-tuned end to end"


def model_words(facts: Mapping[str, object]) -> str:
    """One sentence: backbone, pretraining, what was trained, on how many of which pictures, how many periods.

    `facts` holds the runs row (backbone, strategy, freeze_until, pretrained, config) with the dataset's name and
    synthetic flag, `n_train` (training images) and `n_periods`."""
    config = json.loads(str(facts["config"])) if isinstance(facts.get("config"), str) else {}
    members = len((config.get("run") or {}).get("ensemble") or [])
    name = backbone_name(str(facts.get("backbone") or "an unnamed network"))
    pretrained = facts.get("pretrained")
    start = f"{name} pretrained on ImageNet" if pretrained else f"{name} trained from scratch (no pretraining)"
    freeze = facts.get("freeze_until")
    how = training_words(str(facts.get("strategy") or ""), int(str(freeze)) if _number(freeze) else None, members)
    pictures = "generated demo pictures" if facts.get("synthetic") else "paintings"
    n_train = int(str(facts["n_train"])) if _number(facts.get("n_train")) else 0
    n_periods = int(str(facts["n_periods"])) if _number(facts.get("n_periods")) else 0
    collection = f' of the collection "{facts["dataset"]}"' if facts.get("dataset") else ""
    sentence = f"{start}, {how}, on {n_train:,} {pictures}{collection} labelled with {n_periods} periods"
    evaluated = facts.get("evaluation_of")
    if isinstance(evaluated, str) and evaluated:
        sentence += f"; here the model of run {evaluated} is scored on another collection"
    return sentence + "."


def _number(value: object) -> bool:
    try:
        int(str(value))
    except ValueError:
        return False
    return value is not None
