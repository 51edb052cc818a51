//! The HTTP transport under the `gitlab` crate's endpoint builders, and the mapping
//! of its errors onto [`ForgeError`].
//!
//! `gitlab::AsyncGitlab` checks the token with a `GET /user` while it is built and
//! has no request timeout; this client implements the crate's `RestClient` and
//! `AsyncClient` traits on a plain `reqwest::Client` instead, so construction does no
//! I/O, every call has a deadline, and the token only ever travels in the
//! `PRIVATE-TOKEN` header (marked sensitive).

use std::time::Duration;

use async_trait::async_trait;
// The `http` types the `gitlab` crate's client traits are written against.
use axum::http::{self, HeaderValue};
use bytes::Bytes;
use gitlab::api::ApiError;
use url::Url;

use crate::config::Secret;
use crate::forge::ForgeError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Failure below the HTTP status level.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No answer: connection refused or reset, DNS failure, timeout.
    #[error("GitLab did not answer: {0}")]
    Unreachable(String),
    /// The request could not be built (bad header value, bad URL).
    #[error("could not build the request: {0}")]
    Request(String),
}

/// A REST v4 client for one GitLab instance and one token.
#[derive(Clone)]
pub struct GitLabClient {
    http: reqwest::Client,
    rest_url: Url,
    token: Secret,
}

impl std::fmt::Debug for GitLabClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLabClient")
            .field("rest_url", &self.rest_url.as_str())
            .finish_non_exhaustive()
    }
}

impl GitLabClient {
    /// `base_url` is the instance root (`https://gitlab.example.com`, possibly with a
    /// path prefix such as `https://example.org/gitlab`).
    pub fn new(base_url: &Url, token: Secret) -> Result<Self, ForgeError> {
        match base_url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(ForgeError::Other(format!(
                    "GitLab URL must be http or https, not {other}"
                )));
            }
        }
        if !base_url.username().is_empty() || base_url.password().is_some() {
            return Err(ForgeError::Other(
                "GitLab URL must not carry credentials; give the token separately".into(),
            ));
        }
        let mut root = base_url.clone();
        root.set_query(None);
        root.set_fragment(None);
        if !root.path().ends_with('/') {
            let path = format!("{}/", root.path());
            root.set_path(&path);
        }
        let rest_url = root
            .join("api/v4/")
            .map_err(|e| ForgeError::Other(format!("bad GitLab URL: {e}")))?;
        // Redirects are not followed: the `PRIVATE-TOKEN` header would go along to wherever
        // the answer points, another host included.
        let http = reqwest::Client::builder()
            .user_agent(concat!("nbforge/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ForgeError::Other(format!("could not set up the HTTP client: {e}")))?;
        Ok(GitLabClient {
            http,
            rest_url,
            token,
        })
    }

    /// The REST root, `<base>/api/v4/`.
    pub fn rest_url(&self) -> &Url {
        &self.rest_url
    }

    /// The token, for the one caller that must hand it to git.
    pub fn token(&self) -> &Secret {
        &self.token
    }

    /// Map a `gitlab` crate error to a [`ForgeError`], naming what was being done.
    /// The token's text is scrubbed from the message in case a server echoes it.
    pub fn map_error(&self, what: &str, err: ApiError<TransportError>) -> ForgeError {
        let mapped = classify(what, err);
        scrub(mapped, self.token.expose())
    }
}

impl gitlab::api::RestClient for GitLabClient {
    type Error = TransportError;

    fn rest_endpoint(&self, endpoint: &str) -> Result<Url, ApiError<Self::Error>> {
        Ok(self.rest_url.join(endpoint)?)
    }
}

#[async_trait]
impl gitlab::api::AsyncClient for GitLabClient {
    async fn rest_async(
        &self,
        mut request: http::request::Builder,
        body: Vec<u8>,
    ) -> Result<http::Response<Bytes>, ApiError<Self::Error>> {
        let mut token = HeaderValue::from_str(self.token.expose()).map_err(|_| {
            ApiError::client(TransportError::Request(
                "the GitLab token contains characters not allowed in a header".into(),
            ))
        })?;
        token.set_sensitive(true);
        if let Some(headers) = request.headers_mut() {
            headers.insert("PRIVATE-TOKEN", token);
        }
        let request = request
            .body(body)
            .map_err(|e| ApiError::client(TransportError::Request(e.to_string())))?;
        let request = reqwest::Request::try_from(request)
            .map_err(|e| ApiError::client(TransportError::Request(e.without_url().to_string())))?;
        let url = request.url().clone();
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| ApiError::client(transport_error(&url, e)))?;
        let mut builder = http::Response::builder()
            .status(response.status())
            .version(response.version());
        if let Some(headers) = builder.headers_mut() {
            for (name, value) in response.headers() {
                headers.append(name, value.clone());
            }
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ApiError::client(transport_error(&url, e)))?;
        builder
            .body(bytes)
            .map_err(|e| ApiError::client(TransportError::Request(e.to_string())))
    }
}

