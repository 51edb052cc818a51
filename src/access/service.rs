//! [`Access`]: the running service's side of access. It turns a session cookie into a
//! [`Viewer`] (who is looking, at which interface level), answers [`Access::check`] for a
//! project by asking [`Policy::can`] with the project's visibility and the viewer's role,
//! runs the login with GitLab (state and PKCE verifier kept server-side, bound to the
//! browser), and hands out a user's GitLab token, refreshing it one refresh at a time per
//! user.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use url::Url;

use super::oauth::{self, OAuthClient, OAuthError, OAuthSettings};
use super::policy::{Action, Policy, Resource, Subject};
use super::roles::{AccessLevel, Role, RoleMap, UserLevel, Visibility};
use super::sealed::{SecretBox, random_bytes};
use crate::config::{Secret, Settings};
use crate::events::ForgeKind;
use crate::storage::{Db, DbError, SealedTokens, UserRow, UserUpdate};

/// How long a login may take between `/login` and the callback.
pub const LOGIN_ATTEMPT_TTL: Duration = Duration::from_secs(10 * 60);
/// A session's `last_seen_at` is written at most this often.
const TOUCH_EVERY_MS: i64 = 60_000;
/// Tokens this close to expiry are refreshed before use.
const REFRESH_MARGIN_MS: i64 = 60_000;

const ACCESS_TOKEN: &str = "gitlab-access-token";
const REFRESH_TOKEN: &str = "gitlab-refresh-token";
const VERIFIER: &str = "pkce-verifier";

/// Who is looking, as every route sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub subject: Subject,
    /// The user's row, when logged in.
    pub user: Option<UserRow>,
    /// How much interface they see.
    pub level: UserLevel,
    /// The highest level they may choose.
    pub max_level: UserLevel,
    /// The session's CSRF token, when logged in.
    pub csrf_token: Option<String>,
}

impl Viewer {
    pub fn anonymous() -> Viewer {
        Viewer {
            subject: Subject::Anonymous,
            user: None,
            level: UserLevel::Public,
            max_level: UserLevel::Public,
            csrf_token: None,
        }
    }

    /// The admin API's bearer token.
    pub fn admin_token() -> Viewer {
        Viewer {
            subject: Subject::AdminToken,
            user: None,
            level: UserLevel::Developer,
            max_level: UserLevel::Developer,
            csrf_token: None,
        }
    }

    pub fn user_id(&self) -> Option<i64> {
        self.user.as_ref().map(|u| u.id)
    }

    pub fn is_platform_admin(&self) -> bool {
        match &self.subject {
            Subject::AdminToken => true,
            Subject::User { platform_admin, .. } => *platform_admin,
            Subject::Anonymous => false,
        }
    }
}

/// Why a check failed, and so what to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Logging in might help: pages send the browser to `/login?next=…`.
    NeedsLogin,
    /// Not for this viewer: answered as if nothing were there.
    Hidden,
}

/// What a viewer may do in one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectAccess {
    pub visibility: Visibility,
    pub role: Role,
}

