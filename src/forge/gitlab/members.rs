//! Member directories and project visibility, for the membership reconciler:
//! `GET /projects/:id`, `GET /projects/:id/members/all`, `GET /groups/:id/members/all`
//! and `GET /groups/:id`.
//!
//! These calls page through GitLab's offset pagination themselves (`per_page=100`, the
//! next page from `X-Next-Page`, else from the `Link` header's `rel="next"`, which must
//! point back at the same API root) and honour GitLab's rate limits: a `429` is waited
//! out (`Retry-After`, else `RateLimit-Reset`, capped) and asked again a few times before
//! the call fails as [`ForgeError::Unavailable`]. Errors name the call and the HTTP
//! status, never the answer's body.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{self, HeaderMap, StatusCode};
use gitlab::api::AsyncClient;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::GitLabForge;
use crate::events::Visibility;
use crate::forge::{ForgeError, ForgeMember, ForgeResult, ProjectAccess, ProjectId};

/// Members asked for per page (GitLab's maximum).
const PER_PAGE: usize = 100;
/// A list longer than this many pages is cut short as an error rather than read forever.
const MAX_PAGES: usize = 10_000;

/// How a GitLab forge waits out rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Tries of one request while GitLab answers 429.
    pub tries: u32,
    /// The longest wait after a 429, whatever `Retry-After` says.
    pub max_wait: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            tries: 4,
            max_wait: Duration::from_secs(60),
        }
    }
}

#[derive(Deserialize)]
struct AccessResp {
    id: i64,
    path_with_namespace: String,
    /// Absent when the token may not see it; then the project counts as private.
    visibility: Option<String>,
}

#[derive(Deserialize)]
struct MemberResp {
    id: i64,
    username: String,
    name: Option<String>,
    avatar_url: Option<String>,
    state: Option<String>,
    access_level: i64,
    expires_at: Option<String>,
    /// `active`, or `awaiting` for an invitation not yet accepted (grants nothing).
    membership_state: Option<String>,
}

#[derive(Deserialize)]
struct GroupResp {
    full_path: String,
}

/// A path or id as one URL path segment (`lab%2Fsub`).
fn segment(key: &str) -> String {
    url::form_urlencoded::byte_serialize(key.trim_matches('/').as_bytes()).collect()
}

fn project_segment(project: &ProjectId) -> ForgeResult<String> {
    match project {
        ProjectId::Id(id) if *id > 0 => Ok(id.to_string()),
        ProjectId::Id(id) => Err(ForgeError::Other(format!("invalid GitLab project id {id}"))),
        ProjectId::Path(p) if p.trim_matches('/').is_empty() => {
            Err(ForgeError::Other("empty GitLab project path".into()))
        }
        ProjectId::Path(p) => Ok(segment(p)),
    }
}

/// The wait a 429 asks for: `Retry-After` in seconds, else until `RateLimit-Reset`
/// (epoch seconds), else one second.
fn rate_limit_wait(headers: &HeaderMap, now: SystemTime) -> Duration {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(secs) = number("retry-after") {
        return Duration::from_secs(secs);
    }
    if let Some(reset) = number("ratelimit-reset") {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        return Duration::from_secs(reset.saturating_sub(now));
    }
    Duration::from_secs(1)
}

/// The next page's URL: `X-Next-Page` (empty on the last page), else `Link: <…>; rel="next"`.
fn next_page(headers: &HeaderMap, current: &Url, root: &Url) -> Option<Url> {
    if let Some(v) = headers.get("x-next-page").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if v.is_empty() {
            return None;
        }
        let page: u64 = v.parse().ok()?;
        let mut url = current.clone();
        let pairs: Vec<(String, String)> = current
            .query_pairs()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("page", &page.to_string());
        return Some(url);
    }
    let link = headers.get("link").and_then(|v| v.to_str().ok())?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let url = Url::parse(target).ok()?;
        // The token goes with the request: follow only links back into the same API.
        (is_next && url.as_str().starts_with(root.as_str())).then_some(url)
    })
}

