-- Environment image builds and their logs.
CREATE TABLE builds (
    id BIGSERIAL PRIMARY KEY,
    forge TEXT NOT NULL,
    project TEXT NOT NULL,
    ref_name TEXT,
    commit_sha TEXT NOT NULL,
    environment_key TEXT,
    image TEXT,
    phase TEXT NOT NULL,
    cached BIGINT NOT NULL DEFAULT 0,
    message TEXT,
    log TEXT NOT NULL DEFAULT '',
    job_id BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX builds_commit ON builds (forge, project, commit_sha);
CREATE INDEX builds_key ON builds (environment_key);

CREATE TABLE mr_notes (
    forge TEXT NOT NULL,
    project TEXT NOT NULL,
    iid BIGINT NOT NULL,
    note_id BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (forge, project, iid)
);
