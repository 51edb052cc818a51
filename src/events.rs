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

impl TryFrom<String> for ForgeKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "gitlab" => Ok(ForgeKind::GitLab),
            "github" => Ok(ForgeKind::GitHub),
            _ => Err(format!("unknown forge {s:?}")),
        }
    }
}

impl std::fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
/// A project's visibility in GitLab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Anyone, logged in or not.
    Public,
    /// Any logged-in user.
    Internal,
    /// Members only.
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Internal => "internal",
            Visibility::Private => "private",
        }
    }

    /// GitLab's names (`visibility`) and numbers (`visibility_level`: 0, 10, 20); anything
    /// else is private, since when in doubt nbforge denies.
    pub fn parse(s: &str) -> Visibility {
        match s.trim().to_ascii_lowercase().as_str() {
            "public" | "20" => Visibility::Public,
            "internal" | "10" => Visibility::Internal,
            _ => Visibility::Private,
        }
    }
}

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
    /// The project's visibility, when the payload says it.
    #[serde(default)]
    pub visibility: Option<Visibility>,
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
    Group(GroupEvent),
    User(UserEvent),
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
            Event::Group(_) | Event::User(_) => None,
        }
    }

    /// Stable label: `push`, `tag_push`, `merge_request`, `member`, `project`, `group` or
    /// `user`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Push(_) => "push",
            Event::TagPush(_) => "tag_push",
            Event::MergeRequest(_) => "merge_request",
            Event::Member(_) => "member",
            Event::Project(_) => "project",
            Event::Group(_) => "group",
            Event::User(_) => "user",
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
    /// Some attribute changed, its path aside (GitLab `project_update`: visibility, name,
    /// description…).
    Updated,
}

/// A project created, destroyed, renamed, transferred or forked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectEvent {
    pub action: ProjectAction,
    /// The project as it is now (for `Forked`, the new fork).
    pub project: ProjectRef,
}

/// What happened to a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GroupAction {
    /// The group, its subgroups and their projects are gone.
    Destroyed,
    /// The group moved from `old_full_path`; its subgroups and projects moved with it.
    Renamed { old_full_path: String },
}

/// A group deleted or renamed (GitLab `group_destroy`, `group_rename` system hooks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEvent {
    pub action: GroupAction,
    pub id: Option<i64>,
    /// The group's full path (`lab/sub`) as it is now (for `Destroyed`, as it was).
    pub full_path: String,
}

/// What happened to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UserAction {
    /// The user was deleted.
    Destroyed,
    /// The user's username changed.
    Renamed { old_username: Option<String> },
    /// A blocked user tried to sign in (GitLab `user_failed_login`, which says `state`).
    Blocked,
}

/// A user deleted, renamed or found blocked (GitLab system hooks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    pub action: UserAction,
    pub user: Actor,
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
    #[error("{payload} payload: `{field}` is not a commit id (40 or 64 hexadecimal digits)")]
    NotACommit {
        payload: &'static str,
        field: &'static str,
    },
    #[error("the JSON nests deeper than {limit} levels at line {line}, column {column}")]
    TooDeep {
        limit: usize,
        line: usize,
        column: usize,
    },
}

/// The deepest nesting of objects and arrays a delivery may have. GitLab's and GitHub's
/// payloads nest a handful of levels; the cap turns deep garbage into a clear error before
/// any parser sees it, and keeps serde_json (whose own recursion limit is 128) well inside
/// its bounds whatever a payload struct decodes.
pub const MAX_DEPTH: usize = 64;

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

/// True for a full git object id: 40 (SHA-1) or 64 (SHA-256) hexadecimal digits. Never a
/// ref name or an expression such as `main~1`.
pub fn is_commit_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `value` when it is a commit id, else the error naming `field` of `payload`.
pub fn commit_id(
    payload: &'static str,
    field: &'static str,
    value: String,
) -> Result<String, PayloadError> {
    if is_commit_id(&value) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(PayloadError::NotACommit { payload, field })
    }
}

/// True for the all-zeros object id forges use for "no commit" (SHA-1 or SHA-256).
pub fn is_zero_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// Reject empty bodies, bodies that are not a JSON object and bodies nested deeper than
/// [`MAX_DEPTH`] before any decoding.
pub(crate) fn check_object(body: &[u8]) -> Result<(), PayloadError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(PayloadError::Empty),
        Some(b'{') => check_depth(body),
        Some(_) => match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            // Valid JSON of another type (array, string, number, …).
            Ok(_) => Err(PayloadError::NotAnObject),
            Err(e) => Err(json_error("JSON", e)),
        },
    }
}