impl GitLabForge {
    /// One GET, waiting out 429s; the answer's status, headers and body.
    async fn get_raw(&self, what: &str, url: &Url) -> ForgeResult<(HeaderMap, bytes::Bytes)> {
        let limits = self.rate_limits;
        let tries = limits.tries.max(1);
        for attempt in 1..=tries {
            let request = http::Request::builder()
                .method(http::Method::GET)
                .uri(url.as_str());
            let response = self
                .client
                .rest_async(request, Vec::new())
                .await
                .map_err(|e| self.client.map_error(what, e))?;
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                if attempt == tries {
                    break;
                }
                let wait = rate_limit_wait(response.headers(), SystemTime::now());
                let wait = wait.min(limits.max_wait);
                tracing::info!(
                    "{what}: GitLab rate limit (HTTP 429), waiting {}s before try {} of {tries}",
                    wait.as_secs(),
                    attempt + 1
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            if !status.is_success() {
                return Err(status_error(what, status));
            }
            let (parts, body) = response.into_parts();
            return Ok((parts.headers, body));
        }
        Err(ForgeError::Unavailable(format!(
            "{what}: GitLab kept answering HTTP 429 (rate limited) after {tries} tries"
        )))
    }

    async fn get_one<T: DeserializeOwned>(&self, what: &str, path: &str) -> ForgeResult<T> {
        let url = self.api_url(what, path)?;
        let (_, body) = self.get_raw(what, &url).await?;
        serde_json::from_slice(&body).map_err(|e| unexpected(what, &e))
    }

    /// Every page of a list.
    async fn get_all<T: DeserializeOwned>(&self, what: &str, path: &str) -> ForgeResult<Vec<T>> {
        let mut url = self.api_url(what, path)?;
        url.query_pairs_mut()
            .append_pair("per_page", &PER_PAGE.to_string())
            .append_pair("page", "1");
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let (headers, body) = self.get_raw(what, &url).await?;
            let batch: Vec<T> = serde_json::from_slice(&body).map_err(|e| unexpected(what, &e))?;
            let empty = batch.is_empty();
            items.extend(batch);
            match next_page(&headers, &url, self.client.rest_url()) {
                Some(next) if !empty && next != url => url = next,
                _ => return Ok(items),
            }
        }
        Err(ForgeError::Other(format!(
            "{what}: more than {MAX_PAGES} pages"
        )))
    }

    fn api_url(&self, what: &str, path: &str) -> ForgeResult<Url> {
        self.client
            .rest_url()
            .join(path)
            .map_err(|e| ForgeError::Other(format!("{what}: bad URL: {e}")))
    }

    pub(super) async fn read_project_access(
        &self,
        project: &ProjectId,
    ) -> ForgeResult<ProjectAccess> {
        let what = format!("reading project {project}");
        let p: AccessResp = self
            .get_one(&what, &format!("projects/{}", project_segment(project)?))
            .await?;
        Ok(ProjectAccess {
            id: p.id,
            path_with_namespace: p.path_with_namespace,
            visibility: Visibility::parse(p.visibility.as_deref().unwrap_or("private")),
        })
    }

    pub(super) async fn read_members(
        &self,
        what: &str,
        path: &str,
    ) -> ForgeResult<Vec<ForgeMember>> {
        let members: Vec<MemberResp> = self.get_all(what, path).await?;
        Ok(members
            .into_iter()
            .filter(|m| m.membership_state.as_deref().is_none_or(|s| s == "active"))
            .map(|m| ForgeMember {
                user_id: m.id,
                username: m.username,
                name: m.name,
                avatar_url: m.avatar_url,
                state: m.state,
                access_level: m.access_level,
                expires_at: m.expires_at.filter(|e| !e.is_empty()),
            })
            .collect())
    }

    pub(super) async fn read_project_members(
        &self,
        project: &ProjectId,
    ) -> ForgeResult<Vec<ForgeMember>> {
        let what = format!("listing members of project {project}");
        let path = format!("projects/{}/members/all", project_segment(project)?);
        self.read_members(&what, &path).await
    }

