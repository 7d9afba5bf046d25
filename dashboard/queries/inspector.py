"""One image across runs: metadata, probabilities, saliency maps, method agreement."""

from __future__ import annotations

import json

import pandas as pd

from dashboard.queries import query


def run_dataset(run_id: str) -> str | None:
    df = query("SELECT dataset_id FROM runs WHERE run_id = ?", (run_id,))
    return df["dataset_id"].iloc[0] if len(df) else None


def geometry(dataset_id: str) -> tuple[int, int]:
    """(resize, crop) the models saw: where a saliency map lies on the thumbnail."""
    df = query("SELECT config FROM datasets WHERE dataset_id = ?", (dataset_id,))
    cfg = json.loads(df["config"].iloc[0]) if len(df) else {}
    return int(cfg.get("resize", 256)), int(cfg.get("crop", 224))


def image(dataset_id: str, image_id: str) -> pd.Series | None:
    df = query("""SELECT image_id, period, artist, title, date, split, width, height, path, content_hash, thumbnail
                  FROM images WHERE dataset_id = ? AND image_id = ?""", (dataset_id, image_id))
    return df.iloc[0] if len(df) else None


def candidates(run_id: str, limit: int = 300) -> pd.DataFrame:
    """Images to pick from when none is in the URL: the run's test errors, most confident first."""
    return query("""SELECT image_id, true_label, pred_label, confidence FROM predictions
                    WHERE run_id = ? AND task = 'period' AND split = 'test'
                    ORDER BY correct, confidence DESC LIMIT ?""", (run_id, limit))


def probabilities(dataset_id: str, image_id: str) -> pd.DataFrame:
    """Every run's period probabilities for the image, one row per (run, class), chronological."""
    return query("""
        SELECT p.run_id, l.class_index, l.label, p.probs[l.class_index + 1] AS probability,
               p.pred_label, p.true_label
        FROM predictions p JOIN runs r ON r.run_id = p.run_id
        JOIN run_labels l ON l.run_id = p.run_id AND l.task = p.task
        WHERE r.dataset_id = ? AND p.image_id = ? AND p.task = 'period'
        ORDER BY p.run_id, l.class_index""", (dataset_id, image_id))


def maps(dataset_id: str, image_id: str) -> pd.DataFrame:
    return query("""
        SELECT a.run_id, a.method, a.target_label, a.target_kind, a.heatmap
        FROM attributions a JOIN runs r ON r.run_id = a.run_id
        WHERE r.dataset_id = ? AND a.image_id = ? ORDER BY a.run_id, a.target_kind DESC, a.method""",
                 (dataset_id, image_id))


def agreement(dataset_id: str, image_id: str) -> pd.DataFrame:
    return query("""
        SELECT g.run_id, g.target_kind, g.method_a, g.method_b, g.spearman, g.top_overlap
        FROM attribution_agreement g JOIN runs r ON r.run_id = g.run_id
        WHERE r.dataset_id = ? AND g.image_id = ? ORDER BY ALL""", (dataset_id, image_id))


def sanity(run_id: str) -> pd.DataFrame:
    return query("""SELECT method, n_images, spearman_mean, top_overlap_mean FROM attribution_sanity
                    WHERE run_id = ? ORDER BY method""", (run_id,))
