"""Top-10 neighbours by cosine: blocked numpy products (the pipeline's) against DuckDB SQL and faiss-cpu.

The near-copy `local` detector verifies each image's top-k embedding neighbours, so the neighbour search runs
over every image of a dataset (33,600 Historic Art paintings, 1280-d efficientnet_lite0 features). Features here
are random but clustered (groups of 20 around shared centres, non-negative as pooled ReLU features are), float32.
Variants, side by side in one process, same vectors: (a) pipeline.data.near_copies.nearest (blocked matrix
products, argpartition); (b) DuckDB, FLOAT[d] arrays, a self-join on array_cosine_similarity keeping the top 10
per query (QUALIFY row_number); (c) faiss-cpu IndexFlatIP on L2-normalised vectors, when it is installed. Each
agrees with (a)'s neighbours (shown). DuckDB's join is quadratic in SQL, so it runs on the first `duck_queries`
query rows against all n and its time is scaled to n queries (said in the table).

    .venv/bin/python -m benchmarks.nearest_neighbours [--full]
"""

from __future__ import annotations

import dataclasses
import time

import duckdb
import numpy as np
import pandas as pd

from benchmarks import common
from pipeline.data.near_copies import nearest

NAME = "nearest neighbours"
K = 10


@dataclasses.dataclass
class Settings:
    n: int
    dim: int
    duck_queries: int  # query rows DuckDB searches (against all n); its time is scaled to n


QUICK = Settings(n=4000, dim=1280, duck_queries=200)
FULL = Settings(n=33600, dim=1280, duck_queries=200)


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(size=(max(1, n // 20), dim))).astype(np.float32)
    noise = rng.normal(scale=0.6, size=(n, dim)).astype(np.float32)
    return np.abs(centres[rng.integers(0, len(centres), n)] + noise)


def with_duckdb(v: np.ndarray, queries: int) -> np.ndarray:
    """Top-K of the first `queries` rows in SQL (the whole set stored as FLOAT[d] arrays in an in-memory DuckDB)."""
    dim = v.shape[1]
    con = duckdb.connect()
    con.execute(f"CREATE TABLE f (id INTEGER, v FLOAT[{dim}])")
    frame = pd.DataFrame({"id": np.arange(len(v), dtype=np.int32), "v": list(v)})  # noqa: F841 (read by SQL)
    con.execute(f"INSERT INTO f SELECT id, v::FLOAT[{dim}] FROM frame")
    rows = con.execute(f"""
        SELECT q.id AS qid, o.id AS oid
        FROM (SELECT * FROM f WHERE id < {queries}) q JOIN f o ON o.id <> q.id
        QUALIFY row_number() OVER (PARTITION BY q.id ORDER BY array_cosine_similarity(q.v, o.v) DESC) <= {K}
        ORDER BY qid""").fetchnumpy()
    con.close()
    return rows["oid"].reshape(queries, K)


def with_faiss(v: np.ndarray) -> np.ndarray | None:
    try:
        import faiss
    except ImportError:
        return None
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    _, found = index.search(unit, K + 1)
    return np.array([[j for j in row if j != i][:K] for i, row in enumerate(found)])


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of one method's neighbours the other also found (order aside)."""
    return float(np.mean([len(set(x) & set(y)) / K for x, y in zip(a, b, strict=True)]))


def run(quick: bool = True) -> list[dict]:
    s = QUICK if quick else FULL
    v = clustered(s.n, s.dim)
    t = time.perf_counter()
    exact, _ = nearest(v, K)
    t_numpy = time.perf_counter() - t
    rows = [["numpy blocked products (pipeline)", s.n, t_numpy, 1.0, 1.0]]
    t = time.perf_counter()
    duck = with_duckdb(v, s.duck_queries)
    t_duck = (time.perf_counter() - t) * s.n / s.duck_queries
    rows.append([f"DuckDB array_cosine_similarity (first {s.duck_queries} queries, scaled to {s.n})", s.n, t_duck,
                 t_duck / t_numpy, overlap(duck, exact[:s.duck_queries])])
    t = time.perf_counter()
    found = with_faiss(v)
    t_faiss = time.perf_counter() - t
    if found is not None:
        rows.append(["faiss-cpu IndexFlatIP", s.n, t_faiss, t_faiss / t_numpy, overlap(found, exact)])
    else:
        rows.append(["faiss-cpu IndexFlatIP (not installed)", s.n, "", "", ""])
    common.table(f"Top-{K} cosine neighbours of every row, {s.n} x {s.dim} float32, clustered",
                 ["method", "rows", "seconds", "time vs numpy", "same neighbours as numpy"], rows)
    return [common.result(NAME, "DuckDB SQL time vs numpy blocked products", t_duck / t_numpy, None, "x",
                          note="above 1: numpy faster")]


if __name__ == "__main__":
    common.standalone(run, __doc__, "33,600 x 1280 (the Historic Art set's size)")