    pub(super) async fn read_group_members(
        &self,
        full_path: &str,
    ) -> ForgeResult<Vec<ForgeMember>> {
        if full_path.trim_matches('/').is_empty() {
            return Err(ForgeError::Other("empty GitLab group path".into()));
        }
        let what = format!("listing members of group {full_path}");
        let path = format!("groups/{}/members/all", segment(full_path));
        self.read_members(&what, &path).await
    }

    pub(super) async fn read_group_full_path(&self, id: i64) -> ForgeResult<String> {
        if id <= 0 {
            return Err(ForgeError::Other(format!("invalid GitLab group id {id}")));
        }
        let what = format!("reading group {id}");
        let g: GroupResp = self.get_one(&what, &format!("groups/{id}")).await?;
        Ok(g.full_path)
    }
}

/// A status that is not success, named without the answer's body.
fn status_error(what: &str, status: StatusCode) -> ForgeError {
    let detail = format!("{what}: HTTP {status}");
    match status.as_u16() {
        404 => ForgeError::NotFound(detail),
        401 | 403 => ForgeError::Forbidden(detail),
        408 | 500..=599 => ForgeError::Unavailable(detail),
        400 | 409 | 422 => ForgeError::Rejected(detail),
        _ => ForgeError::Other(detail),
    }
}

fn unexpected(what: &str, err: &serde_json::Error) -> ForgeError {
    // serde_json's message names the expectation and position, not the input.
    ForgeError::Other(format!("{what}: unexpected answer from GitLab: {err}"))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn next_page_from_headers() {
        let root = Url::parse("https://gl.example/api/v4/").unwrap();
        let url = root
            .join("groups/lab/members/all?per_page=100&page=1")
            .unwrap();
        let next = next_page(&headers(&[("x-next-page", "2")]), &url, &root).unwrap();
        assert_eq!(
            next.as_str(),
            "https://gl.example/api/v4/groups/lab/members/all?per_page=100&page=2"
        );
        assert_eq!(
            next_page(&headers(&[("x-next-page", "")]), &url, &root),
            None
        );
        let link = r#"<https://gl.example/api/v4/groups/lab/members/all?page=3&per_page=100>; rel="next", <https://gl.example/api/v4/groups/lab/members/all?page=9&per_page=100>; rel="last""#;
        assert_eq!(
            next_page(&headers(&[("link", link)]), &url, &root)
                .unwrap()
                .query(),
            Some("page=3&per_page=100")
        );
        // A link elsewhere is not followed with the token.
        let away = r#"<https://evil.example/api/v4/x?page=2>; rel="next""#;
        assert_eq!(next_page(&headers(&[("link", away)]), &url, &root), None);
        assert_eq!(next_page(&HeaderMap::new(), &url, &root), None);
    }

    #[test]
    fn rate_limit_waits() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            rate_limit_wait(&headers(&[("retry-after", "7")]), now),
            Duration::from_secs(7)
        );
        assert_eq!(
            rate_limit_wait(&headers(&[("ratelimit-reset", "1030")]), now),
            Duration::from_secs(30)
        );
        assert_eq!(
            rate_limit_wait(&HeaderMap::new(), now),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("/lab/sub/"), "lab%2Fsub");
        assert_eq!(project_segment(&ProjectId::Id(7)).unwrap(), "7");
        assert!(project_segment(&ProjectId::Id(0)).is_err());
        assert!(project_segment(&ProjectId::Path("/".into())).is_err());
    }

    #[test]
    fn errors_name_the_status_only() {
        let err = status_error("listing members of group lab", StatusCode::UNAUTHORIZED);
        assert!(matches!(err, ForgeError::Forbidden(_)));
        assert_eq!(
            err.to_string(),
            "not allowed: listing members of group lab: HTTP 401 Unauthorized"
        );
        assert!(status_error("x", StatusCode::BAD_GATEWAY).is_transient());
    }
}
