"""The store keeps embeddings rounded (pipeline.embedding_storage): the Inspector's neighbours survive it and
DuckDB packs the rounded column into fewer bytes, with the column still FLOAT[] for SQL."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from pipeline.arrays import float_lists
from pipeline.embedding_storage import decimals, stored


def clustered(n: int = 1500, dim: int = 256, seed: int = 0) -> np.ndarray:
    """Pooled-feature-like vectors: non-negative, half zeros, in groups of ~20 around shared centres."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(size=(n // 20, dim)))
    v = centres[rng.integers(0, len(centres), n)] + rng.normal(scale=0.6, size=(n, dim))
    return np.maximum(v, 0).astype(np.float32) * 2.5


def top10(v: np.ndarray) -> np.ndarray:
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :10]


def test_stored_vectors_keep_the_cosine_neighbours():
    v = clustered()
    exact, kept = top10(v), top10(stored(v))
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, kept, strict=True)])
    assert recall >= 0.99
    assert not np.array_equal(stored(v), v)  # it does round


def test_decimals_follow_the_scale():
    assert decimals(np.array([0.5, 5.98], np.float32)) == 3  # 4 significant digits of 5.98
    assert decimals(np.array([1234.0], np.float32)) == 0
    assert decimals(np.array([0.004], np.float32)) == 6
    assert decimals(np.zeros(4, np.float32)) == 0
    assert decimals(np.array([np.nan, 0.5], np.float32)) == 4
    assert stored(np.zeros((0, 8))).shape == (0, 8)
    kept = stored(np.array([[1.23456, np.nan]]))
    assert kept[0, 0] == np.float32(1.235) and np.isnan(kept[0, 1])


def _file_bytes(path: Path, v: np.ndarray) -> int:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE embeddings (image_id TEXT, vector FLOAT[])")
    rows = pa.table({"image_id": [str(i) for i in range(len(v))], "vector": float_lists(v)})  # noqa: F841 (SQL)
    con.execute("INSERT INTO embeddings SELECT * FROM rows")
    con.execute("CHECKPOINT")
    con.close()
    return path.stat().st_size


def test_duckdb_packs_the_rounded_column_and_sql_reads_it(tmp_path):
    v = clustered(3000, 128)
    assert _file_bytes(tmp_path / "rounded.duckdb", stored(v)) < 0.8 * _file_bytes(tmp_path / "f32.duckdb", v)
    con = duckdb.connect(str(tmp_path / "rounded.duckdb"), read_only=True)
    sim = con.execute("""SELECT list_cosine_similarity(a.vector, b.vector) FROM embeddings a, embeddings b
                         WHERE a.image_id = '0' AND b.image_id = '1'""").fetchone()[0]
    a, b = v[0], v[1]
    assert abs(sim - float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))) < 0.01
