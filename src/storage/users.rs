//! People (GitLab users), their browser sessions and logins in progress. Tokens and
//! verifiers arrive here already sealed; session ids and OAuth states only as hashes.

use serde::Serialize;
use sqlx::FromRow;

use super::*;

/// A GitLab user as nbforge knows them.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub name: String,
    pub avatar_url: Option<String>,
    /// GitLab's `state`: `active`, `blocked`, …; `deleted` once GitLab has removed them.
    pub state: String,
    /// The interface level the user chose, if any.
    pub chosen_level: Option<String>,
    pub last_login_at: Option<i64>,
}

/// What GitLab says about a user (at login, from a member event, from the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserUpdate<'a> {
    pub id: i64,
    pub username: &'a str,
    /// `None` keeps the stored name (member events carry no name sometimes).
    pub name: Option<&'a str>,
    pub avatar_url: Option<&'a str>,
    pub state: Option<&'a str>,
}

/// A user's GitLab tokens, sealed.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct SealedTokens {
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub token_expires_at: Option<i64>,
}

/// A browser session, found by the hash of its cookie.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct WebSessionRow {
    pub user_id: i64,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// A login in progress.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct LoginAttemptRow {
    /// Sealed PKCE verifier.
    pub verifier: String,
    pub next_path: String,
    pub created_at: i64,
}

impl Db {
    /// Creates or updates a user from what GitLab said.
    pub async fn upsert_user(&self, u: &UserUpdate<'_>) -> DbResult<()> {
        let now = self.now();
        sqlx::query(
            "INSERT INTO users (id, username, name, avatar_url, state, created_at, updated_at)
             VALUES ($1, $2, COALESCE($3, ''), $4, COALESCE($5, 'active'), $6, $6)
             ON CONFLICT (id) DO UPDATE SET
                username = excluded.username,
                name = COALESCE($3, users.name),
                avatar_url = COALESCE($4, users.avatar_url),
                state = COALESCE($5, users.state),
                updated_at = excluded.updated_at",
        )
        .bind(u.id)
        .bind(u.username)
        .bind(u.name)
        .bind(u.avatar_url)
        .bind(u.state)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_user(&self, id: i64) -> DbResult<Option<UserRow>> {
        Ok(
            sqlx::query_as("SELECT id, username, name, avatar_url, state, chosen_level, last_login_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn get_user_by_username(&self, username: &str) -> DbResult<Option<UserRow>> {
        Ok(sqlx::query_as(
            "SELECT id, username, name, avatar_url, state, chosen_level, last_login_at FROM users
             WHERE username = $1 ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Marks a user deleted or blocked in GitLab and ends their sessions.
    pub async fn set_user_state(&self, id: i64, state: &str) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE users SET state = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(state)
            .bind(self.now())
            .execute(&mut *tx)
            .await?;
        if state != "active" {
            sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_chosen_level(&self, id: i64, level: Option<&str>) -> DbResult<()> {
        sqlx::query("UPDATE users SET chosen_level = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(level)
            .bind(self.now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a user's sealed tokens (after login or a refresh).
    pub async fn set_user_tokens(&self, id: i64, t: &SealedTokens, login: bool) -> DbResult<()> {
        let now = self.now();
        sqlx::query(
            "UPDATE users SET access_token = $2, refresh_token = $3, token_expires_at = $4,
                last_login_at = CASE WHEN $5 = 1 THEN $6 ELSE last_login_at END, updated_at = $6
             WHERE id = $1",
        )
        .bind(id)
        .bind(t.access_token.as_deref())
        .bind(t.refresh_token.as_deref())
        .bind(t.token_expires_at)
        .bind(i64::from(login))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn user_tokens(&self, id: i64) -> DbResult<Option<SealedTokens>> {
        Ok(sqlx::query_as(
            "SELECT access_token, refresh_token, token_expires_at FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn count_users(&self) -> DbResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    // ------------------------------------------------------------------ browser sessions

    /// Starts a session; the caller keeps the cookie value, the row keeps its hash.
    pub async fn create_web_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf_token: &str,
        expires_at: i64,
    ) -> DbResult<()> {
        let now = self.now();
        sqlx::query(
            "INSERT INTO web_sessions (id_hash, user_id, csrf_token, created_at, last_seen_at, expires_at)
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(id_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_web_session(&self, id_hash: &str) -> DbResult<Option<WebSessionRow>> {
        Ok(sqlx::query_as(
            "SELECT user_id, csrf_token, created_at, last_seen_at, expires_at FROM web_sessions
             WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records activity on a session (callers do it at most once a minute).
    pub async fn touch_web_session(&self, id_hash: &str) -> DbResult<()> {
        sqlx::query("UPDATE web_sessions SET last_seen_at = $2 WHERE id_hash = $1")
            .bind(id_hash)
            .bind(self.now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_web_session(&self, id_hash: &str) -> DbResult<()> {
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes sessions past their absolute expiry or idle since before `idle_before`,
    /// and logins in progress started before `attempts_before`.
    pub async fn delete_stale_web_sessions(
        &self,
        idle_before: i64,
        attempts_before: i64,
    ) -> DbResult<u64> {
        let now = self.now();
        let a = sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1 OR last_seen_at < $2")
            .bind(now)
            .bind(idle_before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let b = sqlx::query("DELETE FROM login_attempts WHERE created_at < $1")
            .bind(attempts_before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(a + b)
    }

    // ------------------------------------------------------------------ logins in progress

    pub async fn create_login_attempt(
        &self,
        state_hash: &str,
        sealed_verifier: &str,
        next_path: &str,
    ) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO login_attempts (state_hash, verifier, next_path, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(state_hash)
        .bind(sealed_verifier)
        .bind(next_path)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes a login attempt: returns it and deletes it, so a state is used once.
    pub async fn take_login_attempt(&self, state_hash: &str) -> DbResult<Option<LoginAttemptRow>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<LoginAttemptRow> = sqlx::query_as(
            "SELECT verifier, next_path, created_at FROM login_attempts WHERE state_hash = $1",
        )
        .bind(state_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let deleted = sqlx::query("DELETE FROM login_attempts WHERE state_hash = $1")
            .bind(state_hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        // Two callbacks racing with one state: only the one whose delete took the row wins.
        Ok(row.filter(|_| deleted == 1))
    }

    /// Whether the user holds at least `level` in any GitLab group or project.
    pub async fn has_role_at_least(&self, user_id: i64, level: i64) -> DbResult<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM members WHERE user_id = $1 AND access_level >= $2",
        )
        .bind(user_id)
        .bind(level)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }
}
