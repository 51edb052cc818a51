-- Worksheet runs: one row per run, named by an unguessable id (128 random bits as hex).
-- The owner is a user id, or the key of an anonymous visitor. The result folder is
-- relative to the owner's home; `result_html` is the rendered result shown on the run
-- page (capped; the full notebook stays in the home).
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    owner_user_id BIGINT,
    owner_visitor TEXT,
    forge TEXT NOT NULL,
    project TEXT NOT NULL,
    tag TEXT NOT NULL,
    worksheet TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    image TEXT,
    image_digest TEXT,
    values_json TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT,
    error TEXT,
    result_folder TEXT NOT NULL,
    result_html TEXT,
    cells_done BIGINT NOT NULL DEFAULT 0,
    cells_total BIGINT NOT NULL DEFAULT 0,
    heading TEXT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    job_id BIGINT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX runs_owner_user ON runs (owner_user_id, created_at);
CREATE INDEX runs_owner_visitor ON runs (owner_visitor, created_at);
CREATE INDEX runs_state ON runs (state, created_at);
