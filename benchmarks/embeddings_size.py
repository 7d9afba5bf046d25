"""How the store keeps embeddings: recall of the Inspector's neighbours, the 2-D map and the bytes, per format.

Embeddings are most of a store. On the same realistic vectors (`benchmarks.projection.realistic`: real cached
efficientnet_lite0 features topped up with jittered copies) each format is compared with float32: cosine
top-10 neighbour recall (the Inspector's and Embedding page's neighbours, on sampled query images against all),
the 2-D map remade from the stored vectors (as an ensemble's map is; `project_2d`, same seed) against the
float32 map (kNN preservation between the maps and Procrustes disparity; a float32 map with another seed gives
the floor), and the bytes DuckDB writes for the column (a fresh file per format, after a checkpoint). Formats:
float32; rounded to 4 (the default) and 3 significant digits (`pipeline.embedding_storage`, FLOAT[]: ALP packs short
decimals); float16 (a BLOB: DuckDB has no 16-bit float and SQL cannot read it); PCA to 64/128/256 dims
(uncentred SVD, so cosine survives, FLOAT[]).

    .venv/bin/python -m benchmarks.embeddings_size [--full]     # quick: 3,000 vectors; --full: 33,600
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from benchmarks import common
from benchmarks.projection import neighbours, overlap, realistic
from pipeline.arrays import float_lists
from pipeline.embedding_storage import SIGNIFICANT, stored

NAME = "embedding storage"
K = 10


@dataclasses.dataclass
class Settings:
    n: int
    queries: int
    maps: tuple[str, ...]  # formats (name prefixes) whose map is remade and compared; each is one t-SNE


QUICK = Settings(n=3000, queries=500, maps=("float32", "rounded", "float16", "PCA"))
FULL = Settings(n=33600, queries=2000, maps=("float32", "rounded, 4", "float16"))  # ~4 min per t-SNE idle


def svd_reduce(v: np.ndarray, dims: int, seed: int = 0) -> np.ndarray:
    """Projection on the top `dims` right singular vectors of the (uncentred) vectors, fitted on a sample."""
    sample = v[np.random.default_rng(seed).choice(len(v), min(len(v), 5000), replace=False)].astype(np.float64)
    _, _, vt = np.linalg.svd(sample, full_matrices=False)
    return (v @ vt[:dims].T.astype(np.float32)).astype(np.float32)


def column_bytes(column: pa.Array, sql_type: str) -> int:
    """Bytes a fresh DuckDB file needs for (image_id TEXT, vector `sql_type`) holding `column`, after a
    checkpoint, less the same file empty."""
    with tempfile.TemporaryDirectory() as tmp:
        sizes = []
        for rows in (0, len(column)):
            path = Path(tmp) / f"{rows}.duckdb"
            con = duckdb.connect(str(path))
            con.execute(f"CREATE TABLE e (image_id TEXT, vector {sql_type})")
            rows_table = pa.table({"image_id": [f"img{i:06d}" for i in range(rows)],  # noqa: F841 (read by SQL)
                              "vector": column.slice(0, rows)})
            con.execute("INSERT INTO e SELECT * FROM rows_table")
            con.execute("CHECKPOINT")
            con.close()
            sizes.append(path.stat().st_size)
        return sizes[1] - sizes[0]


def float16_bytes(v: np.ndarray) -> int:
    half = v.astype(np.float16)
    return column_bytes(pa.array([row.tobytes() for row in half], pa.binary()), "BLOB")


def map_agreement(ref: np.ndarray, other: np.ndarray, queries: np.ndarray) -> tuple[float, float]:
    """(kNN preservation between two maps, Procrustes disparity: 0 = the same map up to rotation and scale)."""
    from scipy.spatial import procrustes

    _, _, disparity = procrustes(ref.astype(np.float64), other.astype(np.float64))
    return overlap(neighbours(ref, queries), neighbours(other, queries)), float(disparity)


def run(quick: bool = True) -> list[dict]:
    from pipeline.evaluate import project_2d

    s = QUICK if quick else FULL
    v, what = realistic(s.n)
    queries = np.random.default_rng(1).choice(s.n, s.queries, replace=False)
    truth = neighbours(v, queries, cosine=True)
    formats: dict[str, Callable[[], np.ndarray]] = {
        "float32 (before)": lambda: v,
        "rounded, 4 significant digits (default now)": lambda: stored(v, 4),
        "rounded, 3 significant digits": lambda: stored(v, 3),
        "float16 (BLOB)": lambda: v.astype(np.float16).astype(np.float32),
        "PCA 256": lambda: svd_reduce(v, 256),
        "PCA 128": lambda: svd_reduce(v, 128),
        "PCA 64": lambda: svd_reduce(v, 64),
    }
    ref_map = project_2d(v, "tsne", 0)
    rows, out = [], []
    base = None
    for name, make in formats.items():
        w = make()
        recall = overlap(truth, neighbours(w, queries, cosine=True))
        size = float16_bytes(v) if name.startswith("float16") else column_bytes(float_lists(w), "FLOAT[]")
        base = base or size
        if not name.startswith(s.maps):
            agree, disparity = "", ""
        elif name.startswith("float32"):
            agree, disparity = map_agreement(ref_map, project_2d(v, "tsne", 1), queries)
            name += "; map: seed 1 vs seed 0 (the floor)"
        else:
            agree, disparity = map_agreement(ref_map, project_2d(w, "tsne", 0), queries)
        rows.append([name, w.shape[1], recall, size / s.n, size / base, agree, disparity])
        if name.startswith("rounded, 4"):
            out.append(common.result(NAME, "cosine recall@10 of the stored vectors", recall, 0.99, "x"))
            out.append(common.result(NAME, "embedding bytes vs float32", size / base, None, "x"))
    common.table(f"Embedding formats, {s.n:,} vectors: {what}",
                 ["format", "dims", f"cosine recall@{K}", "bytes per vector in DuckDB", "size vs float32",
                  f"map kNN preservation@{K} vs float32 map", "map Procrustes disparity"],
                 rows, note=f"{os.cpu_count()} cores shared; recall on {s.queries:,} sampled queries against all")
    return out



def rewrite(source: Path, out: Path, significant: int | None) -> int:
    """Copy every table of `source` into a fresh store `out`, embeddings rounded as the write path now rounds
    them (`significant` digits at each run's scale; None: as they are). Returns the new file's bytes."""
    out.unlink(missing_ok=True)
    con = duckdb.connect(str(out))
    con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
    tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'src'"
                                        " ORDER BY table_name").fetchall()]
    for t in tables:
        if t == "embeddings" and significant is not None:
            con.execute(f"""CREATE TABLE embeddings AS
                WITH s AS (SELECT run_id, {significant} - ceil(log10(max(list_max(list_transform(vector,
                                  lambda x: abs(x))))))::INTEGER AS d FROM src.embeddings GROUP BY run_id)
                SELECT e.run_id, e.image_id, list_transform(e.vector, lambda x: round(x, s.d)::FLOAT) AS vector,
                       e.x, e.y
                FROM src.embeddings e JOIN s USING (run_id)""")
        else:
            con.execute(f"CREATE TABLE {t} AS SELECT * FROM src.{t}")
    con.execute("DETACH src")
    con.execute("CHECKPOINT")
    con.close()
    return out.stat().st_size


def store_sizes(source: Path) -> None:
    """The store at its size (e.g. benchmarks.make_big_store's 12 runs x 33,600) before and after rounding, and
    the thumbnails' share."""
    con = duckdb.connect(str(source), read_only=True)
    runs, images, vectors, dims, thumbs = con.execute(
        """SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM images), (SELECT count(*) FROM embeddings),
                  (SELECT max(len(vector)) FROM embeddings), (SELECT sum(octet_length(thumbnail)) FROM images)"""
    ).fetchone()
    con.close()
    before = rewrite(source, source.with_suffix(".f32.duckdb"), None)
    after = rewrite(source, source.with_suffix(".rounded.duckdb"), SIGNIFICANT)
    common.table(f"Store size, {runs} runs x {images:,} images ({vectors:,} embedding rows of {dims} dims)",
                 ["store", "bytes", "MB", "vs float32", "thumbnail bytes", "thumbnails' share"],
                 [["float32 embeddings (before)", before, before / 1e6, 1.0, thumbs, thumbs / before],
                  [f"rounded to {SIGNIFICANT} significant digits (now)", after, after / 1e6, after / before, thumbs,
                   thumbs / after]],
                 note="each a fresh copy of the same store (every table re-written, then a checkpoint)")


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 2 and sys.argv[1] == "--store":  # --store PATH: before/after sizes of that store
        store_sizes(Path(sys.argv[2]))
    else:
        common.standalone(run, __doc__, "33,600 vectors (the Historic Art set's size)")
