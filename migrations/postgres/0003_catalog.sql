-- Published worksheets, by project and tag, and the official listing.
CREATE TABLE releases (
    forge TEXT NOT NULL,
    project TEXT NOT NULL,
    tag TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    title TEXT,
    area TEXT,
    error TEXT,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (forge, project, tag)
);
CREATE INDEX releases_project ON releases (project, published_at);

CREATE TABLE worksheets (
    forge TEXT NOT NULL,
    project TEXT NOT NULL,
    tag TEXT NOT NULL,
    path TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT,
    body_html TEXT NOT NULL,
    notebook BYTEA NOT NULL,
    error TEXT,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (forge, project, tag, path)
);

ALTER TABLE projects ADD COLUMN official BIGINT NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN area TEXT;
ALTER TABLE projects ADD COLUMN title TEXT;
