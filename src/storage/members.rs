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

/// `members.source` of rows written by member events.
pub const SOURCE_HOOK: &str = "hook";
/// `members.source` of rows written by the reconciler from the forge's `/members/all`.
pub const SOURCE_RECONCILE: &str = "reconcile";

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
    push_parent_groups(&mut scopes, path);
    scopes
}

/// Appends the scope of every namespace above `path`, nearest first.
fn push_parent_groups(scopes: &mut Vec<String>, path: &str) {
    let mut rest = path;
    while let Some((parent, _)) = rest.rsplit_once('/') {
        scopes.push(group_scope(parent));
        rest = parent;
    }
}

/// Whether `scope` is group `group` itself or lies under it (a subgroup or a project
/// of it or of a subgroup).
pub fn scope_at_or_under(scope: &str, group: &str) -> bool {
    scope == group_scope(group) || scope_under(scope, group)
}

/// Whether `scope` lies strictly under group `group`.
pub fn scope_under(scope: &str, group: &str) -> bool {
    let path = scope
        .strip_prefix("group:")
        .or_else(|| scope.strip_prefix("project:"));
    path.and_then(|p| p.strip_prefix(group))
        .is_some_and(|rest| rest.starts_with('/'))
}

/// `scope` with group `old` at its root replaced by `new`; `None` when it is not at or
/// under `old`.
pub fn moved_scope(scope: &str, old: &str, new: &str) -> Option<String> {
    let (kind, path) = scope.split_once(':')?;
    if path == old && kind == "group" {
        return Some(group_scope(new));
    }
    let rest = path.strip_prefix(old)?.strip_prefix('/')?;
    Some(format!("{kind}:{new}/{rest}"))
}

