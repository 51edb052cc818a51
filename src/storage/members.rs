//! Memberships of users in GitLab groups and projects, with GitLab's raw access levels,
//! and the one query that resolves a user's level in a project (group inheritance
//! included: a member of `lab` is a member of `lab/sub/project`).

use serde::Serialize;
use sqlx::{AssertSqlSafe, FromRow};

use super::*;
use crate::events::ForgeKind;

/// A membership: `scope` is `group:<full path>` or `project:<full path>`.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct MemberRow {
    #[sqlx(try_from = "String")]
    pub forge: ForgeKind,
    pub scope: String,
    pub user_id: i64,
    pub access_level: i64,
    /// `YYYY-MM-DD…` as GitLab gives it; a membership is over after that day.
    pub expires_at: Option<String>,
    /// `hook` or `reconcile`.
    pub source: String,
}

/// The scope key of a group.
pub fn group_scope(path: &str) -> String {
    format!("group:{path}")
}

/// The scope key of a project.
pub fn project_scope(path: &str) -> String {
    format!("project:{path}")
}

/// The scopes whose members are members of project `path`: the project and every
/// namespace above it.
pub fn scopes_of_project(path: &str) -> Vec<String> {
    let mut scopes = vec![project_scope(path)];
    let mut rest = path;
    while let Some((parent, _)) = rest.rsplit_once('/') {
        scopes.push(group_scope(parent));
        rest = parent;
    }
    scopes
}

/// Today as `YYYY-MM-DD` (UTC) at `now_ms`, to compare with `expires_at`.
fn today(now_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

impl Db {
    pub async fn upsert_member(&self, m: &MemberRow) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO members (forge, scope, user_id, access_level, expires_at, source, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (forge, scope, user_id) DO UPDATE SET
                access_level = excluded.access_level, expires_at = excluded.expires_at,
                source = excluded.source, updated_at = excluded.updated_at",
        )
        .bind(m.forge.name())
        .bind(&m.scope)
        .bind(m.user_id)
        .bind(m.access_level)
        .bind(m.expires_at.as_deref())
        .bind(&m.source)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_member(&self, forge: ForgeKind, scope: &str, user_id: i64) -> DbResult<()> {
        sqlx::query("DELETE FROM members WHERE forge = $1 AND scope = $2 AND user_id = $3")
            .bind(forge.name())
            .bind(scope)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The members of one group or project, by user id.
    pub async fn members(&self, forge: ForgeKind, scope: &str) -> DbResult<Vec<MemberRow>> {
        Ok(sqlx::query_as(
            "SELECT forge, scope, user_id, access_level, expires_at, source FROM members
             WHERE forge = $1 AND scope = $2 ORDER BY user_id",
        )
        .bind(forge.name())
        .bind(scope)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every membership of one user, by scope.
    pub async fn memberships_of_user(
        &self,
        forge: ForgeKind,
        user_id: i64,
    ) -> DbResult<Vec<MemberRow>> {
        Ok(sqlx::query_as(
            "SELECT forge, scope, user_id, access_level, expires_at, source FROM members
             WHERE forge = $1 AND user_id = $2 ORDER BY scope",
        )
        .bind(forge.name())
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A user's highest unexpired access level in a project, counting the project's own
    /// members and the members of every group above it; `None` when they have none.
    pub async fn access_level(
        &self,
        forge: ForgeKind,
        user_id: i64,
        project_path: &str,
    ) -> DbResult<Option<i64>> {
        self.best_level(forge, user_id, &scopes_of_project(project_path))
            .await
    }

    /// A user's unexpired access level in one group (direct or from a parent group).
    pub async fn group_access_level(
        &self,
        forge: ForgeKind,
        user_id: i64,
        group_path: &str,
    ) -> DbResult<Option<i64>> {
        let mut scopes = vec![group_scope(group_path)];
        let mut rest = group_path;
        while let Some((parent, _)) = rest.rsplit_once('/') {
            scopes.push(group_scope(parent));
            rest = parent;
        }
        self.best_level(forge, user_id, &scopes).await
    }

    async fn best_level(
        &self,
        forge: ForgeKind,
        user_id: i64,
        scopes: &[String],
    ) -> DbResult<Option<i64>> {
        let placeholders: Vec<String> = (0..scopes.len()).map(|i| format!("${}", i + 4)).collect();
        // Only numbered placeholders are formatted in; the scopes are bound.
        let sql = format!(
            "SELECT MAX(access_level) FROM members
             WHERE forge = $1 AND user_id = $2 AND (expires_at IS NULL OR expires_at >= $3)
               AND scope IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query_scalar::<_, Option<i64>>(AssertSqlSafe(sql))
            .bind(forge.name())
            .bind(user_id)
            .bind(today(self.now()));
        for s in scopes {
            q = q.bind(s);
        }
        Ok(q.fetch_one(&self.pool).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_belongs_to_every_group_above_it() {
        assert_eq!(
            scopes_of_project("lab/sub/rnaseq"),
            ["project:lab/sub/rnaseq", "group:lab/sub", "group:lab"]
        );
        assert_eq!(scopes_of_project("solo"), ["project:solo"]);
        assert_eq!(today(0), "1970-01-01");
        assert_eq!(today(1_780_000_000_000), "2026-05-28");
    }
}
