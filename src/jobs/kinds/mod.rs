//! The kinds of job, one file each. Each carries only the fields it needs; the event they
//! came from stays in the delivery's body.

mod cleanup;
mod cull_sessions;
mod environment;
mod group;
mod member;
mod merge_request;
mod project;
mod push;
pub mod reconcile;
mod run_worksheet;
mod tag;
mod user;

pub use cleanup::Cleanup;
pub use cull_sessions::CullSessions;
pub use environment::PrepareEnvironment;
pub use group::SyncGroup;
pub use member::RecordMember;
pub use merge_request::{NOTE_MARKER, SyncMergeRequest};
pub use project::SyncProject;
pub use push::RecordPush;
pub use reconcile::Reconcile;
pub use run_worksheet::RunWorksheet;
pub use tag::PublishTag;
pub use user::SyncUser;

use crate::events::ProjectRef;
use crate::jobs::{Context, JobError};
use crate::storage::ProjectRow;

/// A commit id of zeros: a ref created from nothing or deleted.
pub const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// The project an event names, as its forge describes it (see
/// [`crate::forge::Forge::verify_project`]): a job records, fetches and publishes only
/// this, never the event's own claims. A path that does not match fails the job for good.
async fn verified(ctx: &Context, claimed: &ProjectRef) -> Result<ProjectRef, JobError> {
    let forge = ctx.forges.for_kind(&claimed.forge);
    forge.verify_project(claimed).await.map_err(|e| {
        if e.is_permanent() {
            tracing::warn!(forge.project = %claimed.path, "project not verified: {e}");
        }
        JobError::from(e)
    })
}

/// The projects row of a verified project.
fn project_row(p: &ProjectRef) -> ProjectRow {
    ProjectRow {
        forge: p.forge,
        path: p.path.clone(),
        forge_id: p.id,
        web_url: p.web_url.clone(),
        git_url: p.git_http_url.clone(),
        default_branch: p.default_branch.clone(),
        forked_from: None,
        visibility: p.visibility.map(|v| v.as_str().to_owned()),
    }
}
