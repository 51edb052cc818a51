//! Git over HTTP, as GitLab serves it, for projects switched to it with
//! [`FakeGitLab::serve_git_over_http`]: `GET/POST /git/<path>.git/…` runs git's own
//! `git http-backend` (smart HTTP). Like GitLab, it wants HTTP Basic credentials whose
//! password is the bot's token or a user's OAuth access token (the username is not
//! checked, `oauth2` by convention): without them a private project answers 401 with a
//! Basic challenge; a user who is not a member (at least Reporter) gets 404.

use super::http::error;
use super::*;

type Shared = Arc<Inner>;

pub(super) fn router() -> Router<Shared> {
    Router::new().route("/git/{*rest}", axum::routing::any(serve))
}

/// The password of a request's Basic credentials.
fn basic_password(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, p)| p.to_owned())
}

async fn serve(State(inner): State<Shared>, req: Request) -> Response {
    let path = req.uri().path().trim_start_matches("/git/").to_owned();
    let Some((project_path, rest)) = path.split_once(".git/") else {
        return error(StatusCode::NOT_FOUND, "404 Not Found");
    };
    let rest = rest.to_owned();
    let password = basic_password(req.headers());
    let (bare, public, member_level, is_bot) = {
        let s = inner.state();
        let Some(p) = s
            .find_project(project_path)
            .filter(|p| s.git_over_http.contains(&p.id))
            .cloned()
        else {
            return error(StatusCode::NOT_FOUND, "404 Not Found");
        };
        let is_bot = password.as_deref() == Some(inner.token.as_str());
        drop(s);
        let user = password
            .as_deref()
            .and_then(|t| super::oauth::token_user(&inner, t));
        let s = inner.state();
        let level = user.map(|uid| {
            s.effective_members(&s.project_sources(&p))
                .into_iter()
                .find(|(u, _)| u.id == uid)
                .map_or(0, |(_, level)| level)
        });
        (
            p.bare_repo_path.clone(),
            p.visibility == "public",
            level,
            is_bot,
        )
    };
    if !public && !is_bot {
        match member_level {
            None => {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Basic realm=\"GitLab\"")],
                    "HTTP Basic: Access denied\n",
                )
                    .into_response();
            }
            Some(level) if level < 20 => {
                return error(StatusCode::NOT_FOUND, "404 Not Found");
            }
            Some(_) => {}
        }
    }
    let method = req.method().to_string();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let headers = req.headers().clone();
    let Ok(body) = axum::body::to_bytes(req.into_body(), 256 << 20).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "too large");
    };
    let root = bare.parent().unwrap_or(Path::new("/")).to_owned();
    let name = bare
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let header_text = move |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = std::process::Command::new("git")
            .arg("http-backend")
            .env("GIT_PROJECT_ROOT", &root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("PATH_INFO", format!("/{name}/{rest}"))
            .env("REQUEST_METHOD", method)
            .env("QUERY_STRING", query)
            .env("CONTENT_TYPE", header_text(header::CONTENT_TYPE))
            .env(
                "HTTP_CONTENT_ENCODING",
                header_text(header::CONTENT_ENCODING),
            )
            .env(
                "GIT_PROTOCOL",
                header_text(header::HeaderName::from_static("git-protocol")),
            )
            .env("REMOTE_USER", "fake")
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped");
        let writer = std::thread::spawn(move || stdin.write_all(&body));
        let out = child.wait_with_output()?;
        let _ = writer.join();
        Ok::<_, std::io::Error>(out.stdout)
    })
    .await;
    let Ok(Ok(out)) = output else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "git http-backend failed");
    };
    cgi_response(&out)
}

/// A CGI program's output (headers, a blank line, the body) as a response.
fn cgi_response(out: &[u8]) -> Response {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, sep)) = split else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "no CGI headers");
    };
    let head = String::from_utf8_lossy(&out[..at]).into_owned();
    let mut res = Response::new(axum::body::Body::from(out[at + sep..].to_vec()));
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            let code = v.split_whitespace().next().and_then(|c| c.parse().ok());
            if let Some(code) = code.and_then(|c: u16| StatusCode::from_u16(c).ok()) {
                *res.status_mut() = code;
            }
        } else if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            res.headers_mut().append(name, value);
        }
    }
    res
}
