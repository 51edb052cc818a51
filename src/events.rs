//! Forge-neutral domain events parsed from GitLab and GitHub webhook payloads.
//!
//! The wire formats live in [`crate::forge::gitlab::payload`] and
//! [`crate::forge::github::payload`]; both turn one delivery into a [`Parsed`]: a stable
//! `kind` label for logs and metrics, and an [`Event`] when the delivery is something
//! nbforge acts on (pushes, tags, merge requests, memberships, project lifecycle).
//! Valid JSON of a kind nbforge does not act on parses to `event: None`; bodies that are not
//! a JSON object, or that lack a field nbforge needs, give a [`PayloadError`] whose message
//! is safe to send back to the client: it names fields and positions, never body text.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Which forge a delivery came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    GitLab,
    GitHub,
}

impl ForgeKind {
    /// The name used in nbforge's tables, metrics and routes: `gitlab`, `github`.
    pub fn name(self) -> &'static str {
        match self {
            ForgeKind::GitLab => "gitlab",
            ForgeKind::GitHub => "github",
        }
    }
}

/// A project (GitLab) or repository (GitHub) as an event names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRef {
    pub forge: ForgeKind,
    /// The forge's numeric project id, when the payload carries it.
    pub id: Option<i64>,
    /// `namespace/project` (GitLab `path_with_namespace`, GitHub `full_name`).
    pub path: String,
    pub web_url: Option<String>,
    /// HTTP(S) clone URL.
    pub git_http_url: Option<String>,
    pub default_branch: Option<String>,
}

/// The user who caused an event, or the user an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub id: Option<i64>,
    /// GitLab username / GitHub login.
    pub username: Option<String>,
    /// Display name.
    pub name: Option<String>,
}

impl Actor {
    /// An actor from optional parts; `None` when the payload names nobody.
    pub fn from_parts(
        id: Option<i64>,
        username: Option<String>,
        name: Option<String>,
    ) -> Option<Actor> {
        if id.is_none() && username.is_none() && name.is_none() {
            None
        } else {
            Some(Actor { id, username, name })
        }
    }
}

/// One thing that happened on the forge that nbforge may act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "events are built once per delivery and moved a few times; plain variants keep matching simple"
)]
pub enum Event {
    Push(PushEvent),
    TagPush(TagPushEvent),
    MergeRequest(MergeRequestEvent),
    Member(MemberEvent),
    Project(ProjectEvent),
}

impl Event {
    /// `namespace/project` the event concerns, for logs and spans. `None` for group
    /// (GitHub: team) membership events, which concern no single project.
    pub fn project_path(&self) -> Option<&str> {
        match self {
            Event::Push(e) => Some(&e.project.path),
            Event::TagPush(e) => Some(&e.project.path),
            Event::MergeRequest(e) => Some(&e.project.path),
            Event::Member(e) => match &e.scope {
                MemberScope::Project { path, .. } => Some(path),
                MemberScope::Group { .. } => None,
            },
            Event::Project(e) => Some(&e.project.path),
        }
    }

    /// Stable label: `push`, `tag_push`, `merge_request`, `member` or `project`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Push(_) => "push",
            Event::TagPush(_) => "tag_push",
            Event::MergeRequest(_) => "merge_request",
            Event::Member(_) => "member",
            Event::Project(_) => "project",
        }
    }
}

/// Commits pushed to a branch (or the branch created or deleted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushEvent {
    pub project: ProjectRef,
    /// Short branch name, without `refs/heads/`.
    pub branch: String,
    /// Commit before the push; all zeros when the branch was created.
    pub before: String,
    /// Commit after the push; all zeros when the branch was deleted.
    pub after: String,
    pub created: bool,
    pub deleted: bool,
    pub actor: Option<Actor>,
    /// Number of commits in the push, when the forge says (GitLab `total_commits_count`;
    /// GitHub: length of `commits`, which GitHub caps at 2048).
    pub total_commits: Option<i64>,
}

/// A tag created, moved or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagPushEvent {
    pub project: ProjectRef,
    /// Short tag name, without `refs/tags/`.
    pub tag: String,
    /// The commit the tag points to (GitLab `checkout_sha`, GitHub push `after`).
    /// `None` on deletion, and when the payload does not say (GitHub `create` events
    /// carry no sha): resolve the tag in the repository then.
    pub commit: Option<String>,
    pub deleted: bool,
    pub actor: Option<Actor>,
}