/// One pass over the bytes, counting `{`/`[` outside strings; the first level past
/// [`MAX_DEPTH`] is an error with its position. Syntax is left to the parser.
fn check_depth(body: &[u8]) -> Result<(), PayloadError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let (mut line, mut line_start) = (1usize, 0usize);
    for (i, &b) in body.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(PayloadError::TooDeep {
                        limit: MAX_DEPTH,
                        line,
                        column: i - line_start + 1,
                    });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'\n' => {
                line += 1;
                line_start = i + 1;
            }
            _ => {}
        }
    }
    Ok(())
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

/// The documented example payloads in `tests/data/` and small tools over them, for the
/// parsers' tests.
#[cfg(test)]
pub(crate) mod testing {
    use serde_json::Value;

    use super::{Event, Parsed};

    pub const ZERO: &str = "0000000000000000000000000000000000000000";

    /// The example `tests/data/<forge>/<name>.json`.
    pub fn data(forge: &str, name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/data/{forge}/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    /// Every example of `forge`, by name, sorted.
    pub fn examples(forge: &str) -> Vec<String> {
        let dir = format!("{}/tests/data/{forge}", env!("CARGO_MANIFEST_DIR"));
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".json").map(str::to_owned)
            })
            .collect();
        names.sort();
        names
    }

    pub fn value(forge: &str, name: &str) -> Value {
        serde_json::from_slice(&data(forge, name)).expect("test data is JSON")
    }

    /// `v` with the value at JSON pointer `pointer` replaced.
    pub fn set(mut v: Value, pointer: &str, new: Value) -> Value {
        *v.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("no {pointer} in test data")) = new;
        v
    }

    pub fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).expect("JSON")
    }

    /// The event of a delivery that must yield one; also checks that it survives a
    /// serde round trip (events are stored as JSON in job rows).
    pub fn event_of(parsed: Parsed) -> Event {
        let event = parsed.event.clone().expect("an event, not an ignored kind");
        assert_eq!(parsed.kind, event.kind());
        let json = serde_json::to_string(&parsed).expect("serializes");
        let back: Parsed = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, parsed);
        event
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
                visibility: None,
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

/// Bad bodies, through both forges' parsers: clear errors that never echo the body.
#[cfg(test)]
mod bad_bodies {
    use serde_json::{Value, json};

    use super::testing::{bytes, data, set, value};
    use super::{MAX_DEPTH, Parsed, PayloadError};
    use crate::forge::{github, gitlab};

    type ParseFn = fn(Option<&str>, &[u8]) -> Result<Parsed, PayloadError>;

    const PARSERS: [(&str, ParseFn, &str); 2] = [
        ("Push Hook", gitlab::payload::parse, "gitlab"),
        ("push", github::payload::parse, "github"),
    ];

