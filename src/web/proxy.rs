//! The proxy to users' Jupyter sessions: `/user/<owner>/<session>/…`, any method, HTTP and
//! WebSocket, forwarded to the session's Jupyter server (which serves that same prefix as
//! its `base_url`).
//!
//! Every request is checked against nbforge's login first: only the session's owner (the
//! logged-in user, or the anonymous visitor whose cookie names the session) gets through;
//! everyone else gets the same 404 as for a session that does not exist, and a path that
//! could leave the prefix (`..`, encoded slashes or dots) is refused with 400 before
//! anything is looked up. The request then goes on with the session's token as
//! `Authorization: token …` (whatever the browser sent is dropped), without nbforge's own
//! cookies, with the browser's `Host` and `X-Forwarded-*` added, its body streamed; the
//! answer comes back as Jupyter gave it (headers, CSP and redirects included), streamed.
//! A WebSocket handshake is forwarded as it is and, once Jupyter accepts it, bytes are
//! copied both ways until either side closes, so any subprotocol passes untouched.
//!
//! The proxy's route sits outside the page-frame layers (CSP, frame options, CSRF) in
//! [`super::router`]: Jupyter's pages set their own, and Jupyter checks its own XSRF token.
//! nbforge's own answers here (404, 400, 503 pages) get the frame's headers from
//! [`own_headers`]. Cross-site state changes and WebSocket handshakes are refused before
//! they reach Jupyter, because the injected token would let them past Jupyter's checks.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;

use super::auth::{CookieNames, FRAME, FrameView, cookie_names, cookie_value, visitor_key};
use super::{CSP, Web, WebError};
use crate::access::Viewer;
use crate::sessions::directory::TunnelGuard;
use crate::sessions::{Owner, SessionId, SessionInfo, SessionState};

/// Headers that belong to one connection, never forwarded (RFC 9110, 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

const NOT_FOUND: &str = "Nothing here.";

/// `/user/{*rest}`: checks the login and forwards to the session.
pub async fn forward(State(web): State<Web>, req: Request) -> Response {
    let api = req
        .uri()
        .path()
        .splitn(5, '/')
        .nth(4)
        .is_some_and(|rest| rest.starts_with("api/"));
    let names = cookie_names(&web.app);
    let viewer = match web
        .app
        .access
        .viewer(cookie_value(req.headers(), names.session).as_deref())
        .await
    {
        Ok(v) => v,
        Err(e) => {
            return own_headers(super::error::render(
                &web.templates,
                WebError::from(e).into_response(),
                api,
            ));
        }
    };
    let frame = FrameView::of(&viewer, web.app.access.login_enabled());
    let templates = web.templates.clone();
    FRAME
        .scope(frame, async move {
            match proxy(&web, &viewer, names, req).await {
                Ok(res) => res,
                Err(e) => own_headers(super::error::render(&templates, e.into_response(), api)),
            }
        })
        .await
}

/// The session a path names.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    /// The owner's URL name (a username, or `~<visitor>`).
    owner: &'a str,
    name: &'a str,
    /// Whether anything (even just `/`) follows the session's name.
    slash: bool,
}

/// Splits `/user/<owner>/<name>/…`, refusing paths that could leave the prefix: `.` or
/// `..` segments, written or percent-encoded, and encoded slashes or backslashes.
fn target(path: &str) -> Result<Target<'_>, WebError> {
    for segment in path.split('/') {
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(segment).collect();
        if decoded == b"."
            || decoded == b".."
            || decoded.contains(&b'/')
            || decoded.contains(&b'\\')
        {
            return Err(WebError::BadRequest(
                "This path is not allowed here.".into(),
            ));
        }
    }
    let mut parts = path
        .strip_prefix("/user/")
        .unwrap_or_default()
        .splitn(3, '/');
    let owner = parts.next().unwrap_or_default();
    let name = parts.next().unwrap_or_default();
    let slash = parts.next().is_some();
    let plain = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.len() <= 255
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || extra.contains(&b))
    };
    if !plain(owner.strip_prefix('~').unwrap_or(owner), b".") || !plain(name, b"") {
        return Err(WebError::NotFound(NOT_FOUND.into()));
    }
    Ok(Target { owner, name, slash })
}

