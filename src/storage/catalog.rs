//! Published releases and their worksheets, and the official listing.

use serde::Serialize;
use sqlx::{AssertSqlSafe, FromRow};

use super::*;
use crate::events::ForgeKind;

/// A release: the worksheets of a project at a tag.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct ReleaseRow {
    #[sqlx(try_from = "String")]
    pub forge: ForgeKind,
    pub project: String,
    pub tag: String,
    pub commit_sha: String,
    pub title: Option<String>,
    pub area: Option<String>,
    pub error: Option<String>,
    pub published_at: i64,
}

/// A worksheet of a release, without its notebook bytes.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct WorksheetRow {
    #[sqlx(try_from = "String")]
    pub forge: ForgeKind,
    pub project: String,
    pub tag: String,
    pub path: String,
    pub title: String,
    pub description: Option<String>,
    pub error: Option<String>,
    pub published_at: i64,
}

/// Worksheets being published are stored under a tag starting with this (a control
/// character no git tag holds) until their release is complete.
pub const STAGING_PREFIX: &str = "\u{1}staging ";

/// A worksheet to publish.
#[derive(Debug, Clone)]
pub struct NewWorksheet {
    pub path: String,
    pub title: String,
    pub description: Option<String>,
    pub body_html: String,
    pub notebook: Vec<u8>,
    pub error: Option<String>,
}

/// A card of the landing page: an official project's worksheet at its newest release.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct CardRow {
    #[sqlx(try_from = "String")]
    pub forge: ForgeKind,
    pub project: String,
    pub project_title: Option<String>,
    pub area: Option<String>,
    pub tag: String,
    pub path: String,
    pub title: String,
    pub description: Option<String>,
}

const WORKSHEET_COLUMNS: &str =
    "forge, project, tag, path, title, description, error, published_at";

impl Db {
    /// Within a transaction: drops the release's worksheets and writes its row; the new
    /// publication time. A republished tag's time always moves on, so that what was
    /// cached of the previous publication (keyed by this time) is never taken for the new
    /// one.
    async fn replace_release_row(
        &self,
        conn: &mut sqlx::AnyConnection,
        release: &ReleaseRow,
    ) -> DbResult<i64> {
        let previous: Option<(i64,)> = sqlx::query_as(
            "SELECT published_at FROM releases WHERE forge = $1 AND project = $2 AND tag = $3",
        )
        .bind(release.forge.name())
        .bind(&release.project)
        .bind(&release.tag)
        .fetch_optional(&mut *conn)
        .await?;
        let now = previous.map_or(self.now(), |(at,)| self.now().max(at + 1));
        sqlx::query("DELETE FROM worksheets WHERE forge = $1 AND project = $2 AND tag = $3")
            .bind(release.forge.name())
            .bind(&release.project)
            .bind(&release.tag)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO releases (forge, project, tag, commit_sha, title, area, error, published_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (forge, project, tag) DO UPDATE SET commit_sha = excluded.commit_sha,
                title = excluded.title, area = excluded.area, error = excluded.error,
                published_at = excluded.published_at",
        )
        .bind(release.forge.name())
        .bind(&release.project)
        .bind(&release.tag)
        .bind(&release.commit_sha)
        .bind(release.title.as_deref())
        .bind(release.area.as_deref())
        .bind(release.error.as_deref())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(now)
    }

