-- Memberships by GitLab user id (usernames change): one row per user and group or
-- project, with GitLab's raw access level. `source` says who wrote the row: a member
-- event (`hook`) or the reconciler (`reconcile`, from `/members/all`, which includes
-- inherited members and shared groups).
CREATE TABLE members (
    forge TEXT NOT NULL,
    scope TEXT NOT NULL,
    user_id BIGINT NOT NULL,
    access_level BIGINT NOT NULL,
    expires_at TEXT,
    source TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (forge, scope, user_id)
);
CREATE INDEX members_user ON members (user_id, forge);
INSERT INTO members (forge, scope, user_id, access_level, expires_at, source, updated_at)
    SELECT forge, scope, user_id, access_level, expires_at, 'hook', updated_at
    FROM memberships WHERE user_id IS NOT NULL;
DROP TABLE memberships;