/// Whether the viewer is who the session belongs to: the user by id (not by name, which
/// can change), or the visitor by the key of their cookie. Platform administrators are
/// not let in.
fn owns(viewer: &Viewer, visitor: Option<&str>, owner: &Owner) -> bool {
    match owner {
        Owner::User { id, .. } => viewer.user.as_ref().is_some_and(|u| u.id == *id),
        Owner::Anonymous { visitor: key } => visitor.is_some_and(|v| v == key),
    }
}

async fn proxy(
    web: &Web,
    viewer: &Viewer,
    names: CookieNames,
    mut req: Request,
) -> Result<Response, WebError> {
    let path = req.uri().path().to_owned();
    let target = target(&path)?;
    let visitor = visitor_key(names, req.headers());
    // Nobody who could own the URL's session: answered without looking it up.
    let could_own = match target.owner.strip_prefix('~') {
        Some(key) => visitor.as_deref() == Some(key),
        None => viewer.user.is_some(),
    };
    if !could_own {
        return Err(WebError::NotFound(NOT_FOUND.into()));
    }
    let upgrade = is_websocket(req.headers());
    if (upgrade || !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS))
        && super::auth::cross_site(req.headers(), &web.app)
    {
        return Err(WebError::Forbidden(
            "This request came from another site and was refused.".into(),
        ));
    }
    let directory = &web.app.directory;
    let info = find(web, target.owner, target.name).await?;
    if !owns(viewer, visitor.as_deref(), &info.owner) {
        return Err(WebError::NotFound(NOT_FOUND.into()));
    }
    if !target.slash {
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        return Ok(own_headers(
            Redirect::temporary(&format!("{path}/{query}")).into_response(),
        ));
    }
    let address = reachable(&info)?;
    let client_ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // HTTP/2 carries the host in the URI; Jupyter wants it as `Host`.
    if !req.headers().contains_key(header::HOST) {
        let public = &web.app.settings.server.public_url;
        let host = req.uri().authority().map_or_else(
            || public[url::Position::BeforeHost..url::Position::AfterPort].to_owned(),
            |a| a.as_str().to_owned(),
        );
        if let Ok(v) = HeaderValue::from_str(&host) {
            req.headers_mut().insert(header::HOST, v);
        }
    }
    let headers = upstream_headers(
        req.headers(),
        names,
        info.token.expose(),
        upgrade,
        client_ip,
        web.app.settings.server.public_url.scheme(),
    );
    let on_client = upgrade.then(|| hyper::upgrade::on(&mut req));
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |p| p.as_str().to_owned());
    let bodiless = axum::body::HttpBody::size_hint(req.body()).exact() == Some(0);
    let method = req.method().clone();
    let build = |address: &url::Url, body: Body| -> Result<Request, WebError> {
        let uri: Uri = format!(
            "{}{}",
            address.as_str().trim_end_matches('/'),
            path_and_query
        )
        .parse()
        .map_err(|e| WebError::Internal(anyhow::anyhow!("a session URI: {e}")))?;
        let mut upstream = Request::new(body);
        *upstream.method_mut() = method.clone();
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers.clone();
        Ok(upstream)
    };
    let first = build(&address, req.into_body())?;
    let mut res = match directory.client().request(first).await {
        Ok(res) => res,
        Err(e) => {
            // The address no longer answers: the session stopped, moved, or is restarting.
            directory.forget(target.owner, target.name);
            tracing::info!(session.id = %info.id, error = %e, "session {} did not answer", info.id);
            let again = find(web, target.owner, target.name).await?;
            let moved = again.id != info.id || again.address.as_ref() != Some(&address);
            if !(e.is_connect()
                && bodiless
                && moved
                && owns(viewer, visitor.as_deref(), &again.owner))
            {
                return Err(not_answering(&again));
            }
            let address = reachable(&again)?;
            let token = again.token.expose().to_owned();
            let mut retry = build(&address, Body::empty())?;
            if let Ok(v) = HeaderValue::from_str(&format!("token {token}")) {
                retry.headers_mut().insert(header::AUTHORIZATION, v);
            }
            directory.client().request(retry).await.map_err(|e| {
                directory.forget(target.owner, target.name);
                tracing::info!(session.id = %again.id, error = %e, "session {} did not answer", again.id);
                not_answering(&again)
            })?
        }
    };
    if let Some(on_client) = on_client
        && res.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let on_upstream = hyper::upgrade::on(&mut res);
        tokio::spawn(join(
            on_client,
            on_upstream,
            directory.tunnel(),
            info.id.clone(),
        ));
        let (parts, _) = res.into_parts();
        let mut out = Response::from_parts(parts, Body::empty());
        out.extensions_mut().clear();
        return Ok(out);
    }
    let (mut parts, body) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    parts.extensions.clear();
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// How long one direction of a WebSocket may go on after the other ended.
const CLOSING_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Joins an upgraded browser connection to the upgraded connection to Jupyter and copies
/// bytes both ways. When one side ends, the other's writing half is shut down and it has
/// [`CLOSING_GRACE`] to end too; then both are dropped.
async fn join(
    on_client: hyper::upgrade::OnUpgrade,
    on_upstream: hyper::upgrade::OnUpgrade,
    _open: TunnelGuard,
    session: SessionId,
) {
    let (client, upstream) = match tokio::try_join!(on_client, on_upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(session.id = %session, error = %e, "a WebSocket to session {session} did not open");
            return;
        }
    };
    let (mut from_client, mut to_client) = tokio::io::split(TokioIo::new(client));
    let (mut from_upstream, mut to_upstream) = tokio::io::split(TokioIo::new(upstream));
    let up = async {
        let copied = tokio::io::copy(&mut from_client, &mut to_upstream).await;
        to_upstream.shutdown().await.ok();
        copied
    };
    let down = async {
        let copied = tokio::io::copy(&mut from_upstream, &mut to_client).await;
        to_client.shutdown().await.ok();
        copied
    };
    tokio::pin!(up, down);
    let ended = tokio::select! {
        ended = &mut up => {
            tokio::time::timeout(CLOSING_GRACE, &mut down).await.ok();
            ended
        }
        ended = &mut down => {
            tokio::time::timeout(CLOSING_GRACE, &mut up).await.ok();
            ended
        }
    };
    if let Err(e) = ended {
        tracing::debug!(session.id = %session, error = %e, "a WebSocket to session {session} broke");
    }
}