/// What happened to a merge request (GitHub: pull request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeRequestAction {
    Open,
    Reopen,
    Update,
    Close,
    Merge,
    /// Approved by all required approvers (GitLab).
    Approved,
    /// No longer approved by all required approvers (GitLab).
    Unapproved,
    /// One user approved (GitLab).
    Approval,
    /// One user withdrew their approval (GitLab).
    Unapproval,
    /// Any other action, as the forge names it (GitHub `labeled`, `assigned`, …; empty when
    /// the payload has no action).
    Other(String),
}

impl MergeRequestAction {
    /// From GitLab's `object_attributes.action`.
    pub fn from_gitlab(action: &str) -> MergeRequestAction {
        match action {
            "open" => MergeRequestAction::Open,
            "reopen" => MergeRequestAction::Reopen,
            "update" => MergeRequestAction::Update,
            "close" => MergeRequestAction::Close,
            "merge" => MergeRequestAction::Merge,
            "approved" => MergeRequestAction::Approved,
            "unapproved" => MergeRequestAction::Unapproved,
            "approval" => MergeRequestAction::Approval,
            "unapproval" => MergeRequestAction::Unapproval,
            other => MergeRequestAction::Other(other.to_owned()),
        }
    }

    /// GitLab's name for the action (or the forge's own name for [`Self::Other`]).
    pub fn as_str(&self) -> &str {
        match self {
            MergeRequestAction::Open => "open",
            MergeRequestAction::Reopen => "reopen",
            MergeRequestAction::Update => "update",
            MergeRequestAction::Close => "close",
            MergeRequestAction::Merge => "merge",
            MergeRequestAction::Approved => "approved",
            MergeRequestAction::Unapproved => "unapproved",
            MergeRequestAction::Approval => "approval",
            MergeRequestAction::Unapproval => "unapproval",
            MergeRequestAction::Other(s) => s,
        }
    }
}

/// A merge request (GitHub: pull request) event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeRequestEvent {
    /// The target project (where the merge request lives).
    pub project: ProjectRef,
    /// The project the changes come from (a fork, or the target itself). When the source
    /// project no longer exists this is the target project; the head commit stays
    /// reachable there (GitLab `refs/merge-requests/<iid>/head`, GitHub `refs/pull/<n>/head`).
    pub source_project: ProjectRef,
    /// GitLab `iid` / GitHub pull request number.
    pub iid: i64,
    pub action: MergeRequestAction,
    pub title: String,
    /// GitLab's vocabulary: `opened`, `closed`, `merged`, `locked` (GitHub states are
    /// mapped onto it).
    pub state: String,
    pub source_branch: String,
    pub target_branch: String,
    /// The newest commit of the source branch.
    pub head_sha: String,
    /// The merge commit, once merged.
    pub merge_commit_sha: Option<String>,
    /// Web page of the merge request.
    pub url: Option<String>,
    pub actor: Option<Actor>,
    /// true when the update pushed new commits (GitLab: `oldrev` present) — an `update` that only changed labels/title is false
    pub new_commits: bool,
}

/// What happened to a membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberAction {
    Added,
    Updated,
    Removed,
}

/// Where a membership applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MemberScope {
    /// A GitLab group, or a GitHub team. `path` is what the forge sends: GitLab's
    /// `group_path` is the group's own path (its last segment, not the full path; use
    /// `id` to resolve subgroups); for a GitHub team it is `org/team-slug`.
    Group { id: Option<i64>, path: String },
    /// A single project (GitLab project member, GitHub repository collaborator).
    Project { id: Option<i64>, path: String },
}

/// A user added to, changed in, or removed from a group or project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEvent {
    pub action: MemberAction,
    pub scope: MemberScope,
    pub user: Actor,
    /// GitLab access level: 5 minimal access, 10 guest, 15 planner, 20 reporter,
    /// 30 developer, 40 maintainer, 50 owner. `None` when the payload does not say or names
    /// a role nbforge does not know (e.g. a GitLab custom role). GitHub permissions are
    /// mapped by [`crate::forge::github::payload::access_level_from_permission`].
    pub access_level: Option<i64>,
    /// When the membership expires (GitLab, ISO 8601 as sent).
    pub expires_at: Option<String>,
}

