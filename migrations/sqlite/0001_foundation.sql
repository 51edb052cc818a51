-- Webhook deliveries, the job queue, and the state the foundation handlers keep.
-- Times are Unix epoch milliseconds.

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT NOT NULL UNIQUE,
    forge TEXT NOT NULL,
    event TEXT NOT NULL,
    result TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX deliveries_received ON deliveries (received_at);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id BIGINT REFERENCES deliveries (id),
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    supersede_key TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX jobs_ready ON jobs (state, run_at);
CREATE INDEX jobs_supersede ON jobs (supersede_key, state);
CREATE INDEX jobs_delivery ON jobs (delivery_id);

CREATE TABLE ref_updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id BIGINT NOT NULL UNIQUE REFERENCES jobs (id),
    forge TEXT NOT NULL,
    project TEXT NOT NULL,
    ref_name TEXT NOT NULL,
    before_sha TEXT NOT NULL,
    after_sha TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);

CREATE TABLE refs (
    forge TEXT NOT NULL,
    project TEXT NOT NULL,
    ref_name TEXT NOT NULL,
    sha TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (forge, project, ref_name)
);

CREATE TABLE projects (
    forge TEXT NOT NULL,
    path TEXT NOT NULL,
    forge_id BIGINT,
    web_url TEXT,
    git_url TEXT,
    default_branch TEXT,
    forked_from TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (forge, path)
);

CREATE TABLE memberships (
    forge TEXT NOT NULL,
    scope TEXT NOT NULL,
    user_id BIGINT,
    username TEXT NOT NULL,
    access_level BIGINT NOT NULL,
    expires_at TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (forge, scope, username)
);

CREATE TABLE merge_requests (
    forge TEXT NOT NULL,
    project TEXT NOT NULL,
    iid BIGINT NOT NULL,
    source_project TEXT NOT NULL,
    source_branch TEXT NOT NULL,
    target_branch TEXT NOT NULL,
    head_sha TEXT NOT NULL,
    state TEXT NOT NULL,
    title TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (forge, project, iid)
);

CREATE TABLE local_statuses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    sha TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    ref_name TEXT,
    target_url TEXT,
    description TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX local_statuses_sha ON local_statuses (project, sha);