fn transport_error(url: &Url, err: reqwest::Error) -> TransportError {
    let mut place = url.clone();
    place.set_query(None);
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "answer cut short"
    } else {
        "request failed"
    };
    // `without_url` keeps the message free of query strings; the path is named separately.
    TransportError::Unreachable(format!("{kind} for {place}: {}", err.without_url()))
}

fn classify(what: &str, err: ApiError<TransportError>) -> ForgeError {
    match err {
        ApiError::Client { source } => match source {
            TransportError::Unreachable(msg) => ForgeError::Unavailable(format!("{what}: {msg}")),
            TransportError::Request(msg) => ForgeError::Other(format!("{what}: {msg}")),
        },
        ApiError::GitlabWithStatus { status, msg } => by_status(what, status, &msg),
        ApiError::GitlabObjectWithStatus { status, obj }
        | ApiError::GitlabUnrecognizedWithStatus { status, obj } => {
            by_status(what, status, &obj.to_string())
        }
        ApiError::GitlabService { status, data } => {
            let text = String::from_utf8_lossy(&data);
            let text: String = text.chars().take(200).collect();
            by_status(what, status, text.trim())
        }
        ApiError::GitlabRateLimited { retry_after, .. } => ForgeError::Unavailable(format!(
            "{what}: rate limited by GitLab, retry after {}s",
            retry_after.as_secs()
        )),
        ApiError::MovedPermanently { location } => ForgeError::NotFound(format!(
            "{what}: moved to {}",
            location.as_deref().unwrap_or("an unknown place")
        )),
        ApiError::Json { source } | ApiError::DataType { source, .. } => {
            ForgeError::Other(format!("{what}: unexpected answer from GitLab: {source}"))
        }
        other => ForgeError::Other(format!("{what}: {other}")),
    }
}

fn by_status(what: &str, status: http::StatusCode, msg: &str) -> ForgeError {
    let detail = if msg.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        format!("{what}: HTTP {status}: {msg}")
    };
    match status.as_u16() {
        404 => ForgeError::NotFound(detail),
        401 | 403 => ForgeError::Forbidden(detail),
        408 | 429 | 500..=599 => ForgeError::Unavailable(detail),
        400 | 409 | 422 => ForgeError::Rejected(detail),
        _ => ForgeError::Other(detail),
    }
}

/// Replace any occurrence of `token` in the error's message.
pub fn scrub(err: ForgeError, token: &str) -> ForgeError {
    if token.is_empty() {
        return err;
    }
    let fix = |s: String| {
        if s.contains(token) {
            s.replace(token, "<redacted>")
        } else {
            s
        }
    };
    match err {
        ForgeError::NotFound(s) => ForgeError::NotFound(fix(s)),
        ForgeError::Forbidden(s) => ForgeError::Forbidden(fix(s)),
        ForgeError::Unavailable(s) => ForgeError::Unavailable(fix(s)),
        ForgeError::Other(s) => ForgeError::Other(fix(s)),
        ForgeError::Rejected(s) => ForgeError::Rejected(fix(s)),
        ForgeError::Refused(s) => ForgeError::Refused(fix(s)),
        ForgeError::Unsupported(s) => ForgeError::Unsupported(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> GitLabClient {
        GitLabClient::new(&Url::parse(base).unwrap(), Secret::new("glpat-secret")).unwrap()
    }

    #[test]
    fn rest_url_keeps_path_prefix() {
        assert_eq!(
            client("https://gitlab.example.com").rest_url().as_str(),
            "https://gitlab.example.com/api/v4/"
        );
        assert_eq!(
            client("https://example.org/gitlab").rest_url().as_str(),
            "https://example.org/gitlab/api/v4/"
        );
        assert_eq!(
            client("http://127.0.0.1:8080/").rest_url().as_str(),
            "http://127.0.0.1:8080/api/v4/"
        );
    }

    #[test]
    fn rejects_odd_urls() {
        let token = Secret::new("t");
        for bad in ["ftp://example.org", "https://user:pw@example.org"] {
            let err = GitLabClient::new(&Url::parse(bad).unwrap(), token.clone()).unwrap_err();
            assert!(matches!(err, ForgeError::Other(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn statuses_map_to_kinds() {
        use http::StatusCode;
        assert!(matches!(
            by_status("x", StatusCode::NOT_FOUND, ""),
            ForgeError::NotFound(_)
        ));
        assert!(matches!(
            by_status("x", StatusCode::UNAUTHORIZED, ""),
            ForgeError::Forbidden(_)
        ));
        assert!(matches!(
            by_status("x", StatusCode::FORBIDDEN, ""),
            ForgeError::Forbidden(_)
        ));
        assert!(by_status("x", StatusCode::BAD_GATEWAY, "").is_transient());
        assert!(by_status("x", StatusCode::TOO_MANY_REQUESTS, "").is_transient());
        let refused = by_status("x", StatusCode::UNPROCESSABLE_ENTITY, "bad");
        assert!(matches!(refused, ForgeError::Rejected(_)) && refused.is_permanent());
    }

    #[test]
    fn scrub_removes_token() {
        let err = scrub(
            ForgeError::Forbidden("token glpat-secret refused".into()),
            "glpat-secret",
        );
        assert_eq!(err.to_string(), "not allowed: token <redacted> refused");
    }
}