/// The session, or a 404 (none) or a 503 (the runtime is not answering).
async fn find(web: &Web, owner: &str, name: &str) -> Result<SessionInfo, WebError> {
    match web.app.directory.lookup(owner, name).await {
        Ok(Some(info)) => Ok(info),
        Ok(None) => Err(WebError::NotFound(NOT_FOUND.into())),
        Err(e) => {
            tracing::error!(error = %e, "looking up session {owner}/{name} failed");
            Err(WebError::Unavailable(
                "Sessions cannot be reached right now. Try again in a moment.".into(),
            ))
        }
    }
}

/// The session's address when it is running, else a 503 saying where it is.
fn reachable(info: &SessionInfo) -> Result<url::Url, WebError> {
    match (&info.state, &info.address) {
        (SessionState::Running, Some(address)) => Ok(address.clone()),
        _ => Err(not_answering(info)),
    }
}

fn not_answering(info: &SessionInfo) -> WebError {
    WebError::Unavailable(match info.state {
        SessionState::Starting | SessionState::Running => {
            "The session is starting. Reload this page in a moment.".into()
        }
        SessionState::Stopped | SessionState::Failed(_) => {
            "The session has stopped. Launch it again to go on.".into()
        }
    })
}

/// Whether the request asks to become a WebSocket.
fn is_websocket(headers: &HeaderMap) -> bool {
    let has = |name: HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

/// Removes the hop-by-hop headers, and those the `Connection` header names; with
/// `upgrade`, keeps the WebSocket handshake's `Connection: upgrade` and `Upgrade`.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let upgrade_to = headers.get(header::UPGRADE).cloned();
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in named
        .iter()
        .map(String::as_str)
        .chain(HOP_BY_HOP.iter().copied())
    {
        headers.remove(name);
    }
    if let (true, Some(to)) = (upgrade, upgrade_to) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, to);
    }
}

