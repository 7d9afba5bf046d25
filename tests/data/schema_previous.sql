-- Period Eye store schema version 5 (pipeline/store.py SCHEMA before metrics.low/high, predictions.raw_*,
-- calibration and slices), the version before SCHEMA_VERSION: tests/test_schema_version.py migrates a store made
-- with it. When SCHEMA_VERSION is bumped, replace this file by the SCHEMA text of the version before the new one and
-- change the number above.

CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS datasets (
    dataset_id TEXT PRIMARY KEY, name TEXT, source TEXT, path TEXT, synthetic BOOLEAN,
    periods TEXT[], artists TEXT[], config JSON, n_images INTEGER, n_skipped INTEGER,
    n_duplicate_groups INTEGER, n_conflicting_duplicates INTEGER, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS images (
    dataset_id TEXT, image_id TEXT, path TEXT, period TEXT, artist TEXT, title TEXT, date TEXT,
    split TEXT, content_hash TEXT, width INTEGER, height INTEGER, thumbnail BLOB,
    PRIMARY KEY (dataset_id, image_id));
CREATE TABLE IF NOT EXISTS skipped_images (dataset_id TEXT, path TEXT, "row" BIGINT, reason TEXT, stage TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, experiment TEXT, name TEXT, dataset_id TEXT, backbone TEXT, strategy TEXT,
    freeze_until INTEGER, tasks TEXT[], pretrained BOOLEAN, config JSON, config_hash TEXT, device TEXT,
    status TEXT, started_at TIMESTAMP, finished_at TIMESTAMP, train_seconds DOUBLE, eval_seconds DOUBLE,
    epochs INTEGER, best_epoch INTEGER, lr DOUBLE, test_accuracy DOUBLE, test_balanced_accuracy DOUBLE,
    test_macro_f1 DOUBLE, test_top2_accuracy DOUBLE, test_adjacent_error_share DOUBLE, checkpoint TEXT, summary JSON,
    evaluation_of TEXT);
CREATE TABLE IF NOT EXISTS run_labels (run_id TEXT, task TEXT, class_index INTEGER, label TEXT);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT, stage TEXT, epoch INTEGER, train_loss DOUBLE, train_acc DOUBLE, train_artist_acc DOUBLE,
    val_loss DOUBLE, val_acc DOUBLE, val_artist_acc DOUBLE, lr DOUBLE);
CREATE TABLE IF NOT EXISTS predictions (
    run_id TEXT, image_id TEXT, split TEXT, task TEXT, true_label TEXT, pred_label TEXT, correct BOOLEAN,
    confidence REAL, true_prob REAL, loss REAL, probs REAL[]);
CREATE TABLE IF NOT EXISTS metrics (run_id TEXT, split TEXT, task TEXT, metric TEXT, label TEXT, value DOUBLE);
CREATE TABLE IF NOT EXISTS confusion (
    run_id TEXT, split TEXT, task TEXT, true_label TEXT, pred_label TEXT, count INTEGER);
CREATE TABLE IF NOT EXISTS embeddings (run_id TEXT, image_id TEXT, vector FLOAT[], x REAL, y REAL);
CREATE TABLE IF NOT EXISTS attributions (
    run_id TEXT, image_id TEXT, method TEXT, target_label TEXT, target_kind TEXT, heatmap BLOB, scale REAL,
    size INTEGER);
CREATE TABLE IF NOT EXISTS attribution_agreement (
    run_id TEXT, image_id TEXT, target_label TEXT, target_kind TEXT, method_a TEXT, method_b TEXT,
    spearman REAL, top_overlap REAL);
CREATE TABLE IF NOT EXISTS attribution_sanity (
    run_id TEXT, method TEXT, n_images INTEGER, spearman_mean DOUBLE, spearman_std DOUBLE, top_overlap_mean DOUBLE);
CREATE TABLE IF NOT EXISTS annotations (
    annotation_id TEXT PRIMARY KEY, dataset_id TEXT, image_id TEXT, content_hash TEXT, run_id TEXT,
    verdict TEXT, note TEXT, author TEXT, created_at TIMESTAMP, revises TEXT, withdrawn BOOLEAN, source TEXT,
    corrected_period TEXT);
CREATE TABLE IF NOT EXISTS near_copies (
    dataset_id TEXT, group_id TEXT, image_id TEXT, kind TEXT, score REAL);
CREATE TABLE IF NOT EXISTS label_quality (
    dataset_id TEXT, image_id TEXT, given_label TEXT, quality REAL, suggested_label TEXT, issue BOOLEAN,
    folds INTEGER, created_at TIMESTAMP);