impl ProjectAccess {
    pub fn resource(self) -> Resource {
        Resource::Project {
            visibility: self.visibility,
            role: self.role,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("login with GitLab is not configured on this server")]
    NotConfigured,
    /// The state is unknown, used, expired or from another browser.
    #[error("this login link is no longer valid")]
    BadState,
    /// GitLab said no (the user denied access, or a code was refused).
    #[error("GitLab did not confirm the login: {0}")]
    Refused(String),
    #[error("your GitLab account is not active")]
    Inactive,
    #[error("GitLab is unavailable; try again in a moment")]
    Unavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<DbError> for LoginError {
    fn from(e: DbError) -> Self {
        LoginError::Internal(e.into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No token stored, or GitLab refused the refresh: the user logs in again.
    #[error("log in again to let nbforge act for you in GitLab")]
    LoginAgain,
    #[error("GitLab is unavailable; try again in a moment")]
    Unavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A successful login: the session cookie's value and where to go.
#[derive(Debug)]
pub struct LoggedIn {
    pub session: Secret,
    pub next: String,
    pub user_id: i64,
}

/// The start of a login: where to send the browser, and the value of the cookie that
/// binds the attempt to this browser.
#[derive(Debug)]
pub struct LoginStart {
    pub authorize_url: Url,
    pub browser_binding: Secret,
}

/// Access as the running service sees it; cheap to clone.
#[derive(Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    policy: Policy,
    roles: RoleMap,
    admins: Vec<String>,
    admin_group: Option<String>,
    level_groups: Vec<(UserLevel, String)>,
    plain_git_visibility: Visibility,
    gitlab_api: bool,
    idle_ms: i64,
    max_ms: i64,
    sealer: Arc<SecretBox>,
    oauth: Option<OAuthClient>,
    refreshing: tokio::sync::Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").finish_non_exhaustive()
    }
}

/// `hex(SHA-256(parts joined by NUL))`: how session ids and login states are stored.
pub fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// A fresh random token (32 bytes, base64url).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

impl Access {
    /// A key for `purpose` derived from nbforge's secret key (see [`SecretBox::derive`]).
    pub fn derived_key(&self, purpose: &str) -> Secret {
        self.inner.sealer.derive(purpose)
    }

    /// Access from the settings, with the token key from `NBFORGE_SECRET_KEY` or the data
    /// directory.
    pub fn new(settings: &Settings, db: Db) -> anyhow::Result<Access> {
        let a = &settings.access;
        let sealer = match &a.secret_key {
            Some(key) => SecretBox::from_secret(key)?,
            None => SecretBox::load_or_create(&settings.data_dir.join("secret.key"))?,
        };
        let roles = match &a.role_map {
            Some(spec) => RoleMap::parse(spec).map_err(|e| anyhow::anyhow!("role_map: {e}"))?,
            None => RoleMap::default(),
        };
        let mut level_groups = Vec::new();
        for (name, group) in &a.level_groups {
            let level = UserLevel::parse(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "level_groups: `{name}` is not a level (public, end-user, script-author, developer)"
                )
            })?;
            level_groups.push((level, group.clone()));
        }
        let oauth = match (
            &a.oauth_client_id,
            &a.oauth_client_secret,
            &settings.forges.gitlab_url,
        ) {
            (Some(id), Some(secret), Some(gitlab)) => Some(OAuthClient::new(OAuthSettings {
                gitlab_url: gitlab.clone(),
                client_id: id.clone(),
                client_secret: secret.clone(),
                redirect_uri: settings.server.public_url.join("oauth/callback")?,
                scopes: a.oauth_scopes.clone(),
            })),
            _ => None,
        };
        Ok(Access {
            inner: Arc::new(Inner {
                db,
                policy: Policy {
                    anonymous_sessions: a.anonymous_sessions,
                    anonymous_runs: a.anonymous_runs,
                },
                roles,
                admins: a.admins.clone(),
                admin_group: a.admin_group.clone(),
                level_groups,
                plain_git_visibility: Visibility::parse(&a.plain_git_visibility),
                gitlab_api: settings.forges.gitlab_token.is_some(),
                idle_ms: millis(a.session_idle),
                max_ms: millis(a.session_max),
                sealer: Arc::new(sealer),
                oauth,
                refreshing: tokio::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The role an access level gives, by the configured map.
    pub fn role_for(&self, level: AccessLevel) -> Role {
        self.inner.roles.role(level)
    }

    pub fn login_enabled(&self) -> bool {
        self.inner.oauth.is_some()
    }

    pub fn admin_group(&self) -> Option<&str> {
        self.inner.admin_group.as_deref()
    }

    fn now(&self) -> i64 {
        self.inner.db.clock().now_ms()
    }

    // ------------------------------------------------------------------ who is looking

    /// The viewer behind a session cookie value; anonymous when there is none, or when
    /// it is unknown, expired, idle too long, or its user is no longer active.
    pub async fn viewer(&self, session: Option<&str>) -> Result<Viewer, DbError> {
        let Some(value) = session.filter(|v| !v.is_empty() && v.len() <= 256) else {
            return Ok(Viewer::anonymous());
        };
        let id_hash = digest(&["session", value]);
        let Some(row) = self.inner.db.get_web_session(&id_hash).await? else {
            return Ok(Viewer::anonymous());
        };
        let now = self.now();
        if row.expires_at <= now || row.last_seen_at + self.inner.idle_ms <= now {
            self.inner.db.delete_web_session(&id_hash).await?;
            return Ok(Viewer::anonymous());
        }
        let Some(user) = self.inner.db.get_user(row.user_id).await? else {
            return Ok(Viewer::anonymous());
        };
        if user.state != "active" {
            self.inner.db.delete_web_session(&id_hash).await?;
            return Ok(Viewer::anonymous());
        }
        if now - row.last_seen_at >= TOUCH_EVERY_MS {
            self.inner.db.touch_web_session(&id_hash).await?;
        }
        let mut viewer = self.user_viewer(user).await?;
        viewer.csrf_token = Some(row.csrf_token);
        Ok(viewer)
    }

    /// The viewer for a user: platform admin or not, level and its cap.
    pub async fn user_viewer(&self, user: UserRow) -> Result<Viewer, DbError> {
        let db = &self.inner.db;
        let mut platform_admin = self.inner.admins.contains(&user.username);
        if !platform_admin && let Some(group) = &self.inner.admin_group {
            platform_admin = db
                .group_access_level(ForgeKind::GitLab, user.id, group)
                .await?
                .is_some_and(|l| AccessLevel(l) >= AccessLevel::MAINTAINER);
        }
        let max_level = if platform_admin || db.has_role_at_least(user.id, 30).await? {
            UserLevel::Developer
        } else {
            UserLevel::ScriptAuthor
        };
        let mut from_groups = None;
        for (level, group) in &self.inner.level_groups {
            let member = db
                .group_access_level(ForgeKind::GitLab, user.id, group)
                .await?
                .is_some_and(|l| self.inner.roles.role(AccessLevel(l)) >= Role::Read);
            if member && from_groups.is_none_or(|l| *level > l) {
                from_groups = Some(*level);
            }
        }
        let chosen = user.chosen_level.as_deref().and_then(UserLevel::parse);
        let level = chosen
            .or(from_groups)
            .unwrap_or(UserLevel::EndUser)
            .min(max_level);
        Ok(Viewer {
            subject: Subject::User {
                id: user.id,
                username: user.username.clone(),
                platform_admin,
            },
            user: Some(user),
            level,
            max_level,
            csrf_token: None,
        })
    }

    // ------------------------------------------------------------------ what they may do

    /// The viewer's standing in a project: its visibility (private when unknown, except
    /// for projects no forge API describes) and their role from memberships.
    pub async fn project(
        &self,
        viewer: &Viewer,
        forge: ForgeKind,
        path: &str,
    ) -> Result<ProjectAccess, DbError> {
        let user = match forge {
            ForgeKind::GitLab => viewer.user_id(),
            // Only GitLab memberships are followed.
            ForgeKind::GitHub => None,
        };
        let (stored, level) = self.inner.db.standing(forge, path, user).await?;
        let visibility = match stored.as_deref() {
            Some(v) => Visibility::parse(v),
            None if self.described_by_api(forge) => Visibility::Private,
            None => self.inner.plain_git_visibility,
        };
        let role = level.map_or(Role::None, |l| self.inner.roles.role(AccessLevel(l)));
        Ok(ProjectAccess { visibility, role })
    }

    /// Whether projects of `forge` have a visibility nbforge can learn from an API.
    fn described_by_api(&self, forge: ForgeKind) -> bool {
        match forge {
            ForgeKind::GitLab => self.inner.gitlab_api,
            ForgeKind::GitHub => true,
        }
    }

    /// Whether `viewer` may do `action` in the project; when not, whether logging in
    /// might help.
    pub async fn check(
        &self,
        viewer: &Viewer,
        action: Action,
        forge: ForgeKind,
        path: &str,
    ) -> Result<Result<ProjectAccess, Denied>, DbError> {
        let standing = self.project(viewer, forge, path).await?;
        if self
            .inner
            .policy
            .can(&viewer.subject, action, standing.resource())
        {
            return Ok(Ok(standing));
        }
        // Would any logged-in member with the read role be allowed? Then a login may help.
        let as_member = Subject::User {
            id: 0,
            username: String::new(),
            platform_admin: false,
        };
        let member = Resource::Project {
            visibility: standing.visibility,
            role: Role::Admin,
        };
        if matches!(viewer.subject, Subject::Anonymous)
            && self.inner.policy.can(&as_member, action, member)
        {
            return Ok(Err(Denied::NeedsLogin));
        }
        Ok(Err(Denied::Hidden))
    }

    /// Whether the viewer may do `action` on nbforge itself (the admin API, approvals).
    pub fn can_platform(&self, viewer: &Viewer, action: Action) -> bool {
        self.inner
            .policy
            .can(&viewer.subject, action, Resource::Platform)
    }

    /// Whether the viewer may see a project (for lists): `ViewWorksheets`.
    pub async fn may_view(
        &self,
        viewer: &Viewer,
        forge: ForgeKind,
        path: &str,
    ) -> Result<bool, DbError> {
        Ok(self
            .check(viewer, Action::ViewWorksheets, forge, path)
            .await?
            .is_ok())
    }

    // ------------------------------------------------------------------ login

    /// Starts a login that returns to `next` (a path on this site; anything else is `/`).
    pub async fn start_login(&self, next: Option<&str>) -> Result<LoginStart, LoginError> {
        let client = self.inner.oauth.as_ref().ok_or(LoginError::NotConfigured)?;
        let next = next.and_then(oauth::safe_next).unwrap_or("/");
        let state = oauth::new_state();
        let binding = random_token();
        let pkce = oauth::pkce();
        let sealed = self
            .inner
            .sealer
            .seal(VERIFIER, pkce.verifier.expose())
            .map_err(|e| LoginError::Internal(e.into()))?;
        self.inner
            .db
            .create_login_attempt(&digest(&["login", &state, &binding]), &sealed, next)
            .await?;
        Ok(LoginStart {
            authorize_url: oauth::authorize_url(client.settings(), &state, &pkce.challenge),
            browser_binding: Secret::new(binding),
        })
    }

    /// Finishes a login: checks the state against this browser's binding, exchanges the
    /// code, records the user and their tokens, and starts a session (a new id, whatever
    /// the browser had before).
    pub async fn finish_login(
        &self,
        state: &str,
        binding: Option<&str>,
        code: &str,
    ) -> Result<LoggedIn, LoginError> {
        let client = self.inner.oauth.as_ref().ok_or(LoginError::NotConfigured)?;
        let binding = binding.ok_or(LoginError::BadState)?;
        let attempt = self
            .inner
            .db
            .take_login_attempt(&digest(&["login", state, binding]))
            .await?
            .ok_or(LoginError::BadState)?;
        let now = self.now();
        if attempt.created_at + millis(LOGIN_ATTEMPT_TTL) < now {
            return Err(LoginError::BadState);
        }
        let verifier = self
            .inner
            .sealer
            .open(VERIFIER, &attempt.verifier)
            .map_err(|_| LoginError::BadState)?;
        let tokens = client
            .exchange(code, &verifier, now)
            .await
            .map_err(login_error)?;
        let me = client
            .user(&tokens.access_token)
            .await
            .map_err(login_error)?;
        if me.state.as_deref().is_some_and(|s| s != "active") {
            return Err(LoginError::Inactive);
        }
        let db = &self.inner.db;
        db.upsert_user(&UserUpdate {
            id: me.id,
            username: &me.username,
            name: Some(&me.name),
            avatar_url: me.avatar_url.as_deref(),
            state: Some("active"),
        })
        .await?;
        db.set_user_tokens(me.id, &self.seal_tokens(&tokens)?, true)
            .await?;
        let session = random_token();
        db.create_web_session(
            &digest(&["session", &session]),
            me.id,
            &random_token(),
            now + self.inner.max_ms,
        )
        .await?;
        Ok(LoggedIn {
            session: Secret::new(session),
            next: attempt.next_path,
            user_id: me.id,
        })
    }

    /// Ends the session behind a cookie value.
    pub async fn logout(&self, session: &str) -> Result<(), DbError> {
        self.inner
            .db
            .delete_web_session(&digest(&["session", session]))
            .await
    }

    fn seal_tokens(&self, t: &oauth::Tokens) -> Result<SealedTokens, LoginError> {
        let seal = |purpose: &str, s: &Secret| {
            self.inner
                .sealer
                .seal(purpose, s.expose())
                .map_err(|e| LoginError::Internal(e.into()))
        };
        Ok(SealedTokens {
            access_token: Some(seal(ACCESS_TOKEN, &t.access_token)?),
            refresh_token: t
                .refresh_token
                .as_ref()
                .map(|r| seal(REFRESH_TOKEN, r))
                .transpose()?,
            token_expires_at: t.expires_at_ms,
        })
    }

    // ------------------------------------------------------------------ acting as the user

    /// The user's GitLab access token, refreshed first when it is about to expire. GitLab
    /// rotates both tokens on refresh, so refreshes of one user wait for each other.
    pub async fn user_token(&self, user_id: i64) -> Result<Secret, TokenError> {
        let lock = {
            let mut map = self.inner.refreshing.lock().await;
            map.entry(user_id).or_default().clone()
        };
        let _turn = lock.lock().await;
        let db = &self.inner.db;
        let stored = db
            .user_tokens(user_id)
            .await
            .map_err(|e| TokenError::Internal(e.into()))?
            .ok_or(TokenError::LoginAgain)?;
        let open = |purpose: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| self.inner.sealer.open(purpose, s))
                .transpose()
                .map_err(|_| TokenError::LoginAgain)
        };
        let access = open(ACCESS_TOKEN, &stored.access_token)?.ok_or(TokenError::LoginAgain)?;
        let now = self.now();
        let fresh = stored
            .token_expires_at
            .is_none_or(|at| at - REFRESH_MARGIN_MS > now);
        if fresh {
            return Ok(access);
        }
        let refresh = open(REFRESH_TOKEN, &stored.refresh_token)?.ok_or(TokenError::LoginAgain)?;
        let client = self.inner.oauth.as_ref().ok_or(TokenError::LoginAgain)?;
        match client.refresh(&refresh, now).await {
            Ok(tokens) => {
                let sealed = self
                    .seal_tokens(&tokens)
                    .map_err(|e| TokenError::Internal(anyhow::anyhow!("{e}")))?;
                db.set_user_tokens(user_id, &sealed, false)
                    .await
                    .map_err(|e| TokenError::Internal(e.into()))?;
                Ok(tokens.access_token)
            }
            Err(OAuthError::Refused(_)) => {
                db.set_user_tokens(
                    user_id,
                    &SealedTokens {
                        access_token: None,
                        refresh_token: None,
                        token_expires_at: None,
                    },
                    false,
                )
                .await
                .map_err(|e| TokenError::Internal(e.into()))?;
                Err(TokenError::LoginAgain)
            }
            Err(OAuthError::Unavailable(_)) => Err(TokenError::Unavailable),
            Err(e @ OAuthError::Malformed(_)) => Err(TokenError::Internal(e.into())),
        }
    }
}

fn login_error(e: OAuthError) -> LoginError {
    match e {
        OAuthError::Refused(code) => {
            LoginError::Refused(crate::text::truncate(&code, 80).into_owned())
        }
        OAuthError::Unavailable(_) => LoginError::Unavailable,
        e @ OAuthError::Malformed(_) => LoginError::Internal(e.into()),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_keep_their_parts_apart() {
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
        assert_eq!(digest(&["x"]).len(), 64);
        assert_ne!(random_token(), random_token());
    }
}