/// The headers Jupyter gets: the browser's, less the hop-by-hop ones, nbforge's cookies and
/// the browser's `Authorization`; plus the session's token and `X-Forwarded-*`. `Host`
/// stays, so Jupyter's same-origin checks compare the browser's `Origin` with it.
fn upstream_headers(
    from: &HeaderMap,
    names: CookieNames,
    token: &str,
    upgrade: bool,
    client_ip: Option<std::net::IpAddr>,
    scheme: &str,
) -> HeaderMap {
    let mut headers = from.clone();
    strip_hop_by_hop(&mut headers, upgrade);
    let ours = [names.session, names.login, names.visitor];
    let kept: Vec<&str> = from
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
            !pair.is_empty() && !ours.contains(&name)
        })
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
    headers.remove(header::AUTHORIZATION);
    if let Ok(v) = HeaderValue::from_str(&format!("token {token}")) {
        headers.insert(header::AUTHORIZATION, v);
    }
    for name in ["forwarded", "x-forwarded-host", "x-forwarded-proto"] {
        headers.remove(name);
    }
    if let Some(host) = from.get(header::HOST) {
        headers.insert("x-forwarded-host", host.clone());
    }
    if let Ok(v) = HeaderValue::from_str(scheme) {
        headers.insert("x-forwarded-proto", v);
    }
    if let Some(ip) = client_ip {
        let chain = match from.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(before) => format!("{before}, {ip}"),
            None => ip.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&chain) {
            headers.insert("x-forwarded-for", v);
        }
    }
    headers
}

/// The page frame's headers, for nbforge's own answers on the proxy's paths (Jupyter's
/// answers keep their own).
fn own_headers(mut res: Response) -> Response {
    let headers = res.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: CookieNames = CookieNames {
        session: "nbforge_session",
        login: "nbforge_login",
        visitor: "nbforge_visitor",
        secure: false,
    };

    #[test]
    fn paths_that_could_leave_the_prefix_are_refused() {
        for bad in [
            "/user/ada/s/../../admin",
            "/user/ada/s/%2e%2e/x",
            "/user/ada/s/%2E./x",
            "/user/ada/s/.%2e/x",
            "/user/ada/s/a%2Fb",
            "/user/ada/s/a%2fb",
            "/user/ada/s/a%5Cb",
            "/user/ada/s/./x",
            "/user/ada/..",
        ] {
            assert!(matches!(target(bad), Err(WebError::BadRequest(_))), "{bad}");
        }
        assert_eq!(
            target("/user/ada/s/lab/tree/a.ipynb").unwrap(),
            Target {
                owner: "ada",
                name: "s",
                slash: true
            }
        );
        assert!(!target("/user/~3f2a/try").unwrap().slash);
        assert!(target("/user/ada/s/x.y/..z/%20a").is_ok());
        for unknown in ["/user/", "/user/ada", "/user/a<b/s/", "/user/ada/S!/"] {
            assert!(
                matches!(target(unknown), Err(WebError::NotFound(_))),
                "{unknown}"
            );
        }
    }

    #[test]
    fn jupyter_gets_the_token_and_none_of_our_cookies() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("nbforge.test"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer the-browsers"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("nbforge_session=s3cret; _xsrf=2|abc; nbforge_visitor=v"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("nbforge_login=l; theme=dark"),
        );
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil"));
        let out = upstream_headers(
            &h,
            NAMES,
            "tok",
            false,
            Some("10.1.2.3".parse().unwrap()),
            "https",
        );
        assert_eq!(out[header::AUTHORIZATION], "token tok");
        assert_eq!(out.get_all(header::AUTHORIZATION).iter().count(), 1);
        assert_eq!(out[header::COOKIE], "_xsrf=2|abc; theme=dark");
        assert_eq!(out[header::HOST], "nbforge.test");
        assert_eq!(out["x-forwarded-host"], "nbforge.test");
        assert_eq!(out["x-forwarded-proto"], "https");
        assert_eq!(out["x-forwarded-for"], "10.1.2.3");
        for gone in ["connection", "keep-alive", "x-private", "upgrade"] {
            assert!(out.get(gone).is_none(), "{gone}");
        }

        let mut only_ours = HeaderMap::new();
        only_ours.insert(
            header::COOKIE,
            HeaderValue::from_static("nbforge_session=s"),
        );
        let out = upstream_headers(&only_ours, NAMES, "tok", false, None, "http");
        assert!(out.get(header::COOKIE).is_none());
    }

    #[test]
    fn a_websocket_handshake_keeps_its_upgrade() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("v1.kernel.websocket.jupyter.org"),
        );
        assert!(is_websocket(&h));
        let out = upstream_headers(&h, NAMES, "tok", true, None, "http");
        assert_eq!(out[header::CONNECTION], "upgrade");
        assert_eq!(out[header::UPGRADE], "websocket");
        assert_eq!(
            out["sec-websocket-protocol"],
            "v1.kernel.websocket.jupyter.org"
        );
        h.remove(header::CONNECTION);
        assert!(!is_websocket(&h));
    }
}