/// What happened to a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProjectAction {
    Created,
    Destroyed,
    /// The project's path changed within its namespace.
    Renamed {
        old_path: String,
    },
    /// The project moved to another namespace.
    Transferred {
        old_path: String,
    },
    /// The project was created as a fork of `from` (GitHub `fork` events; GitLab sends no
    /// distinct fork hook).
    Forked {
        from: ProjectRef,
    },
}

/// A project created, destroyed, renamed, transferred or forked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectEvent {
    pub action: ProjectAction,
    /// The project as it is now (for `Forked`, the new fork).
    pub project: ProjectRef,
}

/// Result of parsing one delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parsed {
    /// Stable label for metrics and logs: `push`, `tag_push`, `merge_request`, `member`,
    /// `project`, or the forge's own kind for ignored deliveries (`note`, `pipeline`,
    /// `ping`, …), limited to `[a-z0-9_]` (anything else becomes `unknown`).
    pub kind: String,
    /// `None`: valid JSON of a kind nbforge ignores.
    pub event: Option<Event>,
}

impl Parsed {
    /// A delivery nbforge acts on.
    pub fn event(event: Event) -> Parsed {
        Parsed {
            kind: event.kind().to_owned(),
            event: Some(event),
        }
    }

    /// A valid delivery nbforge ignores; `raw_kind` is sanitized by [`kind_label`].
    pub fn ignored(raw_kind: &str) -> Parsed {
        Parsed {
            kind: kind_label(raw_kind),
            event: None,
        }
    }
}

/// Why a delivery could not be parsed. Messages are safe to show to the sender: they name
/// positions, field names and expected types, never text from the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the request body is empty")]
    Empty,
    #[error("the request body is not a JSON object")]
    NotAnObject,
    #[error("malformed JSON at line {line}, column {column}: {reason}")]
    Malformed {
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{payload} payload: missing field `{field}`")]
    MissingField {
        payload: &'static str,
        field: String,
    },
    #[error("{payload} payload: {reason} at line {line}, column {column}")]
    Invalid {
        payload: &'static str,
        reason: String,
        line: usize,
        column: usize,
    },
    #[error("missing {header} header")]
    MissingHeader { header: &'static str },
}

/// Sanitize a forge-supplied kind into a bounded label: lowercase ASCII letters, digits and
/// `_`, at most 64 characters; spaces and `-` become `_`. Anything else gives `unknown`.
pub fn kind_label(raw: &str) -> String {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 64 {
        return "unknown".to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            'a'..='z' | '0'..='9' | '_' => out.push(c),
            'A'..='Z' => out.push(c.to_ascii_lowercase()),
            ' ' | '-' => out.push('_'),
            _ => return "unknown".to_owned(),
        }
    }
    out
}

/// True for the all-zeros object id forges use for "no commit" (SHA-1 or SHA-256).
pub fn is_zero_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// Reject empty bodies and bodies that are not a JSON object before any decoding.
pub(crate) fn check_object(body: &[u8]) -> Result<(), PayloadError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(PayloadError::Empty),
        Some(b'{') => Ok(()),
        Some(_) => match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            // Valid JSON of another type (array, string, number, …).
            Ok(_) => Err(PayloadError::NotAnObject),
            Err(e) => Err(json_error("JSON", e)),
        },
    }
}

/// Decode `body` as `T`, mapping serde_json errors to client-safe [`PayloadError`]s.
pub(crate) fn decode<T: DeserializeOwned>(
    payload: &'static str,
    body: &[u8],
) -> Result<T, PayloadError> {
    serde_json::from_slice(body).map_err(|e| json_error(payload, e))
}

