//! The fake's OAuth2 provider, as GitLab documents it: `GET /oauth/authorize` shows a
//! consent page (for the user the test has "signed in" with [`FakeGitLab::sign_in`]),
//! `POST /oauth/authorize` approves and redirects back with a code, `POST /oauth/token`
//! exchanges a code (checking the PKCE verifier against the S256 challenge, the client
//! and the redirect URI) or a refresh token (rotating both tokens, as GitLab does).
//! Access tokens it issues are accepted by `/api/v4/user`, which then answers that user.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::*;

type Shared = Arc<Inner>;

/// The registered application and what has been issued.
#[derive(Debug, Default)]
pub(super) struct OAuthState {
    /// (client id, client secret, redirect URI).
    app: Option<(String, String, String)>,
    /// Who is signed in to the fake's web UI.
    signed_in: Option<i64>,
    /// code → (user, challenge, redirect URI).
    codes: HashMap<String, (i64, String, String)>,
    /// access token → (user, expires at, Unix seconds).
    access: HashMap<String, (i64, u64)>,
    /// refresh token → user.
    refresh: HashMap<String, i64>,
    /// Seconds an access token lives.
    lifetime: u64,
    /// Token requests seen, for assertions: (grant type, ok).
    pub(super) grants: Vec<(String, bool)>,
}

/// The user behind an OAuth access token, put on the request by the gatekeeper.
#[derive(Debug, Clone, Copy)]
pub(super) struct OAuthUser(pub i64);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The user of a live access token.
pub(super) fn token_user(inner: &Inner, token: &str) -> Option<i64> {
    let s = inner.state();
    s.oauth
        .access
        .get(token)
        .filter(|(_, exp)| *exp > now())
        .map(|(u, _)| *u)
}

pub(super) fn router() -> Router<Shared> {
    Router::new()
        .route("/oauth/authorize", get(authorize_page).post(approve))
        .route("/oauth/token", post(token))
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": format!("{error} (fake)") })),
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn authorize_page(
    State(inner): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let s = inner.state();
    let Some((client_id, _, redirect)) = &s.oauth.app else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client");
    };
    let ok = q.get("client_id") == Some(client_id)
        && q.get("redirect_uri") == Some(redirect)
        && q.get("response_type").map(String::as_str) == Some("code")
        && q.get("code_challenge_method").map(String::as_str) == Some("S256")
        && q.get("code_challenge").is_some_and(|c| c.len() == 43)
        && q.contains_key("state");
    if !ok {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let Some(user) = s.oauth.signed_in.and_then(|id| s.user(id)).cloned() else {
        return (StatusCode::UNAUTHORIZED, "sign in to the fake GitLab first").into_response();
    };
    let hidden: String = q
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                html_escape(k),
                html_escape(v)
            )
        })
        .collect();
    axum::response::Html(format!(
        "<!DOCTYPE html><html><head><title>Authorize application</title></head><body>\
         <h1>Authorize nbforge to use your account?</h1><p>Signed in as {}</p>\
         <form method=\"post\" action=\"/oauth/authorize\">{hidden}\
         <button id=\"authorize\" type=\"submit\">Authorize</button></form></body></html>",
        html_escape(&user.username)
    ))
    .into_response()
}

async fn approve(
    State(inner): State<Shared>,
    axum::extract::Form(f): axum::extract::Form<HashMap<String, String>>,
) -> Response {
    let mut s = inner.state();
    let Some(user) = s.oauth.signed_in else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let Some((_, _, redirect)) = s.oauth.app.clone() else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client");
    };
    let (Some(challenge), Some(state)) = (f.get("code_challenge"), f.get("state")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let code = random();
    s.oauth
        .codes
        .insert(code.clone(), (user, challenge.clone(), redirect.clone()));
    let mut to = url::Url::parse(&redirect).expect("registered redirect URI");
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", state);
    (StatusCode::FOUND, [(header::LOCATION, to.to_string())]).into_response()
}

async fn token(
    State(inner): State<Shared>,
    axum::extract::Form(f): axum::extract::Form<HashMap<String, String>>,
) -> Response {
    let mut s = inner.state();
    let grant = f.get("grant_type").cloned().unwrap_or_default();
    let Some((client_id, secret, redirect)) = s.oauth.app.clone() else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if f.get("client_id") != Some(&client_id) || f.get("client_secret") != Some(&secret) {
        s.oauth.grants.push((grant, false));
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let user = match grant.as_str() {
        "authorization_code" => {
            let code = f.get("code").cloned().unwrap_or_default();
            // A code is used once, whatever happens next.
            let issued = s.oauth.codes.remove(&code);
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            match issued {
                Some((user, challenge, uri))
                    if uri == redirect
                        && f.get("redirect_uri") == Some(&uri)
                        && URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
                            == challenge =>
                {
                    Some(user)
                }
                _ => None,
            }
        }
        "refresh_token" => {
            let old = f.get("refresh_token").cloned().unwrap_or_default();
            let user = s.oauth.refresh.remove(&old);
            if let Some(u) = user {
                // GitLab revokes the old access token with the old refresh token.
                s.oauth.access.retain(|_, (owner, _)| *owner != u);
            }
            user
        }
        _ => {
            s.oauth.grants.push((grant, false));
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
        }
    };
    let Some(user) = user else {
        s.oauth.grants.push((grant, false));
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    s.oauth.grants.push((grant, true));
    let lifetime = if s.oauth.lifetime == 0 {
        7200
    } else {
        s.oauth.lifetime
    };
    let (access, refresh) = (random(), random());
    s.oauth
        .access
        .insert(access.clone(), (user, now() + lifetime));
    s.oauth.refresh.insert(refresh.clone(), user);
    axum::Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "refresh_token": refresh,
        "scope": "openid read_user api",
        "created_at": now(),
    }))
    .into_response()
}

impl FakeGitLab {
    /// Registers an OAuth application (nbforge) with its id, secret and `redirect_uri`.
    pub fn register_oauth_app(&self, id: &str, secret: &Secret, redirect_uri: &str) {
        self.inner.state().oauth.app = Some((
            id.to_owned(),
            secret.expose().to_owned(),
            redirect_uri.to_owned(),
        ));
    }

    /// Who the fake's web UI considers signed in (`None`: nobody).
    pub fn sign_in(&self, user: Option<&FakeUser>) {
        self.inner.state().oauth.signed_in = user.map(|u| u.id);
    }

    /// How long access tokens issued from now on live, in seconds.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.inner.state().oauth.lifetime = secs;
    }

    /// Token requests so far: (grant type, whether it succeeded).
    pub fn oauth_grants(&self) -> Vec<(String, bool)> {
        self.inner.state().oauth.grants.clone()
    }

    /// Revokes every token of `user` (as when they revoke the application).
    pub fn revoke_tokens(&self, user: &FakeUser) {
        let mut s = self.inner.state();
        s.oauth.access.retain(|_, (u, _)| *u != user.id);
        s.oauth.refresh.retain(|_, u| *u != user.id);
    }

    /// Expires every live access token now (their refresh tokens stay valid).
    pub fn expire_access_tokens(&self) {
        let mut s = self.inner.state();
        for (_, exp) in s.oauth.access.values_mut() {
            *exp = 0;
        }
    }
}
