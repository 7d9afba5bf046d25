"""The Data page's SQL: groups of images that show one work (exact duplicates and near-copies) and likely label errors.

A group is either an exact-duplicate group (images of one dataset sharing a content hash: copies that agree on the
label; conflicting copies were excluded at preparation and only counted in `datasets`) or a near-copy group (the
`near_copies` table, filled at preparation). A group "straddles" when its images lie in more than one split (it
would inflate test accuracy) and "conflicts" when they carry more than one label. Filtered, counted and paged in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from dashboard.queries import query

EXACT = "exact"
MEMBERS_SHOWN = 8  # thumbnails per group on the page; the rest are counted

# Every group of one dataset, one row per (group, image); near-copy groups are told apart from exact ones by source.
_MEMBERS = """
    SELECT 'exact' AS source, i.content_hash AS group_id, i.image_id, 'exact' AS kind, NULL::REAL AS score
    FROM images i
    WHERE i.dataset_id = $1
      AND i.content_hash IN (SELECT content_hash FROM images WHERE dataset_id = $1
                             GROUP BY content_hash HAVING count(*) > 1)
    UNION ALL
    SELECT 'near', n.group_id, n.image_id, n.kind, n.score FROM near_copies n WHERE n.dataset_id = $1"""

_GROUPS = f"""
    WITH m AS ({_MEMBERS})
    SELECT m.source, m.group_id, list(DISTINCT m.kind ORDER BY m.kind) AS kinds, count(*) AS n_images,
           list(DISTINCT i.split ORDER BY i.split) AS splits, list(DISTINCT i.period ORDER BY i.period) AS labels,
           count(DISTINCT i.split) > 1 AS straddles, count(DISTINCT i.period) > 1 AS conflicts,
           max(m.score) AS score
    FROM m JOIN images i ON i.dataset_id = $1 AND i.image_id = m.image_id
    GROUP BY m.source, m.group_id"""


def _where(kinds: Sequence[str], straddling: bool, conflicting: bool) -> str:
    where = ["TRUE"]
    if kinds:
        where.append("list_has_any(kinds, $2::TEXT[])")
    if straddling:
        where.append("straddles")
    if conflicting:
        where.append("conflicts")
    return " AND ".join(where)


def _params(dataset_id: str, kinds: Sequence[str]) -> tuple:
    """$1 the dataset, $2 the kinds (only when the filter names some: DuckDB refuses an unused parameter)."""
    return (dataset_id, list(kinds)) if kinds else (dataset_id,)


def kinds(dataset_id: str) -> list[str]:
    """The kinds of match present in a dataset: "exact" when it has duplicate groups, then the near-copy kinds."""
    df = query(f"SELECT DISTINCT unnest(kinds) AS kind FROM ({_GROUPS}) ORDER BY kind <> 'exact', kind",
               (dataset_id,))
    return df["kind"].tolist() if len(df) else []


def counts(dataset_id: str, kinds: Sequence[str] = (), straddling: bool = False, conflicting: bool = False
           ) -> pd.Series:
    """groups, images, straddling and conflicting groups matching the filters, and the same of all groups."""
    df = query(f"""SELECT count(*) FILTER ({_where(kinds, straddling, conflicting)}) AS groups,
                          coalesce(sum(n_images) FILTER ({_where(kinds, straddling, conflicting)}), 0) AS images,
                          count(*) AS all_groups,
                          count(*) FILTER (straddles) AS straddling, count(*) FILTER (conflicts) AS conflicting
                   FROM ({_GROUPS})""", _params(dataset_id, kinds))
    return df.iloc[0]


def groups(dataset_id: str, kinds: Sequence[str], straddling: bool, conflicting: bool, limit: int, offset: int
           ) -> pd.DataFrame:
    """One page of groups: straddling and conflicting ones first, then the biggest."""
    return query(f"""SELECT * FROM ({_GROUPS}) WHERE {_where(kinds, straddling, conflicting)}
                     ORDER BY straddles DESC, conflicts DESC, n_images DESC, source, group_id
                     LIMIT {int(limit)} OFFSET {int(offset)}""", _params(dataset_id, kinds))


def members(dataset_id: str, group_keys: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The first MEMBERS_SHOWN images of each (source, group_id), with thumbnail, split, label and match."""
    if not group_keys:
        return pd.DataFrame()
    keys = [f"{source}\x1f{group_id}" for source, group_id in group_keys]
    return query(f"""WITH m AS ({_MEMBERS})
                     SELECT m.source, m.group_id, m.image_id, m.kind, m.score, i.split, i.period, i.artist, i.title,
                            i.thumbnail
                     FROM m JOIN images i ON i.dataset_id = $1 AND i.image_id = m.image_id
                     WHERE list_contains($2::TEXT[], m.source || chr(31) || m.group_id)
                     QUALIFY row_number() OVER (PARTITION BY m.source, m.group_id
                                                ORDER BY i.split, m.image_id) <= {MEMBERS_SHOWN}
                     ORDER BY m.source, m.group_id, i.split, m.image_id""", (dataset_id, keys))


def sources(dataset_id: str) -> pd.DataFrame:
    """Images per source and split of a dataset made of several collections (`data.sources`); none for one source
    (its images' source is NULL)."""
    return query("""SELECT source, count(*) AS images, count(*) FILTER (split = 'train') AS train,
                           count(*) FILTER (split = 'val') AS val, count(*) FILTER (split = 'test') AS test
                    FROM images WHERE dataset_id = ? AND source IS NOT NULL
                    GROUP BY source ORDER BY images DESC, source""", (dataset_id,))


def inspector_run(dataset_id: str) -> str | None:
    """The run whose Inspector opens a dataset's image: the best complete run trained on it."""
    df = query("""SELECT run_id FROM runs WHERE dataset_id = ? AND status = 'complete' AND evaluation_of IS NULL
                  ORDER BY test_accuracy DESC NULLS LAST, run_id LIMIT 1""", (dataset_id,))
    return str(df["run_id"].iloc[0]) if len(df) else None


def label_issue_count(dataset_id: str) -> pd.Series:
    """scored images and flagged ones in the label audit (label_quality) of a dataset."""
    return query("""SELECT count(*) AS scored, count(*) FILTER (issue) AS flagged
                    FROM label_quality WHERE dataset_id = ?""", (dataset_id,)).iloc[0]


def label_issues(dataset_id: str, limit: int, offset: int) -> pd.DataFrame:
    """Flagged images of the label audit, least likely label first (Cleanlab's score; nothing here changes a label)."""
    return query("""SELECT q.image_id, q.given_label, q.suggested_label, q.quality, i.split, i.artist, i.title
                    FROM label_quality q LEFT JOIN images i ON i.dataset_id = q.dataset_id AND i.image_id = q.image_id
                    WHERE q.dataset_id = ? AND q.issue
                    ORDER BY q.quality, q.image_id LIMIT ? OFFSET ?""", (dataset_id, limit, offset))