    /// Replaces the release `tag` of a project with these worksheets, in one transaction.
    pub async fn publish_release(
        &self,
        release: &ReleaseRow,
        sheets: &[NewWorksheet],
    ) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        let now = self.replace_release_row(&mut tx, release).await?;
        for w in sheets {
            sqlx::query(
                "INSERT INTO worksheets (forge, project, tag, path, title, description, body_html, notebook, error, published_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(release.forge.name())
            .bind(&release.project)
            .bind(&release.tag)
            .bind(&w.path)
            .bind(&w.title)
            .bind(w.description.as_deref())
            .bind(&w.body_html)
            .bind(w.notebook.as_slice())
            .bind(w.error.as_deref())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE projects SET title = COALESCE($3, title), area = COALESCE($4, area)
             WHERE forge = $1 AND path = $2",
        )
        .bind(release.forge.name())
        .bind(&release.project)
        .bind(release.title.as_deref())
        .bind(release.area.as_deref())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores one worksheet of a release being published under `staging`, a tag no URL
    /// names; [`Db::publish_staged_release`] moves them all under the real tag at once.
    pub async fn stage_worksheet(
        &self,
        forge: &str,
        project: &str,
        staging: &str,
        w: &NewWorksheet,
    ) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO worksheets (forge, project, tag, path, title, description, body_html, notebook, error, published_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(forge)
        .bind(project)
        .bind(staging)
        .bind(&w.path)
        .bind(&w.title)
        .bind(w.description.as_deref())
        .bind(&w.body_html)
        .bind(w.notebook.as_slice())
        .bind(w.error.as_deref())
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Drops worksheets staged under `staging` (a publication that did not finish), and
    /// any of the project's staged more than a day ago by a process that stopped.
    pub async fn discard_staged(&self, forge: &str, project: &str, staging: &str) -> DbResult<()> {
        sqlx::query(
            "DELETE FROM worksheets WHERE forge = $1 AND project = $2
               AND (tag = $3 OR (tag LIKE $4 AND published_at < $5))",
        )
        .bind(forge)
        .bind(project)
        .bind(staging)
        .bind(format!("{STAGING_PREFIX}%"))
        .bind(self.now() - 24 * 3600 * 1000)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces the release `tag` of a project with the worksheets staged under `staging`,
    /// in one short transaction that moves rows without reading them.
    pub async fn publish_staged_release(
        &self,
        release: &ReleaseRow,
        staging: &str,
    ) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        let now = self.replace_release_row(&mut tx, release).await?;
        sqlx::query(
            "UPDATE worksheets SET tag = $4, published_at = $5
             WHERE forge = $1 AND project = $2 AND tag = $3",
        )
        .bind(release.forge.name())
        .bind(&release.project)
        .bind(staging)
        .bind(&release.tag)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE projects SET title = COALESCE($3, title), area = COALESCE($4, area)
             WHERE forge = $1 AND path = $2",
        )
        .bind(release.forge.name())
        .bind(&release.project)
        .bind(release.title.as_deref())
        .bind(release.area.as_deref())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a release (its tag was deleted).
    pub async fn delete_release(&self, forge: &str, project: &str, tag: &str) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM worksheets WHERE forge = $1 AND project = $2 AND tag = $3",
            "DELETE FROM releases WHERE forge = $1 AND project = $2 AND tag = $3",
        ] {
            sqlx::query(sql)
                .bind(forge)
                .bind(project)
                .bind(tag)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Releases of a project, newest first.
    pub async fn releases(&self, project: &str) -> DbResult<Vec<ReleaseRow>> {
        Ok(sqlx::query_as(
            "SELECT forge, project, tag, commit_sha, title, area, error, published_at FROM releases
             WHERE project = $1 ORDER BY published_at DESC, tag DESC",
        )
        .bind(project)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The forge of the project whose releases live under `project`, if any.
    pub async fn release_forge(&self, project: &str) -> DbResult<Option<ForgeKind>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT forge FROM releases WHERE project = $1 LIMIT 1")
                .bind(project)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(f,)| ForgeKind::try_from(f).ok()))
    }

    /// Whether any release of `project` exists.
    pub async fn has_releases(&self, project: &str) -> DbResult<bool> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM releases WHERE project = $1 LIMIT 1")
                .bind(project)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    pub async fn worksheets(&self, project: &str, tag: &str) -> DbResult<Vec<WorksheetRow>> {
        let sql = format!(
            "SELECT {WORKSHEET_COLUMNS} FROM worksheets WHERE project = $1 AND tag = $2 ORDER BY path"
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(project)
            .bind(tag)
            .fetch_all(&self.pool)
            .await?)
    }

    /// A worksheet with its rendered body, without its notebook.
    pub async fn worksheet_page(
        &self,
        project: &str,
        tag: &str,
        path: &str,
    ) -> DbResult<Option<(WorksheetRow, String)>> {
        let sql = format!(
            "SELECT {WORKSHEET_COLUMNS}, body_html FROM worksheets WHERE project = $1 AND tag = $2 AND path = $3"
        );
        let row: Option<sqlx::any::AnyRow> = sqlx::query(AssertSqlSafe(sql))
            .bind(project)
            .bind(tag)
            .bind(path)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        use sqlx::Row as _;
        Ok(Some((
            WorksheetRow::from_row(&row)?,
            row.try_get("body_html")?,
        )))
    }

    /// A worksheet's notebook bytes.
    pub async fn worksheet_notebook(
        &self,
        project: &str,
        tag: &str,
        path: &str,
    ) -> DbResult<Option<Vec<u8>>> {
        let row: Option<(Vec<u8>,)> = sqlx::query_as(
            "SELECT notebook FROM worksheets WHERE project = $1 AND tag = $2 AND path = $3",
        )
        .bind(project)
        .bind(tag)
        .bind(path)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(b,)| b))
    }

    /// Marks a project official (listed on the landing page), with its field of biology.
    pub async fn set_official(
        &self,
        forge: &str,
        project: &str,
        official: bool,
        area: Option<&str>,
    ) -> DbResult<bool> {
        let res = sqlx::query(
            "UPDATE projects SET official = $3, area = COALESCE($4, area), updated_at = $5 WHERE forge = $1 AND path = $2",
        )
        .bind(forge)
        .bind(project)
        .bind(i64::from(official))
        .bind(area)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// The landing page's cards: official projects' worksheets at their newest release,
    /// optionally only those whose title contains `query` (case-insensitive).
    pub async fn official_cards(&self, query: Option<&str>) -> DbResult<Vec<CardRow>> {
        let pattern = query.map(|q| format!("%{}%", q.to_lowercase().replace(['%', '_'], "")));
        Ok(sqlx::query_as(
            "SELECT w.forge AS forge, w.project AS project, p.title AS project_title, COALESCE(p.area, r.area) AS area,
                    w.tag AS tag, w.path AS path, w.title AS title, w.description AS description
             FROM projects p
             JOIN releases r ON r.forge = p.forge AND r.project = p.path
             JOIN worksheets w ON w.forge = r.forge AND w.project = r.project AND w.tag = r.tag
             WHERE p.official = 1 AND w.error IS NULL
               AND r.published_at = (SELECT MAX(r2.published_at) FROM releases r2
                                     WHERE r2.forge = r.forge AND r2.project = r.project)
               AND ($1 IS NULL OR LOWER(w.title) LIKE $1 OR LOWER(COALESCE(p.title, '')) LIKE $1)
             ORDER BY COALESCE(p.area, r.area, 'zzzz'), w.project, w.title",
        )
        .bind(pattern)
        .fetch_all(&self.pool)
        .await?)
    }
}