/// Today as `YYYY-MM-DD` (UTC) at `now_ms`, to compare with `expires_at`.
fn today(now_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// Inserts a membership or updates its level, expiry and source.
const UPSERT_MEMBER: &str =
    "INSERT INTO members (forge, scope, user_id, access_level, expires_at, source, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (forge, scope, user_id) DO UPDATE SET
        access_level = excluded.access_level, expires_at = excluded.expires_at,
        source = excluded.source, updated_at = excluded.updated_at";

impl Db {
    pub async fn upsert_member(&self, m: &MemberRow) -> DbResult<()> {
        sqlx::query(UPSERT_MEMBER)
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

    /// Replaces every membership of one group or project with `rows` (the forge's answer),
    /// in one transaction.
    pub async fn replace_members(
        &self,
        forge: ForgeKind,
        scope: &str,
        rows: &[MemberRow],
    ) -> DbResult<()> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM members WHERE forge = $1 AND scope = $2")
            .bind(forge.name())
            .bind(scope)
            .execute(&mut *tx)
            .await?;
        for m in rows {
            sqlx::query(UPSERT_MEMBER)
                .bind(forge.name())
                .bind(scope)
                .bind(m.user_id)
                .bind(m.access_level)
                .bind(m.expires_at.as_deref())
                .bind(&m.source)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every scope that has members, e.g. `group:lab`, `project:lab/rnaseq`.
    pub async fn member_scopes(&self, forge: ForgeKind) -> DbResult<Vec<String>> {
        Ok(
            sqlx::query_scalar(
                "SELECT DISTINCT scope FROM members WHERE forge = $1 ORDER BY scope",
            )
            .bind(forge.name())
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// Removes the memberships of group `path`, of its subgroups and of their projects (the
    /// group was deleted); returns how many rows went.
    pub async fn delete_group_members(&self, forge: ForgeKind, path: &str) -> DbResult<u64> {
        let scopes: Vec<String> = self
            .member_scopes(forge)
            .await?
            .into_iter()
            .filter(|s| scope_at_or_under(s, path))
            .collect();
        let mut tx = self.pool.begin().await?;
        let mut gone = 0;
        for scope in &scopes {
            gone += sqlx::query("DELETE FROM members WHERE forge = $1 AND scope = $2")
                .bind(forge.name())
                .bind(scope)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(gone)
    }

    /// Moves the memberships of group `old`, its subgroups and their projects under `new`
    /// (the group was renamed or transferred). Rows already at a new scope belonged to no
    /// live group and give way.
    pub async fn move_group_members(&self, forge: ForgeKind, old: &str, new: &str) -> DbResult<()> {
        let moves: Vec<(String, String)> = self
            .member_scopes(forge)
            .await?
            .into_iter()
            .filter_map(|s| moved_scope(&s, old, new).map(|n| (s, n)))
            .collect();
        let mut tx = self.pool.begin().await?;
        for (_, to) in &moves {
            sqlx::query("DELETE FROM members WHERE forge = $1 AND scope = $2")
                .bind(forge.name())
                .bind(to)
                .execute(&mut *tx)
                .await?;
        }
        for (from, to) in &moves {
            sqlx::query("UPDATE members SET scope = $3 WHERE forge = $1 AND scope = $2")
                .bind(forge.name())
                .bind(from)
                .bind(to)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// After `user_id` left group `group` (or dropped to `level`): removes their rows
    /// written by the reconciler in subgroups and projects under it whose level is above
    /// `level` (all of them when `None`). `/members/all` does not say whether such a row
    /// was inherited from the group, so it goes until the next reconcile says again.
    pub async fn drop_reconciled_under_group(
        &self,
        forge: ForgeKind,
        user_id: i64,
        group: &str,
        level: Option<i64>,
    ) -> DbResult<u64> {
        let doubtful: Vec<MemberRow> = self
            .memberships_of_user(forge, user_id)
            .await?
            .into_iter()
            .filter(|m| m.source == SOURCE_RECONCILE && scope_under(&m.scope, group))
            .filter(|m| level.is_none_or(|l| m.access_level > l))
            .collect();
        let mut gone = 0;
        for m in &doubtful {
            gone += sqlx::query(
                "DELETE FROM members WHERE forge = $1 AND scope = $2 AND user_id = $3 AND source = $4",
            )
            .bind(forge.name())
            .bind(&m.scope)
            .bind(user_id)
            .bind(SOURCE_RECONCILE)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(gone)
    }

    /// Removes every membership of a user (deleted in the forge).
    pub async fn delete_memberships_of_user(
        &self,
        forge: ForgeKind,
        user_id: i64,
    ) -> DbResult<u64> {
        Ok(
            sqlx::query("DELETE FROM members WHERE forge = $1 AND user_id = $2")
                .bind(forge.name())
                .bind(user_id)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
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
        push_parent_groups(&mut scopes, group_path);
        self.best_level(forge, user_id, &scopes).await
    }

    /// In one round trip: project `path`'s stored visibility (`None` when unknown) and
    /// `user_id`'s highest unexpired access level in it, through the project and every
    /// group above it (`None` without a user or a membership).
    pub async fn standing(
        &self,
        forge: ForgeKind,
        path: &str,
        user_id: Option<i64>,
    ) -> DbResult<(Option<String>, Option<i64>)> {
        let scopes = scopes_of_project(path);
        let placeholders: Vec<String> = (0..scopes.len()).map(|i| format!("${}", i + 5)).collect();
        // Only numbered placeholders are formatted in; the values are bound.
        let sql = format!(
            "SELECT (SELECT visibility FROM projects WHERE forge = $1 AND path = $2) AS visibility,
                    (SELECT MAX(access_level) FROM members
                     WHERE forge = $1 AND user_id = $3 AND (expires_at IS NULL OR expires_at >= $4)
                       AND scope IN ({})) AS level",
            placeholders.join(", ")
        );
        let mut q = sqlx::query_as::<_, (Option<String>, Option<i64>)>(AssertSqlSafe(sql))
            .bind(forge.name())
            .bind(path)
            // No user: an id no membership has.
            .bind(user_id.unwrap_or(i64::MIN))
            .bind(today(self.now()));
        for s in &scopes {
            q = q.bind(s);
        }
        Ok(q.fetch_one(&self.pool).await?)
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

    #[test]
    fn scopes_under_a_group() {
        assert!(scope_at_or_under("group:lab", "lab"));
        assert!(!scope_under("group:lab", "lab"));
        assert!(scope_under("group:lab/sub", "lab"));
        assert!(scope_under("project:lab/sub/x", "lab"));
        assert!(scope_under("project:lab/x", "lab"));
        assert!(!scope_under("project:labx/y", "lab"));
        assert!(!scope_under("project:lab", "lab"));
        assert!(!scope_at_or_under("group:other/lab", "lab"));
        assert_eq!(
            moved_scope("group:lab", "lab", "bio/lab").as_deref(),
            Some("group:bio/lab")
        );
        assert_eq!(
            moved_scope("project:lab/sub/x", "lab", "science").as_deref(),
            Some("project:science/sub/x")
        );
        assert_eq!(moved_scope("project:lab", "lab", "new"), None);
        assert_eq!(moved_scope("group:labx", "lab", "new"), None);
    }
}
