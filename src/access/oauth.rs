//! Login with GitLab: the OAuth2 authorization-code flow with PKCE (S256), as GitLab
//! documents it (`/oauth/authorize`, `/oauth/token`, then `/api/v4/user`). Each attempt has a
//! fresh `state` and code verifier, kept server-side until the callback; tokens come back as
//! [`Secret`]s. GitLab rotates both tokens on refresh, so callers serialize refreshes per
//! user.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use super::sealed::random_bytes;
use crate::config::Secret;

/// The OAuth application registered in GitLab.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// GitLab's base URL.
    pub gitlab_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    /// `<NBFORGE_PUBLIC_URL>/oauth/callback`.
    pub redirect_uri: Url,
    /// `openid read_user` to log in; `api` to act as the user (fork, merge requests).
    pub scopes: Vec<String>,
}

/// A PKCE pair: the verifier stays with nbforge, the challenge goes to GitLab.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

/// A fresh verifier (43 characters of base64url over 32 random bytes) and its S256 challenge.
pub fn pkce() -> Pkce {
    let verifier = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    Pkce {
        challenge: s256(&verifier),
        verifier: Secret::new(verifier),
    }
}

/// `BASE64URL(SHA256(verifier))`, the S256 code challenge.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A fresh, unguessable `state` for one login attempt.
pub fn new_state() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<24>())
}

/// Where `next` may send a user after login: a path on this site only (`/w/lab/x?a=b`),
/// never another host (`//evil.example`, `https://…`, `/\evil.example`).
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control())
        && next.len() <= 2048;
    ok.then_some(next)
}

/// The URL to send the browser to for one attempt.
pub fn authorize_url(settings: &OAuthSettings, state: &str, challenge: &str) -> Url {
    let mut url = settings.gitlab_url.clone();
    url.set_path(&format!(
        "{}/oauth/authorize",
        settings.gitlab_url.path().trim_end_matches('/')
    ));
    url.query_pairs_mut()
        .append_pair("client_id", &settings.client_id)
        .append_pair("redirect_uri", settings.redirect_uri.as_str())
        .append_pair("response_type", "code")
        .append_pair("scope", &settings.scopes.join(" "))
        .append_pair("state", state)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    url
}

/// What GitLab gives for a code or a refresh token.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// When the access token expires, in Unix epoch milliseconds.
    pub expires_at_ms: Option<i64>,
    pub scope: Option<String>,
}

/// The GitLab user behind a token (`GET /api/v4/user`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct GitLabUser {
    pub id: i64,
    pub username: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub avatar_url: Option<String>,
    /// `active`, `blocked`, …
    #[serde(default)]
    pub state: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// GitLab refused (a used or expired code, a revoked refresh token, a wrong verifier):
    /// the user logs in again.
    #[error("GitLab refused: {0}")]
    Refused(String),
    /// GitLab could not be reached or answered with a server error: try again later.
    #[error("GitLab is unavailable: {0}")]
    Unavailable(String),
    /// GitLab answered something that is not what it documents.
    #[error("unexpected answer from GitLab: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// Talks to GitLab's OAuth and user endpoints; never follows redirects.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    settings: OAuthSettings,
    http: reqwest::Client,
}

impl OAuthClient {
    pub fn new(settings: OAuthSettings) -> OAuthClient {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .expect("an HTTP client with static settings builds");
        OAuthClient { settings, http }
    }

    pub fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.settings.gitlab_url.clone();
        url.set_path(&format!(
            "{}{path}",
            self.settings.gitlab_url.path().trim_end_matches('/')
        ));
        url
    }

    /// Exchanges an authorization code and its verifier for tokens.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &Secret,
        now_ms: i64,
    ) -> Result<Tokens, OAuthError> {
        self.token(
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier.expose()),
                ("redirect_uri", self.settings.redirect_uri.as_str()),
            ],
            now_ms,
        )
        .await
    }

    /// New tokens for a refresh token (GitLab rotates both).
    pub async fn refresh(&self, refresh_token: &Secret, now_ms: i64) -> Result<Tokens, OAuthError> {
        self.token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose()),
                ("redirect_uri", self.settings.redirect_uri.as_str()),
            ],
            now_ms,
        )
        .await
    }

    async fn token(&self, form: &[(&str, &str)], now_ms: i64) -> Result<Tokens, OAuthError> {
        let mut form = form.to_vec();
        form.push(("client_id", &self.settings.client_id));
        form.push(("client_secret", self.settings.client_secret.expose()));
        let res = self
            .http
            .post(self.endpoint("/oauth/token"))
            .header("accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| OAuthError::Unavailable(without_url(e)))?;
        let status = res.status();
        let body = res
            .bytes()
            .await
            .map_err(|e| OAuthError::Unavailable(without_url(e)))?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(OAuthError::Unavailable(format!("HTTP {status}")));
        }
        if !status.is_success() {
            let code = serde_json::from_slice::<ErrorAnswer>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(OAuthError::Refused(code));
        }
        let t: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            OAuthError::Malformed("the token answer is not JSON with an access_token".into())
        })?;
        Ok(Tokens {
            access_token: Secret::new(t.access_token),
            refresh_token: t.refresh_token.map(Secret::new),
            expires_at_ms: t
                .expires_in
                .map(|s| now_ms.saturating_add(s.saturating_mul(1000))),
            scope: t.scope,
        })
    }

    /// The user an access token belongs to.
    pub async fn user(&self, access_token: &Secret) -> Result<GitLabUser, OAuthError> {
        let res = self
            .http
            .get(self.endpoint("/api/v4/user"))
            .bearer_auth(access_token.expose())
            .send()
            .await
            .map_err(|e| OAuthError::Unavailable(without_url(e)))?;
        let status = res.status();
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(OAuthError::Refused(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(OAuthError::Unavailable(format!("HTTP {status}")));
        }
        res.json::<GitLabUser>()
            .await
            .map_err(|_| OAuthError::Malformed("the user answer is not a GitLab user".into()))
    }
}

