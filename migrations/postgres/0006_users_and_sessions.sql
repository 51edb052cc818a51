-- People and their browser sessions. Users are GitLab users, keyed by GitLab's user id;
-- their GitLab tokens are stored sealed (AES-256-GCM under nbforge's secret key).
-- Times are Unix epoch milliseconds.
CREATE TABLE users (
    id BIGINT PRIMARY KEY,
    username TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    avatar_url TEXT,
    state TEXT NOT NULL DEFAULT 'active',
    chosen_level TEXT,
    access_token TEXT,
    refresh_token TEXT,
    token_expires_at BIGINT,
    last_login_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX users_username ON users (username);

-- One row per logged-in browser: the cookie holds a random value, the row its SHA-256.
CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

-- A login in progress: the OAuth `state` (hashed), its PKCE verifier (sealed) and where
-- to go afterwards. Used once.
CREATE TABLE login_attempts (
    state_hash TEXT PRIMARY KEY,
    verifier TEXT NOT NULL,
    next_path TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX login_attempts_created ON login_attempts (created_at);

-- A project's visibility in its forge (public, internal, private); NULL until known.
ALTER TABLE projects ADD COLUMN visibility TEXT;