    #[test]
    fn empty_and_non_object_bodies() {
        for (header, parse, _) in PARSERS {
            assert_eq!(parse(Some(header), b""), Err(PayloadError::Empty));
            assert_eq!(parse(Some(header), b" \r\n "), Err(PayloadError::Empty));
            assert_eq!(
                parse(Some(header), br#"[{"object_kind":"push"}]"#),
                Err(PayloadError::NotAnObject)
            );
            assert_eq!(parse(Some(header), b"42"), Err(PayloadError::NotAnObject));
            assert_eq!(parse(Some(header), b"null"), Err(PayloadError::NotAnObject));
        }
    }

    #[test]
    fn truncated_examples_are_malformed_with_position() {
        for (header, parse, forge) in PARSERS {
            let name = if forge == "gitlab" {
                "push"
            } else {
                "push_branch"
            };
            let body = data(forge, name);
            let cut = &body[..body.len() / 2];
            let err = parse(Some(header), cut).unwrap_err();
            let PayloadError::Malformed { line, column, .. } = &err else {
                panic!("{err:?}")
            };
            assert!(*line > 1 && *column > 0, "{err}");
            let text = err.to_string();
            assert!(text.contains(&format!("line {line}")), "{text}");
            assert!(
                !text.contains("Diaspora") && !text.contains("Codertocat"),
                "{text}"
            );
        }
    }

    #[test]
    fn trailing_garbage_is_malformed() {
        let mut body = data("gitlab", "push");
        body.extend_from_slice(b"\n{\"again\": 1}");
        assert!(matches!(
            gitlab::payload::parse(Some("Push Hook"), &body),
            Err(PayloadError::Malformed { .. })
        ));
    }

    #[test]
    fn wrong_types_name_the_expectation_but_not_the_value() {
        let v = set(
            value("gitlab", "merge_request"),
            "/object_attributes/iid",
            json!("SECRET-TOKEN-VALUE, expected nothing"),
        );
        let err = gitlab::payload::parse(Some("Merge Request Hook"), &bytes(&v)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, PayloadError::Invalid { .. }), "{err:?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("GitLab merge_request"), "{text}");
        assert!(text.contains("i64"), "{text}");

        let v = set(value("github", "push_branch"), "/created", json!("yes"));
        let err = github::payload::parse(Some("push"), &bytes(&v)).unwrap_err();
        assert!(err.to_string().contains("expected a boolean"), "{err}");

        let v = set(
            value("gitlab", "push"),
            "/project",
            json!(["not", "an", "object"]),
        );
        assert!(gitlab::payload::parse(Some("Push Hook"), &bytes(&v)).is_err());
    }

    #[test]
    fn missing_required_fields() {
        let mut v = value("gitlab", "push");
        v.as_object_mut().unwrap().remove("ref");
        assert_eq!(
            gitlab::payload::parse(Some("Push Hook"), &bytes(&v)),
            Err(PayloadError::MissingField {
                payload: "GitLab push",
                field: "ref".into()
            })
        );
        let v = set(value("gitlab", "tag_push"), "/project", Value::Null);
        assert_eq!(
            gitlab::payload::parse(Some("Tag Push Hook"), &bytes(&v))
                .unwrap_err()
                .to_string(),
            "GitLab push payload: missing field `project.path_with_namespace`"
        );
        let mut v = value("github", "pull_request_opened");
        v.as_object_mut().unwrap().remove("number");
        assert_eq!(
            github::payload::parse(Some("pull_request"), &bytes(&v)),
            Err(PayloadError::MissingField {
                payload: "GitHub pull_request",
                field: "number".into()
            })
        );
        let v = set(
            value("gitlab", "member_add_to_group"),
            "/group_path",
            Value::Null,
        );
        assert!(matches!(
            gitlab::payload::parse(Some("Member Hook"), &bytes(&v)),
            Err(PayloadError::MissingField { .. })
        ));
        assert!(matches!(
            github::payload::parse(Some("membership"), br#"{"action":"added","scope":"team"}"#),
            Err(PayloadError::MissingField { .. })
        ));
    }

    #[test]
    fn deeply_nested_payloads_are_rejected_with_the_limit() {
        let nested = |depth: usize, open: u8, close: u8, closed: bool| {
            let mut v = std::iter::repeat_n(open, depth).collect::<Vec<u8>>();
            if closed {
                v.extend(std::iter::repeat_n(close, depth));
            }
            v
        };
        let body = |prefix: &str, junk: Vec<u8>| {
            let mut b = prefix.as_bytes().to_vec();
            b.extend(junk);
            b.push(b'}');
            b
        };
        for (header, parse, _) in PARSERS {
            for prefix in [
                r#"{"object_kind":"push","junk":"#,
                r#"{"object_kind":"push","ref":"#,
                r#"{"junk":"#,
            ] {
                for closed in [true, false] {
                    let junk = nested(100_000, b'[', b']', closed);
                    let err = parse(Some(header), &body(prefix, junk)).unwrap_err();
                    let PayloadError::TooDeep {
                        limit,
                        line,
                        column,
                    } = err
                    else {
                        panic!("{err:?}")
                    };
                    assert_eq!((limit, line), (MAX_DEPTH, 1));
                    // The first bracket past the limit (the body's own `{` is level 1).
                    assert_eq!(column, prefix.len() + MAX_DEPTH);
                }
            }
            let err = parse(
                Some(header),
                &body(r#"{"a":"#, nested(70, b'{', b'}', true)),
            )
            .unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("the JSON nests deeper than 64 levels at line 1"),
                "{err}"
            );
        }
        // Brackets inside strings (escaped quotes included) do not count.
        let in_string = format!(
            r#"{{"object_kind":"pipeline","junk":"\"{}"}}"#,
            "[".repeat(1000)
        );
        assert_eq!(
            gitlab::payload::parse(Some("Pipeline Hook"), in_string.as_bytes()).unwrap(),
            Parsed::ignored("pipeline")
        );
        // At the limit, junk in a field nbforge skips is skipped.
        let at_limit = body(
            r#"{"object_kind":"pipeline","junk":"#,
            nested(MAX_DEPTH - 1, b'[', b']', true),
        );
        assert_eq!(
            gitlab::payload::parse(Some("Pipeline Hook"), &at_limit).unwrap(),
            Parsed::ignored("pipeline")
        );
        // serde_json's own limit (128) lies beyond ours: depth within the cap never
        // reaches it, even where a field is decoded.
        let err = github::payload::parse(
            Some("push"),
            &body(r#"{"ref":"#, nested(MAX_DEPTH - 1, b'[', b']', true)),
        )
        .unwrap_err();
        assert!(matches!(err, PayloadError::Invalid { .. }), "{err:?}");
    }
}