/// Map a serde_json error to a [`PayloadError`] without echoing body text.
///
/// Syntax and end-of-input messages are serde_json's fixed texts. Data errors may quote
/// the offending value (`invalid type: string "…"`), so only the parts that come from
/// nbforge's own types are kept: the missing field's name, or what was expected.
pub(crate) fn json_error(payload: &'static str, err: serde_json::Error) -> PayloadError {
    use serde_json::error::Category;
    let (line, column) = (err.line(), err.column());
    let full = err.to_string();
    let suffix = format!(" at line {line} column {column}");
    let msg = full.strip_suffix(&suffix).unwrap_or(&full);
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => PayloadError::Malformed {
            line,
            column,
            reason: msg.to_owned(),
        },
        Category::Data => {
            if let Some(field) = msg
                .strip_prefix("missing field `")
                .and_then(|rest| rest.strip_suffix('`'))
            {
                return PayloadError::MissingField {
                    payload,
                    field: field.to_owned(),
                };
            }
            let reason = if let Some((_, expected)) = msg.rsplit_once(", expected ") {
                format!("wrong type or value, expected {expected}")
            } else if msg.starts_with("duplicate field `")
                || msg.starts_with("data did not match any variant")
            {
                msg.to_owned()
            } else {
                "invalid value".to_owned()
            };
            PayloadError::Invalid {
                payload,
                reason,
                line,
                column,
            }
        }
    }
}

/// A field nbforge needs that the payload left out or set to `null`.
pub(crate) fn missing(payload: &'static str, field: &str) -> PayloadError {
    PayloadError::MissingField {
        payload,
        field: field.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_label_is_bounded() {
        assert_eq!(kind_label("Note Hook"), "note_hook");
        assert_eq!(kind_label("pipeline"), "pipeline");
        assert_eq!(kind_label("pull-request"), "pull_request");
        assert_eq!(kind_label(""), "unknown");
        assert_eq!(kind_label("x\"; DROP"), "unknown");
        assert_eq!(kind_label("é"), "unknown");
        assert_eq!(kind_label(&"a".repeat(65)), "unknown");
    }

    #[test]
    fn zero_sha() {
        assert!(is_zero_sha("0000000000000000000000000000000000000000"));
        assert!(!is_zero_sha(""));
        assert!(!is_zero_sha("0000000000000000000000000000000000000001"));
    }

    #[test]
    fn data_errors_never_echo_values() {
        #[derive(Debug, Deserialize)]
        struct T {
            #[expect(dead_code, reason = "only decoded")]
            n: i64,
        }
        let err = decode::<T>("test", br#"{"n": "s3cr3t, expected nothing"}"#).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("expected i64"), "{text}");
        assert!(text.contains("line 1"), "{text}");

        let err = decode::<T>("test", br#"{"m": 1}"#).unwrap_err();
        assert_eq!(
            err,
            PayloadError::MissingField {
                payload: "test",
                field: "n".into()
            }
        );
    }

    #[test]
    fn syntax_errors_have_position() {
        let err = check_object(b"{}")
            .and_then(|()| decode::<serde_json::Value>("t", b"{\n  \"a\": trux\n}"));
        match err {
            Err(PayloadError::Malformed { line, column, .. }) => {
                assert_eq!(line, 2);
                assert!(column > 0);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn check_object_rejects_non_objects() {
        assert_eq!(check_object(b""), Err(PayloadError::Empty));
        assert_eq!(check_object(b"  \n\t"), Err(PayloadError::Empty));
        assert_eq!(check_object(b"[1,2]"), Err(PayloadError::NotAnObject));
        assert_eq!(check_object(b"\"x\""), Err(PayloadError::NotAnObject));
        assert!(matches!(
            check_object(b"nope"),
            Err(PayloadError::Malformed { line: 1, .. })
        ));
        assert_eq!(check_object(b" {"), Ok(()));
    }

    #[test]
    fn event_serde_shape() {
        let ev = Event::Project(ProjectEvent {
            action: ProjectAction::Renamed {
                old_path: "a/b".into(),
            },
            project: ProjectRef {
                forge: ForgeKind::GitLab,
                id: Some(1),
                path: "a/c".into(),
                web_url: None,
                git_http_url: None,
                default_branch: None,
            },
        });
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], "project");
        assert_eq!(v["action"]["kind"], "renamed");
        assert_eq!(v["project"]["forge"], "gitlab");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
        assert_eq!(back.kind(), "project");
        assert_eq!(back.project_path(), Some("a/c"));
    }

    #[test]
    fn merge_request_action_round_trip() {
        for name in [
            "open",
            "reopen",
            "update",
            "close",
            "merge",
            "approved",
            "unapproved",
            "approval",
            "unapproval",
            "labeled",
        ] {
            assert_eq!(MergeRequestAction::from_gitlab(name).as_str(), name);
        }
        assert_eq!(
            MergeRequestAction::from_gitlab("labeled"),
            MergeRequestAction::Other("labeled".into())
        );
    }
}