/// A transport error's text without the URL (which may carry a code or token).
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Form, State};
    use axum::routing::{get, post};
    use axum::{Json, Router};

    use super::*;

    fn settings(gitlab: &str) -> OAuthSettings {
        OAuthSettings {
            gitlab_url: Url::parse(gitlab).unwrap(),
            client_id: "nbforge-app".into(),
            client_secret: Secret::new("app-secret"),
            redirect_uri: Url::parse("https://nbforge.example.org/oauth/callback").unwrap(),
            scopes: vec!["openid".into(), "read_user".into(), "api".into()],
        }
    }

    #[test]
    fn pkce_is_s256_of_a_fresh_verifier() {
        let a = pkce();
        let b = pkce();
        assert_ne!(a.verifier.expose(), b.verifier.expose());
        assert_eq!(a.verifier.expose().len(), 43);
        assert!(
            a.verifier
                .expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        // RFC 7636, appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(a.challenge, s256(a.verifier.expose()));
        assert_ne!(new_state(), new_state());
    }

    #[test]
    fn the_authorize_url_carries_what_gitlab_documents() {
        let url = authorize_url(&settings("https://gitlab.example.org/"), "st", "ch");
        assert_eq!(url.path(), "/oauth/authorize");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], "nbforge-app");
        assert_eq!(
            q["redirect_uri"],
            "https://nbforge.example.org/oauth/callback"
        );
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["scope"], "openid read_user api");
        assert_eq!(q["state"], "st");
        assert_eq!(q["code_challenge"], "ch");
        assert_eq!(q["code_challenge_method"], "S256");
        assert!(!url.as_str().contains("app-secret"));
        let sub = authorize_url(&settings("https://example.org/gitlab"), "s", "c");
        assert_eq!(sub.path(), "/gitlab/oauth/authorize");
    }

    #[test]
    fn next_stays_on_this_site() {
        for good in ["/", "/w/lab/rnaseq/v1?x=1", "/me#results"] {
            assert_eq!(safe_next(good), Some(good));
        }
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "evil.example",
            "",
            "/\r\nSet-Cookie: x",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }

    #[derive(Default)]
    struct Fake {
        challenge: String,
        forms: Vec<std::collections::HashMap<String, String>>,
    }

    async fn token(
        State(fake): State<Arc<Mutex<Fake>>>,
        Form(form): Form<std::collections::HashMap<String, String>>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut f = fake.lock().unwrap();
        f.forms.push(form.clone());
        let ok = match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                form.get("code").map(String::as_str) == Some("the-code")
                    && form.get("code_verifier").map(|v| s256(v)) == Some(f.challenge.clone())
            }
            Some("refresh_token") => form.get("refresh_token").map(String::as_str) == Some("r1"),
            _ => false,
        };
        if !ok {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": "invalid_grant"})),
            )
                .into_response();
        }
        Json(serde_json::json!({
            "access_token": "a1", "token_type": "Bearer", "expires_in": 7200,
            "refresh_token": "r2", "scope": "openid read_user api", "created_at": 1
        }))
        .into_response()
    }

    async fn user(headers: axum::http::HeaderMap) -> axum::response::Response {
        use axum::response::IntoResponse;
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer a1") {
            return axum::http::StatusCode::UNAUTHORIZED.into_response();
        }
        Json(
            serde_json::json!({"id": 7, "username": "ada", "name": "Ada L.", "state": "active",
                                "avatar_url": "https://gitlab.example.org/a.png"}),
        )
        .into_response()
    }

    #[tokio::test]
    async fn exchanges_a_code_with_its_verifier_and_reads_the_user() {
        let fake = Arc::new(Mutex::new(Fake::default()));
        let app = Router::new()
            .route("/oauth/token", post(token))
            .route("/api/v4/user", get(user))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = OAuthClient::new(settings(&format!("http://{addr}")));

        let attempt = pkce();
        fake.lock().unwrap().challenge = attempt.challenge.clone();
        let wrong = pkce();
        let err = client
            .exchange("the-code", &wrong.verifier, 0)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OAuthError::Refused(c) if c == "invalid_grant"),
            "{err}"
        );

        let tokens = client
            .exchange("the-code", &attempt.verifier, 1_000)
            .await
            .unwrap();
        assert_eq!(tokens.access_token.expose(), "a1");
        assert_eq!(tokens.refresh_token.as_ref().unwrap().expose(), "r2");
        assert_eq!(tokens.expires_at_ms, Some(1_000 + 7_200_000));
        let sent = fake.lock().unwrap().forms.last().cloned().unwrap();
        assert_eq!(sent["client_id"], "nbforge-app");
        assert_eq!(
            sent["redirect_uri"],
            "https://nbforge.example.org/oauth/callback"
        );

        let me = client.user(&tokens.access_token).await.unwrap();
        assert_eq!((me.id, me.username.as_str()), (7, "ada"));
        let err = client.user(&Secret::new("other")).await.unwrap_err();
        assert!(matches!(err, OAuthError::Refused(_)));

        let refreshed = client.refresh(&Secret::new("r1"), 0).await.unwrap();
        assert_eq!(refreshed.refresh_token.unwrap().expose(), "r2");
        assert!(client.refresh(&Secret::new("r0"), 0).await.is_err());
    }
}
