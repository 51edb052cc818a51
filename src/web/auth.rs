//! The web side of access: the layer that finds the [`Viewer`] of every request (from the
//! session cookie or the admin bearer token) and refuses cross-site state changes (CSRF),
//! the [`Viewer`] extractor routes take, the login routes (`/login`, `/oauth/callback`,
//! `/logout`), and [`deny`], which turns a refusal into a login redirect or a 404.

use axum::body::Body;
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};

use super::{Web, WebError};
use crate::access::service::LoginError;
use crate::access::{Denied, Tools, UserLevel, Viewer};
use crate::app::App;

/// The form field and header that carry a session's CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The names of nbforge's cookies: `__Host-` prefixed when the public URL is https (the
/// browser then insists on `Secure`, `Path=/` and no `Domain`).
#[derive(Debug, Clone, Copy)]
pub struct CookieNames {
    pub session: &'static str,
    pub login: &'static str,
    /// An anonymous visitor's key, for the sessions they launch (see [`visitor_key`]).
    pub visitor: &'static str,
    pub secure: bool,
}

pub fn cookie_names(app: &App) -> CookieNames {
    if app.settings.server.public_url.scheme() == "https" {
        CookieNames {
            session: "__Host-nbforge_session",
            login: "__Host-nbforge_login",
            visitor: "__Host-nbforge_visitor",
            secure: true,
        }
    } else {
        CookieNames {
            session: "nbforge_session",
            login: "nbforge_login",
            visitor: "nbforge_visitor",
            secure: false,
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// The key naming an anonymous visitor's sessions (`Owner::Anonymous { visitor }`): 32 hex
/// digits of the SHA-256 of their visitor cookie, so labels and URLs never show the cookie
/// itself. `None` without a well-formed cookie.
pub fn visitor_key(names: CookieNames, headers: &HeaderMap) -> Option<String> {
    let value = cookie_value(headers, names.visitor)?;
    let plain = value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plain.then(|| crate::access::service::digest(&["visitor", &value])[..32].to_owned())
}

/// A new visitor: the `Set-Cookie` value (a random token, for the browser session only)
/// and the key it gives (see [`visitor_key`]).
pub fn new_visitor(names: CookieNames) -> (String, String) {
    let value = crate::access::service::random_token();
    let key = crate::access::service::digest(&["visitor", &value])[..32].to_owned();
    (set_cookie(names, names.visitor, &value, None), key)
}

fn set_cookie(names: CookieNames, name: &str, value: &str, max_age_secs: Option<i64>) -> String {
    let mut c = Cookie::build((name.to_owned(), value.to_owned()))
        .path("/")
        .http_only(true)
        .secure(names.secure)
        // Strict would drop the cookie on the redirect back from GitLab.
        .same_site(SameSite::Lax);
    if let Some(secs) = max_age_secs {
        c = c.max_age(cookie::time::Duration::seconds(secs));
    }
    c.build().to_string()
}

fn clear_cookie(names: CookieNames, name: &str) -> String {
    set_cookie(names, name, "", Some(0))
}

/// What the page frame shows of the viewer.
#[derive(Debug, Clone, Serialize)]
pub struct FrameView {
    pub username: Option<String>,
    pub name: Option<String>,
    pub level: &'static str,
    pub tools: Tools,
    pub csrf_token: Option<String>,
    pub login_enabled: bool,
    pub admin: bool,
}

impl FrameView {
    pub fn of(viewer: &Viewer, login_enabled: bool) -> FrameView {
        FrameView {
            username: viewer.user.as_ref().map(|u| u.username.clone()),
            name: viewer.user.as_ref().map(|u| u.name.clone()),
            level: viewer.level.as_str(),
            tools: viewer.level.tools(),
            csrf_token: viewer.csrf_token.clone(),
            login_enabled,
            admin: viewer.is_platform_admin(),
        }
    }
}

tokio::task_local! {
    /// The frame of the page being answered, for [`super::Templates::page`].
    pub static FRAME: FrameView;
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the browser says this request comes from another site: `Sec-Fetch-Site`
/// other than `same-origin`/`none` where the browser sends it (all current ones do);
/// otherwise an `Origin` that is not the public URL's. (`Origin: null`, which browsers send
/// under nbforge's `no-referrer` policy, says nothing; the CSRF token still has to match.)
pub(crate) fn cross_site(headers: &HeaderMap, app: &App) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some("null") | None => false,
        Some(origin) => {
            origin
                != app
                    .settings
                    .server
                    .public_url
                    .origin()
                    .ascii_serialization()
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Layer: finds the viewer, checks state-changing browser requests for CSRF, and makes
/// the viewer available to the route ([`Viewer`] extractor) and to the page frame.
pub async fn find_viewer(State(web): State<Web>, req: Request, next: Next) -> Response {
    // Webhooks authenticate with their own secrets and are read by ingest itself.
    if req.uri().path().starts_with("/hooks/") {
        return next.run(req).await;
    }
    let api = req.uri().path().starts_with("/api/");
    match viewer_and_request(&web.app, req).await {
        Ok((viewer, mut req)) => {
            let frame = FrameView::of(&viewer, web.app.access.login_enabled());
            req.extensions_mut().insert(viewer);
            FRAME.scope(frame, next.run(req)).await
        }
        Err(e) => {
            let frame = FrameView::of(&Viewer::anonymous(), web.app.access.login_enabled());
            let templates = web.templates.clone();
            FRAME
                .scope(frame, async move {
                    super::error::render(&templates, e.into_response(), api)
                })
                .await
        }
    }
}

async fn viewer_and_request(app: &App, req: Request) -> Result<(Viewer, Request), WebError> {
    let headers = req.headers();
    if let Some(presented) = bearer(headers) {
        let ok = app
            .settings
            .server
            .admin_token
            .as_ref()
            .is_some_and(|t| t.matches(presented.as_bytes()));
        // A wrong token is anonymous; routes that need the token answer 401.
        let viewer = if ok {
            Viewer::admin_token()
        } else {
            Viewer::anonymous()
        };
        return Ok((viewer, req));
    }
    let names = cookie_names(app);
    let session = cookie_value(headers, names.session);
    let viewer = app.access.viewer(session.as_deref()).await?;
    if is_safe(req.method()) || session.is_none() {
        return Ok((viewer, req));
    }
    // A state change from a browser that holds a session cookie.
    if cross_site(req.headers(), app) {
        return Err(WebError::Forbidden(
            "This request came from another site and was refused.".into(),
        ));
    }
    let Some(expected) = viewer.csrf_token.clone() else {
        // The cookie is stale: the request goes on as anonymous.
        return Ok((viewer, req));
    };
    if let Some(token) = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        return if crate::config::Secret::new(expected).matches(token.as_bytes()) {
            Ok((viewer, req))
        } else {
            Err(csrf_refused())
        };
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // A file upload form (multipart) carries the token in its address, so that the body,
    // which may be large, is streamed by the route rather than read here.
    if content_type.starts_with("multipart/form-data") {
        let presented =
            url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
                .find(|(k, _)| k == CSRF_FIELD)
                .map(|(_, v)| v.into_owned());
        return match presented {
            Some(t) if crate::config::Secret::new(expected).matches(t.as_bytes()) => {
                Ok((viewer, req))
            }
            _ => Err(csrf_refused()),
        };
    }
    let form = content_type.starts_with("application/x-www-form-urlencoded");
    if !form {
        return Err(csrf_refused());
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, app.settings.server.max_body_bytes)
        .await
        .map_err(|_| WebError::PayloadTooLarge)?;
    let presented = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    match presented {
        Some(t) if crate::config::Secret::new(expected).matches(t.as_bytes()) => {
            Ok((viewer, Request::from_parts(parts, Body::from(bytes))))
        }
        _ => Err(csrf_refused()),
    }
}

fn csrf_refused() -> WebError {
    WebError::Forbidden(
        "This form has expired or did not come from nbforge. Reload the page and try again.".into(),
    )
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Viewer>()
            .cloned()
            .unwrap_or_else(Viewer::anonymous))
    }
}

/// A refusal as an answer: a page that a login might open sends the browser to
/// `/login?next=<this page>` (when login is configured); everything else is a 404, so
/// that nobody learns that a private project exists.
pub fn deny(app: &App, denied: Denied, uri: &Uri) -> WebError {
    let api = uri.path().starts_with("/api/");
    match denied {
        Denied::NeedsLogin if api => WebError::Unauthorized("log in first".into()),
        Denied::NeedsLogin if app.access.login_enabled() => {
            WebError::LoginRequired(login_path(uri))
        }
        _ => WebError::NotFound("Nothing here.".into()),
    }
}

/// Lets the request through when `viewer` may do `action` in the project; otherwise the
/// answer [`deny`] gives.
pub async fn require(
    app: &App,
    viewer: &Viewer,
    uri: &Uri,
    action: crate::access::Action,
    forge: crate::events::ForgeKind,
    project: &str,
) -> Result<(), WebError> {
    match app.access.check(viewer, action, forge, project).await? {
        Ok(_) => Ok(()),
        Err(denied) => Err(deny(app, denied, uri)),
    }
}

/// `/login?next=<path and query of uri>`.
pub fn login_path(uri: &Uri) -> String {
    let next = uri.path_and_query().map_or("/", |p| p.as_str());
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    format!("/login?{q}")
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /login`: off to GitLab's authorize page.
pub async fn login(
    State(app): State<App>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, WebError> {
    let start = app
        .access
        .start_login(q.next.as_deref())
        .await
        .map_err(login_failed)?;
    let names = cookie_names(&app);
    let binding = set_cookie(
        names,
        names.login,
        start.browser_binding.expose(),
        Some(
            crate::access::service::LOGIN_ATTEMPT_TTL
                .as_secs()
                .try_into()
                .unwrap_or(600),
        ),
    );
    let mut res = Redirect::to(start.authorize_url.as_str()).into_response();
    append_cookie(&mut res, &binding);
    Ok(res)
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /oauth/callback`: GitLab sends the browser back with a code (or an error).
pub async fn callback(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Result<Response, WebError> {
    let names = cookie_names(&app);
    if let Some(error) = q.error {
        let reason = if error == "access_denied" {
            "You did not allow nbforge to use your GitLab account.".to_owned()
        } else {
            format!(
                "GitLab answered: {}.",
                crate::text::truncate(&error, 80).replace(|c: char| c.is_control(), " ")
            )
        };
        return Err(WebError::LoginFailed(reason));
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return Err(login_failed(LoginError::BadState));
    };
    let binding = cookie_value(&headers, names.login);
    let done = app
        .access
        .finish_login(&state, binding.as_deref(), &code)
        .await
        .map_err(login_failed)?;
    // A new session replaces whatever this browser had.
    if let Some(old) = cookie_value(&headers, names.session) {
        app.access.logout(&old).await?;
    }
    tracing::info!(user_id = done.user_id, "logged in");
    let max_age = i64::try_from(app.settings.access.session_max.as_secs()).unwrap_or(i64::MAX);
    let mut res = Redirect::to(&done.next).into_response();
    append_cookie(
        &mut res,
        &set_cookie(names, names.session, done.session.expose(), Some(max_age)),
    );
    append_cookie(&mut res, &clear_cookie(names, names.login));
    Ok(res)
}

fn login_failed(e: LoginError) -> WebError {
    match e {
        LoginError::NotConfigured => WebError::NotFound(e.to_string()),
        LoginError::Internal(e) => WebError::Internal(e),
        e @ LoginError::Unavailable => WebError::Unavailable(e.to_string()),
        e => WebError::LoginFailed(format!("{e}.")),
    }
}

/// `POST /logout`: ends the session (checked for CSRF by the layer).
pub async fn logout(State(app): State<App>, headers: HeaderMap) -> Result<Response, WebError> {
    let names = cookie_names(&app);
    if let Some(session) = cookie_value(&headers, names.session) {
        app.access.logout(&session).await?;
    }
    let mut res = Redirect::to("/").into_response();
    append_cookie(&mut res, &clear_cookie(names, names.session));
    Ok(res)
}

fn append_cookie(res: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The level a viewer may switch to, for `/me`.
pub fn choosable_levels(viewer: &Viewer) -> Vec<&'static str> {
    [
        UserLevel::EndUser,
        UserLevel::ScriptAuthor,
        UserLevel::Developer,
    ]
    .into_iter()
    .filter(|l| *l <= viewer.max_level)
    .map(UserLevel::as_str)
    .collect()
}

/// 303 See Other to the login page: used by [`WebError::LoginRequired`].
pub fn to_login(path: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, path.to_owned())]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; nbforge_session=xyz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie_value(&h, "nbforge_session").as_deref(), Some("xyz"));
        assert_eq!(cookie_value(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie_value(&h, "c"), None);
    }

    #[test]
    fn login_paths_carry_the_page() {
        let uri: Uri = "/w/lab/x/v1/a.ipynb?t=1&u=2".parse().unwrap();
        assert_eq!(
            login_path(&uri),
            "/login?next=%2Fw%2Flab%2Fx%2Fv1%2Fa.ipynb%3Ft%3D1%26u%3D2"
        );
    }

    #[test]
    fn a_visitor_is_known_again_by_their_cookie_only() {
        let names = CookieNames {
            session: "nbforge_session",
            login: "nbforge_login",
            visitor: "nbforge_visitor",
            secure: false,
        };
        let (cookie, key) = new_visitor(names);
        assert_eq!(key.len(), 32);
        let value = cookie.split(';').next().unwrap().to_owned();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&value).unwrap());
        assert_eq!(visitor_key(names, &h).as_deref(), Some(key.as_str()));
        assert!(!key.contains(value.split('=').nth(1).unwrap()));
        let mut forged = HeaderMap::new();
        forged.insert(
            header::COOKIE,
            HeaderValue::from_static("nbforge_visitor=../../etc"),
        );
        assert_eq!(visitor_key(names, &forged), None);
        assert_eq!(visitor_key(names, &HeaderMap::new()), None);
    }

    #[test]
    fn session_cookies_are_http_only_and_lax() {
        let names = CookieNames {
            session: "__Host-nbforge_session",
            login: "__Host-nbforge_login",
            visitor: "__Host-nbforge_visitor",
            secure: true,
        };
        let c = set_cookie(names, names.session, "v", Some(60));
        assert!(c.contains("HttpOnly"), "{c}");
        assert!(c.contains("Secure"), "{c}");
        assert!(c.contains("SameSite=Lax"), "{c}");
        assert!(c.contains("Path=/"), "{c}");
    }
}
