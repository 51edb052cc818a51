//! `sync-merge-request`: record a merge request and keep nbforge's one note on it.

use serde::{Deserialize, Serialize};

use super::{project_row, verified};
use crate::environment::flow;
use crate::events::{ForgeKind, MergeRequestAction, ProjectRef};
use crate::forge::{ForgeError, ProjectId};
use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::storage::{JobKind, MergeRequestRow};

/// Marks nbforge's note on a merge request, so it is found again and edited, never repeated.
pub const NOTE_MARKER: &str = "<!-- nbforge:environment -->";
/// Starts the part of nbforge's note that says why the environment could not be prepared;
/// the next note written for new commits drops it.
pub const FAILURE_MARKER: &str = "<!-- nbforge:environment-failure -->";

/// Adds to nbforge's note on merge request `iid` of `project` why the environment of `commit`
/// could not be prepared (the message the commit status has, whole). Nothing when there is no
/// note yet.
pub async fn note_failure(
    ctx: &Context,
    forge: ForgeKind,
    project: &str,
    iid: i64,
    commit: &str,
    message: &str,
) -> Result<(), JobError> {
    let api = ctx.forges.for_kind(&forge);
    let id = ProjectId::Path(project.to_owned());
    let notes = api.list_merge_request_notes(&id, iid).await?;
    let Some(note) = notes.iter().find(|n| n.body.contains(NOTE_MARKER)) else {
        return Ok(());
    };
    let head = note
        .body
        .split(FAILURE_MARKER)
        .next()
        .unwrap_or(&note.body)
        .trim_end();
    // The message is shown as it is, in a fence it cannot close.
    let shown = message.replace("~~~", "~ ~ ~");
    let body = format!(
        "{head}\n\n{FAILURE_MARKER}\n**The environment of `{}` could not be prepared:**\n\n~~~\n{shown}\n~~~\n",
        flow::short_sha(commit)
    );
    api.edit_merge_request_note(&id, iid, note.id, &body)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMergeRequest {
    pub forge: ForgeKind,
    /// The target project.
    pub project: ProjectRef,
    /// Where the changes come from (a fork, or the target project).
    pub source_project: ProjectRef,
    pub iid: i64,
    pub action: MergeRequestAction,
    pub title: String,
    pub state: String,
    pub source_branch: String,
    pub target_branch: String,
    pub head_sha: String,
    /// An update that brought new commits.
    pub new_commits: bool,
}

impl Job for SyncMergeRequest {
    const KIND: JobKind = JobKind::SyncMergeRequest;

    fn subject(&self) -> Subject {
        Subject {
            project: Some(format!("{}!{}", self.project.path, self.iid)),
            git_ref: None,
            commit: Some(self.head_sha.clone()),
        }
    }

    fn supersede_key(&self) -> Option<String> {
        Some(format!(
            "mr:{}:{}:{}",
            self.forge.name(),
            self.project.path,
            self.iid
        ))
    }

    async fn run(&self, ctx: &Context, _run: &Run) -> Result<(), JobError> {
        let db = &ctx.db;
        let project = verified(ctx, &self.project).await?;
        db.upsert_project(&project_row(&project)).await?;
        let source = if self.source_project.path == self.project.path
            && self.source_project.id == self.project.id
        {
            project.clone()
        } else {
            let source = verified(ctx, &self.source_project).await?;
            let mut fork = project_row(&source);
            fork.forked_from = Some(project.path.clone());
            db.upsert_project(&fork).await?;
            source
        };
        db.upsert_merge_request(&MergeRequestRow {
            forge: project.forge,
            project: project.path.clone(),
            iid: self.iid,
            source_project: source.path.clone(),
            source_branch: self.source_branch.clone(),
            target_branch: self.target_branch.clone(),
            head_sha: self.head_sha.clone(),
            state: self.state.clone(),
            title: self.title.clone(),
        })
        .await?;
        let wants_note = match &self.action {
            MergeRequestAction::Open | MergeRequestAction::Reopen => true,
            MergeRequestAction::Update => self.new_commits,
            MergeRequestAction::Close | MergeRequestAction::Merge => db
                .mr_note(self.forge.name(), &self.project.path, self.iid)
                .await?
                .is_some(),
            _ => false,
        };
        if wants_note && ctx.settings.environments.enabled {
            match self.upsert_note(ctx, &self.note_body(ctx)).await {
                Err(JobError::Transient(e))
                    if e.downcast_ref::<ForgeError>()
                        .is_some_and(|f| matches!(f, ForgeError::Unsupported(_))) => {}
                other => other?,
            }
        }
        Ok(())
    }
}

impl SyncMergeRequest {
    fn note_body(&self, ctx: &Context) -> String {
        let public = &ctx.settings.server.public_url;
        let short = flow::short_sha(&self.head_sha);
        match self.action {
            MergeRequestAction::Merge => format!(
                "{NOTE_MARKER}\n**nbforge**: merged. [![Launch]({badge})]({launch}) the environment of {target}.\n",
                badge = crate::urls::badge(public),
                launch = crate::urls::launch(
                    public,
                    self.project.forge,
                    &self.project.path,
                    &self.target_branch,
                ),
                target = code_span(&self.target_branch),
            ),
            MergeRequestAction::Close => format!(
                "{NOTE_MARKER}\n**nbforge**: this merge request is closed; its environment is no longer prepared.\n"
            ),
            _ => format!(
                "{NOTE_MARKER}\n**nbforge**: [![Launch]({badge})]({launch}) this merge request at `{short}` \
                 (from {from}).\n\nThe environment's progress is the `{status}` status of the commit; \
                 this note follows new commits.\n",
                badge = crate::urls::badge(public),
                launch = crate::urls::launch(
                    public,
                    self.source_project.forge,
                    &self.source_project.path,
                    &self.head_sha,
                ),
                from = code_span(&format!(
                    "{}:{}",
                    self.source_project.path, self.source_branch
                )),
                status = flow::STATUS_NAME,
            ),
        }
    }

    /// Creates nbforge's note on the merge request, or edits the one it made before.
    async fn upsert_note(&self, ctx: &Context, body: &str) -> Result<(), JobError> {
        let forge = ctx.forges.for_kind(&self.forge);
        let name = self.forge.name();
        let project = ProjectId::from(&self.project);
        let iid = self.iid;
        if let Some(id) = ctx.db.mr_note(name, &self.project.path, iid).await? {
            match forge.edit_merge_request_note(&project, iid, id, body).await {
                Ok(_) => return Ok(()),
                Err(ForgeError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let existing = forge.list_merge_request_notes(&project, iid).await?;
        let note = match existing.iter().find(|n| n.body.contains(NOTE_MARKER)) {
            Some(n) => {
                forge
                    .edit_merge_request_note(&project, iid, n.id, body)
                    .await?
            }
            None => forge.create_merge_request_note(&project, iid, body).await?,
        };
        ctx.db
            .set_mr_note(name, &self.project.path, iid, note.id)
            .await?;
        Ok(())
    }
}
/// `text` as a Markdown code span that nothing in it can end early: the fence is one
/// backtick longer than the longest run of backticks inside, padded with spaces when the
/// text starts or ends with one (CommonMark). A branch name can then carry no links,
/// mentions or formatting into the note.
pub fn code_span(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::code_span;

    /// Finding 15: a branch name holding backticks ended the code span early and injected
    /// Markdown (links, `@all`) into nbforge's note.
    #[test]
    fn finding_15_branch_names_inject_markdown_into_the_note() {
        assert_eq!(code_span("feature/x"), "`feature/x`");
        let hostile = "x` [click](https://evil.example) @all `y";
        let span = code_span(hostile);
        assert_eq!(span, format!("``{hostile}``"));
        // Parsed as CommonMark, the whole name stays one code span: no link, no text outside.
        let html = {
            let mut out = String::new();
            pulldown_cmark::html::push_html(&mut out, pulldown_cmark::Parser::new(&span));
            out
        };
        assert!(!html.contains("<a "), "{html}");
        assert!(
            html.starts_with("<p><code>") && html.trim_end().ends_with("</code></p>"),
            "{html}"
        );
        assert_eq!(code_span("`edge`"), "`` `edge` ``");
        assert_eq!(code_span("a\nb"), "`a b`");
    }
}
