//! Login with GitLab and who may see what: the whole OAuth flow against the fake GitLab,
//! sessions (forged, expired, replayed, logged out), CSRF, the users' GitLab tokens, and
//! an authorization matrix over every route, subject and project visibility.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::catalog::{make_official, publish, release_files};
use crate::on_both_databases;
use crate::support::fake_gitlab::FakeUser;
use crate::support::scenario::Scenario;
use crate::support::{ADMIN_TOKEN, Backend, TestResponse};
use nbforge::access::service::{digest, random_token};
use nbforge::config::Settings;
use nbforge::events::ForgeKind;
use nbforge::storage::{MemberRow, ProjectRow};

pub(crate) const PUBLIC_URL: &str = "http://nbforge.test";

/// A scenario against the fake GitLab with nbforge registered there as an OAuth app.
pub(crate) async fn with_login(
    backend: Backend,
    tweak: impl FnOnce(&mut Settings),
) -> Option<Scenario> {
    let id = format!("app-{}", random_token());
    let secret = nbforge::config::Secret::new(format!("gloas-{}", random_token()));
    let (app_id, app_secret) = (id.clone(), secret.clone());
    let t = Scenario::gitlab_with(backend, move |s| {
        s.access.oauth_client_id = Some(app_id);
        s.access.oauth_client_secret = Some(app_secret);
        tweak(s);
    })
    .await?;
    t.gitlab_fake()
        .register_oauth_app(&id, &secret, &format!("{PUBLIC_URL}/oauth/callback"));
    Some(t)
}

fn header(res: &TestResponse, name: &str) -> String {
    res.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The value nbforge set for cookie `name`.
pub(crate) fn set_cookie(res: &TestResponse, name: &str) -> Option<String> {
    res.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

async fn get_with(t: &Scenario, path: &str, cookies: &str) -> TestResponse {
    t.request(
        Request::get(path)
            .header("cookie", cookies)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// A browser's trip: `/login?next=…` → the fake's authorize page → approve → back to
/// `/oauth/callback`. Returns the callback's path and the login cookie.
async fn through_gitlab(t: &Scenario, next: &str) -> (String, String) {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    let res = t.get(&format!("/login?{q}")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let binding = set_cookie(&res, "nbforge_login").expect("a login cookie");
    let authorize = url::Url::parse(&header(&res, "location")).unwrap();
    assert_eq!(authorize.path(), "/oauth/authorize");
    let query: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(
        query["redirect_uri"],
        format!("{PUBLIC_URL}/oauth/callback")
    );
    assert!(
        !authorize.as_str().contains("gloas-"),
        "no client secret in the URL"
    );

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http.get(authorize.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let approved = http
        .post(authorize.join("/oauth/authorize").unwrap())
        .form(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 302);
    let back = url::Url::parse(
        approved
            .headers()
            .get("location")
            .unwrap()
            .to_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(back.path(), "/oauth/callback");
    (
        format!("{}?{}", back.path(), back.query().unwrap_or_default()),
        binding,
    )
}

/// Logs `user` in through the fake; returns the session cookie's value.
pub(crate) async fn log_in(t: &Scenario, user: &FakeUser, next: &str) -> String {
    t.gitlab_fake().sign_in(Some(user));
    let (callback, binding) = through_gitlab(t, next).await;
    let res = get_with(t, &callback, &format!("nbforge_login={binding}")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert_eq!(header(&res, "location"), next);
    let cookie = header(&res, "set-cookie");
    set_cookie(&res, "nbforge_session").unwrap_or_else(|| panic!("a session cookie: {cookie}"))
}

pub(crate) fn session(value: &str) -> String {
    format!("nbforge_session={value}")
}

/// The CSRF token in a page's logout form.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf_token\" value=\"")
        .expect("a CSRF field")
        + 25;
    page[at..].split('"').next().unwrap().to_owned()
}

async fn post_form(
    t: &Scenario,
    path: &str,
    cookies: &str,
    form: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> TestResponse {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req = Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookies);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    t.request(req.body(Body::from(body)).unwrap()).await
}

on_both_databases!(
    login_with_gitlab_starts_a_session_and_logout_ends_it,
    |backend: Backend| async move {
        let Some(t) = with_login(backend, |_| {}).await else {
            return;
        };
        let ada = t.gitlab_fake().add_user("ada");
        let cookie = log_in(&t, &ada, "/me?tab=1").await;

        let me = get_with(&t, "/me", &session(&cookie)).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text());
        let page = me.text();
        assert!(
            page.contains(">ada</a>"),
            "the frame names the user: {page}"
        );
        let user = t.db().get_user(ada.id).await.unwrap().expect("a user row");
        assert_eq!(user.username, "ada");
        assert!(user.last_login_at.is_some());
        // The tokens are stored sealed, never as GitLab gave them.
        let sealed = t.db().user_tokens(ada.id).await.unwrap().unwrap();
        let access = sealed.access_token.expect("an access token");
        assert!(access.starts_with("v1."), "{access}");
        let live = t.app.app.access.user_token(ada.id).await.expect("a token");
        assert!(!access.contains(live.expose()));

        // A forged cookie is nobody.
        let forged = get_with(&t, "/me", &session(&random_token())).await;
        assert_eq!(forged.status, StatusCode::SEE_OTHER);
        assert!(header(&forged, "location").starts_with("/login?next=%2Fme"));

        // Logging out needs the session's CSRF token, from this site.
        let csrf = csrf_of(&page);
        let refused = post_form(&t, "/logout", &session(&cookie), &[], &[]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
        assert!(
            refused.text().contains("<h1>Forbidden</h1>"),
            "a page, not bare text"
        );
        let cross = post_form(
            &t,
            "/logout",
            &session(&cookie),
            &[("csrf_token", &csrf)],
            &[
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
        assert_eq!(cross.status, StatusCode::FORBIDDEN, "{}", cross.text());
        let still = get_with(&t, "/me", &session(&cookie)).await;
        assert_eq!(still.status, StatusCode::OK, "refusals end nothing");

        let out = post_form(
            &t,
            "/logout",
            &session(&cookie),
            &[("csrf_token", &csrf)],
            &[("origin", PUBLIC_URL), ("sec-fetch-site", "same-origin")],
        )
        .await;
        assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.text());
        assert_eq!(set_cookie(&out, "nbforge_session").as_deref(), Some(""));
        let after = get_with(&t, "/me", &session(&cookie)).await;
        assert_eq!(after.status, StatusCode::SEE_OTHER, "the session is gone");
    }
);

on_both_databases!(
    replayed_mismatched_and_foreign_logins_are_refused,
    |backend: Backend| async move {
        let Some(t) = with_login(backend, |_| {}).await else {
            return;
        };
        let ada = t.gitlab_fake().add_user("ada");
        t.gitlab_fake().sign_in(Some(&ada));

        // Another browser (no login cookie, or another one) cannot finish the login.
        let (callback, binding) = through_gitlab(&t, "/").await;
        let other = get_with(&t, &callback, "nbforge_login=someone-else").await;
        assert_eq!(other.status, StatusCode::BAD_REQUEST, "{}", other.text());
        assert!(
            other.text().contains("href=\"/login\""),
            "a log-in-again link"
        );
        // The browser that started it still can, once.
        let mine = get_with(&t, &callback, &format!("nbforge_login={binding}")).await;
        assert_eq!(mine.status, StatusCode::SEE_OTHER, "{}", mine.text());
        let replay = get_with(&t, &callback, &format!("nbforge_login={binding}")).await;
        assert_eq!(replay.status, StatusCode::BAD_REQUEST);

        // A state that was never issued.
        let (callback, binding) = through_gitlab(&t, "/").await;
        let forged = callback.replace("state=", "state=x");
        let res = get_with(&t, &forged, &format!("nbforge_login={binding}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST);

        // A good login works once, then its replay is refused.
        let (callback, binding) = through_gitlab(&t, "//evil.example/x").await;
        let ok = get_with(&t, &callback, &format!("nbforge_login={binding}")).await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text());
        assert_eq!(header(&ok, "location"), "/", "next never leaves the site");
        let again = get_with(&t, &callback, &format!("nbforge_login={binding}")).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST);

        // GitLab's own refusal is a clear page.
        let denied = t
            .get("/oauth/callback?error=access_denied&state=whatever")
            .await;
        assert_eq!(denied.status, StatusCode::BAD_REQUEST);
        assert!(denied.text().contains("did not allow"), "{}", denied.text());

        // A blocked GitLab account cannot log in.
        let grants = t.gitlab_fake().oauth_grants();
        assert!(
            grants
                .iter()
                .any(|(g, ok)| g == "authorization_code" && *ok)
        );
    }
);

#[tokio::test]
async fn sessions_end_when_idle_or_old() {
    for (idle, max) in [
        (Duration::from_millis(1), Duration::from_secs(3600)),
        (Duration::from_secs(3600), Duration::from_millis(1)),
    ] {
        let t = with_login(Backend::Sqlite, |s| {
            s.access.session_idle = idle;
            s.access.session_max = max;
        })
        .await
        .unwrap();
        let ada = t.gitlab_fake().add_user("ada");
        let cookie = log_in(&t, &ada, "/").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let res = get_with(&t, "/me", &session(&cookie)).await;
        assert_eq!(
            res.status,
            StatusCode::SEE_OTHER,
            "idle {idle:?}, max {max:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_tokens_refresh_one_at_a_time_and_revocation_means_log_in_again() {
    let t = with_login(Backend::Sqlite, |_| {}).await.unwrap();
    let fake = t.gitlab_fake();
    let ada = fake.add_user("ada");
    // Tokens that expire within nbforge's refresh margin: every use refreshes.
    fake.set_token_lifetime(30);
    log_in(&t, &ada, "/").await;
    let (a, b) = tokio::join!(
        t.app.app.access.user_token(ada.id),
        t.app.app.access.user_token(ada.id)
    );
    let (a, b) = (a.expect("a token"), b.expect("a token"));
    assert_ne!(a.expose(), b.expose(), "each refresh rotates the token");
    let grants = fake.oauth_grants();
    let refreshes: Vec<_> = grants
        .iter()
        .filter(|(g, _)| g == "refresh_token")
        .collect();
    assert_eq!(refreshes.len(), 2, "{grants:?}");
    assert!(
        refreshes.iter().all(|(_, ok)| *ok),
        "no refresh used a rotated-out token: {grants:?}"
    );
    // The refreshed token is the user's, for GitLab.
    let me: serde_json::Value = reqwest::Client::new()
        .get(fake.url().join("/api/v4/user").unwrap())
        .bearer_auth(b.expose())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "ada");

    fake.revoke_tokens(&ada);
    let err = t.app.app.access.user_token(ada.id).await.unwrap_err();
    assert!(
        matches!(err, nbforge::access::service::TokenError::LoginAgain),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// The authorization matrix.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    NoRole,
    Read,
    Write,
    Admin,
    PlatformAdmin,
    AdminToken,
}

const EVERYONE: [Who; 7] = [
    Who::Anonymous,
    Who::NoRole,
    Who::Read,
    Who::Write,
    Who::Admin,
    Who::PlatformAdmin,
    Who::AdminToken,
];

impl Who {
    fn logged_in(self) -> bool {
        !matches!(self, Who::Anonymous | Who::AdminToken)
    }
    fn platform_admin(self) -> bool {
        matches!(self, Who::PlatformAdmin | Who::AdminToken)
    }
    /// The GitLab access level this subject holds in the GitLab projects.
    fn level(self) -> Option<i64> {
        match self {
            Who::Read => Some(20),
            Who::Write => Some(30),
            Who::Admin => Some(40),
            _ => None,
        }
    }
}

/// What a route needs, as the rules state it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Worksheets and launch pages: readable projects.
    Read,
    /// Build logs: readable, and for private projects the write role.
    BuildLogs,
    /// The admin API.
    PlatformAdmin,
    /// `/me`.
    Login,
    /// A status badge: readable projects; an image cannot log anyone in, so it is a 404.
    Badge,
    /// Starting a worksheet run: readable projects, and a logged-in user.
    Run,
    /// Launching a session: readable projects, for a logged-in user; public ones also for
    /// visitors (`NBFORGE_ANONYMOUS_SESSIONS`, on by default).
    Launch,
}

fn readable(who: Who, visibility: &str) -> bool {
    who.platform_admin()
        || match visibility {
            "public" => true,
            "internal" => who.logged_in(),
            _ => who.level().is_some_and(|l| l >= 20),
        }
}

/// The status a subject gets, from the rules: allowed → `ok`; else a login redirect
/// (pages) or 401 (API) when logging in could help; else 404 (nothing is revealed), and
/// 403 for logged-in users on the admin API.
fn expected(who: Who, needs: Needs, visibility: &str, api: bool, ok: StatusCode) -> StatusCode {
    let allowed = match needs {
        Needs::Read | Needs::Badge => readable(who, visibility),
        Needs::BuildLogs => {
            readable(who, visibility)
                && (who.platform_admin()
                    || visibility != "private"
                    || who.level().is_some_and(|l| l >= 30))
        }
        Needs::PlatformAdmin => who.platform_admin(),
        Needs::Login => who.logged_in(),
        Needs::Run => who.logged_in() && readable(who, visibility),
        // Platform administrators (and the admin token) may do anything to a project.
        Needs::Launch => {
            readable(who, visibility)
                && (who.logged_in() || who.platform_admin() || visibility == "public")
        }
    };
    if allowed {
        return ok;
    }
    match needs {
        Needs::Badge => StatusCode::NOT_FOUND,
        Needs::PlatformAdmin if who.logged_in() => StatusCode::FORBIDDEN,
        Needs::PlatformAdmin => StatusCode::UNAUTHORIZED,
        // The admin token is nobody whose home could hold a run.
        Needs::Run if who == Who::AdminToken => StatusCode::UNAUTHORIZED,
        _ if who == Who::Anonymous || (needs == Needs::Login && !who.logged_in()) => {
            if api {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::SEE_OTHER
            }
        }
        _ => StatusCode::NOT_FOUND,
    }
}

struct Subject {
    who: Who,
    cookie: Option<(String, String)>,
}

async fn subject(t: &Scenario, who: Who, user_id: i64) -> Subject {
    if !who.logged_in() {
        return Subject { who, cookie: None };
    }
    let username = format!("{who:?}").to_lowercase();
    let (value, csrf) = t.web_session(user_id, &username).await;
    Subject {
        who,
        cookie: Some((value, csrf)),
    }
}

async fn send(t: &Scenario, s: &Subject, method: &str, path: &str, body: &str) -> TestResponse {
    let mut req = Request::builder().method(method).uri(path);
    if s.who == Who::AdminToken {
        req = req.header("authorization", format!("Bearer {ADMIN_TOKEN}"));
    }
    if let Some((cookie, csrf)) = &s.cookie {
        req = req
            .header("cookie", session(cookie))
            .header("x-csrf-token", csrf.as_str())
            .header("origin", PUBLIC_URL);
    }
    if method == "PUT" || body.starts_with('{') {
        req = req.header("content-type", "application/json");
    } else if method == "POST" {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    t.request(req.body(Body::from(body.to_owned())).unwrap())
        .await
}

on_both_databases!(
    authorization_matrix_over_every_route_subject_and_visibility,
    |backend: Backend| async move {
        // A Jupyter session of the write member's, reached through the proxy (with Docker).
        let sessions = crate::proxy::Sessions::new();
        let network = sessions.as_ref().map(|s| s.network.clone());
        let Some(t) = with_login(backend, |s| {
            s.access.admins = vec!["platformadmin".into()];
            if let Some(network) = network {
                s.sessions.network = network;
            }
        })
        .await
        else {
            return;
        };
        let fake = t.gitlab_fake();
        let mut projects = Vec::new();
        for visibility in ["public", "internal", "private"] {
            let path = format!("lab/{visibility}-growth");
            let p = fake.add_project(&path);
            fake.set_visibility(&p, visibility);
            let p = fake.project(&path).unwrap();
            let mut files = release_files();
            let readme = format!("# {path}\n");
            files.push(("README.md", readme.as_bytes()));
            let sha = publish(&t, fake, &p, "v1", &files).await;
            make_official(&t, &path).await;
            let build = t
                .db()
                .create_build("gitlab", &path, Some("main"), &sha, None)
                .await
                .unwrap();
            projects.push((visibility, path, sha, build));
        }
        // GitHub repositories: visibility from their payloads, no memberships.
        for (visibility, path) in [("public", "octo/pub"), ("private", "octo/priv")] {
            t.db()
                .upsert_project(&ProjectRow {
                    forge: ForgeKind::GitHub,
                    path: path.into(),
                    forge_id: None,
                    web_url: None,
                    git_url: None,
                    default_branch: None,
                    forked_from: None,
                    visibility: Some(visibility.into()),
                })
                .await
                .unwrap();
        }

        let mut subjects = Vec::new();
        for (i, who) in EVERYONE.into_iter().enumerate() {
            let id = 1000 + i64::try_from(i).unwrap();
            let s = subject(&t, who, id).await;
            if let Some(level) = who.level() {
                // A member of the group holding every project, except for read, which
                // comes from the project itself (both kinds of membership count).
                let scope = if who == Who::Read {
                    None
                } else {
                    Some("group:lab".to_owned())
                };
                let scopes: Vec<String> = match scope {
                    Some(g) => vec![g],
                    None => projects
                        .iter()
                        .map(|(_, p, _, _)| format!("project:{p}"))
                        .collect(),
                };
                for scope in scopes {
                    t.db()
                        .upsert_member(&MemberRow {
                            forge: ForgeKind::GitLab,
                            scope,
                            user_id: id,
                            access_level: level,
                            expires_at: None,
                            source: "hook".into(),
                        })
                        .await
                        .unwrap();
                }
            }
            subjects.push(s);
        }

        // A finished run of the subject with the read role.
        let reader = subjects.iter().find(|s| s.who == Who::Read).unwrap();
        let res = send(
            &t,
            reader,
            "POST",
            "/api/runs",
            r#"{"worksheet": "/w/lab/public-growth/v1/growth.ipynb", "values": {}}"#,
        )
        .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        let run_id = serde_json::from_str::<serde_json::Value>(&res.text()).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        t.db()
            .finish_run(&run_id, "canceled", Some("not run here"), None)
            .await
            .unwrap();
        // A finished run of a visitor who is not logged in (none of the subjects holds
        // their cookie).
        let visitor_run = nbforge::runs::new_run_id();
        let release = t.db().releases("lab/public-growth").await.unwrap()[0].clone();
        t.db()
            .create_visitor_run(
                &nbforge::storage::NewRun {
                    id: &visitor_run,
                    owner_user_id: None,
                    owner_visitor: Some("0123456789abcdef0123456789abcdef"),
                    forge: "gitlab",
                    project: "lab/public-growth",
                    tag: "v1",
                    worksheet: "growth.ipynb",
                    commit_sha: &release.commit_sha,
                    values_json: "{}",
                    result_folder: "results/lab/public-growth/growth/x",
                },
                &nbforge::jobs::Job::to_new_job(
                    &nbforge::jobs::kinds::RunWorksheet {
                        run_id: visitor_run.clone(),
                        project: "lab/public-growth".into(),
                    },
                    1,
                ),
                1,
                1,
            )
            .await
            .unwrap()
            .unwrap();
        t.db()
            .finish_run(&visitor_run, "canceled", Some("not run here"), None)
            .await
            .unwrap();
        let owner_id =
            1000 + i64::try_from(EVERYONE.iter().position(|w| *w == Who::Write).unwrap()).unwrap();
        let session = match &sessions {
            Some(sessions) => {
                let name = format!("matrix-{}", &sessions.network[13..21]);
                let owner = nbforge::sessions::Owner::User {
                    id: owner_id,
                    username: "write".into(),
                };
                Some(sessions.start(&t.app.app, owner, &name).await)
            }
            None => None,
        };

        let ok = StatusCode::OK;
        let mut checked = 0;
        for s in &subjects {
            // The session: its owner only; everyone else, platform admins too, a 404.
            for path in ["api/status", "lab"] {
                let Some(session) = &session else { break };
                let route = format!("{}{path}", session.base_url);
                let want = if s.who == Who::Write {
                    ok
                } else {
                    StatusCode::NOT_FOUND
                };
                let res = send(&t, s, "GET", &route, "").await;
                assert_eq!(res.status, want, "{:?} GET {route}", s.who);
                checked += 1;
            }
            for (visibility, path, sha, build) in &projects {
                let escaped = path.replace('/', "%2F");
                let run_body = format!(
                    r#"{{"worksheet": "/w/{path}/v1/growth.ipynb", "values": {{"rate": 0.5}}}}"#
                );
                let routes: Vec<(&str, String, &str, Needs, StatusCode)> = vec![
                    ("GET", format!("/w/{path}"), "", Needs::Read, ok),
                    ("GET", format!("/w/{path}/v1"), "", Needs::Read, ok),
                    (
                        "GET",
                        format!("/w/{path}/v1/growth.ipynb"),
                        "",
                        Needs::Read,
                        ok,
                    ),
                    (
                        "GET",
                        format!("/w/{path}/v1/growth.ipynb?format=ipynb"),
                        "",
                        Needs::Read,
                        ok,
                    ),
                    // The form runs the worksheet for logged-in users (a redirect to
                    // the run) and checks the values for the others.
                    (
                        "POST",
                        format!("/w/{path}/v1/growth.ipynb"),
                        "",
                        Needs::Read,
                        if s.who.logged_in() {
                            StatusCode::SEE_OTHER
                        } else {
                            ok
                        },
                    ),
                    (
                        "POST",
                        "/api/runs".to_owned(),
                        &run_body,
                        Needs::Run,
                        StatusCode::CREATED,
                    ),
                    (
                        "GET",
                        format!("/v2/gl/{escaped}/{sha}"),
                        "",
                        Needs::Read,
                        ok,
                    ),
                    (
                        "GET",
                        format!("/badge/gl/{escaped}/{sha}.svg"),
                        "",
                        Needs::Badge,
                        ok,
                    ),
                    // The launch's event stream (a ref that does not exist: the stream
                    // ends `failed` at once, whoever may launch).
                    (
                        "GET",
                        format!("/build/gl/{escaped}/no-such-ref"),
                        "",
                        Needs::Launch,
                        ok,
                    ),
                    (
                        "GET",
                        format!("/api/builds/{build}"),
                        "",
                        Needs::BuildLogs,
                        ok,
                    ),
                    (
                        "GET",
                        format!("/api/builds/{build}/log"),
                        "",
                        Needs::BuildLogs,
                        ok,
                    ),
                    (
                        "PUT",
                        format!("/api/projects/{escaped}/official"),
                        r#"{"official": true}"#,
                        Needs::PlatformAdmin,
                        ok,
                    ),
                ];
                for (method, route, body, needs, ok) in routes {
                    let api = route.starts_with("/api/");
                    let want = expected(s.who, needs, visibility, api, ok);
                    let res = send(&t, s, method, &route, body).await;
                    assert_eq!(
                        res.status,
                        want,
                        "{:?} {method} {route} ({visibility}): {}",
                        s.who,
                        res.text()
                    );
                    if want != ok {
                        assert!(
                            !res.text().contains(path.as_str()),
                            "{:?} {method} {route}: the refusal names the project",
                            s.who
                        );
                        assert!(!res.text().contains("Growth curve"));
                    }
                    checked += 1;
                }
            }
            // GitHub launch links.
            for (visibility, path) in [("public", "octo/pub"), ("private", "octo/priv")] {
                let route = format!("/v2/gh/{path}/{}", "a".repeat(40));
                // GitHub memberships are not followed: private repositories are for
                // platform administrators only.
                let want = if visibility == "public" || s.who.platform_admin() {
                    ok
                } else if s.who == Who::Anonymous {
                    StatusCode::SEE_OTHER
                } else {
                    StatusCode::NOT_FOUND
                };
                let res = send(&t, s, "GET", &route, "").await;
                assert_eq!(res.status, want, "{:?} {route}", s.who);
                checked += 1;
                // Its status badge: the same rule, but never a login redirect.
                let badge = format!("/badge/gh/{path}/{}.svg", "a".repeat(40));
                let want = if visibility == "public" || s.who.platform_admin() {
                    ok
                } else {
                    StatusCode::NOT_FOUND
                };
                let res = send(&t, s, "GET", &badge, "").await;
                assert_eq!(res.status, want, "{:?} {badge}", s.who);
                checked += 1;
            }
            // A run is its owner's (and platform administrators'); everyone else gets 404.
            let run_route = |suffix: &str| format!("/runs/{run_id}{suffix}");
            let owner_or_admin = s.who == Who::Read || s.who.platform_admin();
            for (method, route, ok) in [
                ("GET", format!("/api{}", run_route("")), StatusCode::OK),
                ("GET", run_route(""), StatusCode::OK),
                ("GET", run_route("/events"), StatusCode::OK),
                (
                    "POST",
                    format!("/api{}", run_route("/cancel")),
                    StatusCode::OK,
                ),
                ("POST", run_route("/cancel"), StatusCode::SEE_OTHER),
                (
                    "DELETE",
                    "/api/runs/00000000000000000000000000000000".to_owned(),
                    StatusCode::NOT_FOUND,
                ),
                (
                    "POST",
                    "/runs/00000000000000000000000000000000/delete".to_owned(),
                    StatusCode::NOT_FOUND,
                ),
                (
                    "GET",
                    "/runs/00000000000000000000000000000000/output.ipynb".to_owned(),
                    StatusCode::NOT_FOUND,
                ),
                (
                    "GET",
                    "/runs/00000000000000000000000000000000/result.zip".to_owned(),
                    StatusCode::NOT_FOUND,
                ),
            ] {
                let want = if owner_or_admin {
                    ok
                } else {
                    StatusCode::NOT_FOUND
                };
                let res = send(&t, s, method, &route, "").await;
                assert_eq!(
                    res.status,
                    want,
                    "{:?} {method} {route}: {}",
                    s.who,
                    res.text()
                );
                checked += 1;
            }
            // A visitor's run: its link opens it for everyone; only its visitor (by
            // cookie) and platform administrators cancel it.
            let visitor_route = |suffix: &str| format!("/runs/{visitor_run}{suffix}");
            for (method, route, ok, anyone) in [
                (
                    "GET",
                    format!("/api{}", visitor_route("")),
                    StatusCode::OK,
                    true,
                ),
                ("GET", visitor_route(""), StatusCode::OK, true),
                ("GET", visitor_route("/events"), StatusCode::OK, true),
                (
                    "POST",
                    format!("/api{}", visitor_route("/cancel")),
                    StatusCode::OK,
                    false,
                ),
                (
                    "POST",
                    visitor_route("/cancel"),
                    StatusCode::SEE_OTHER,
                    false,
                ),
            ] {
                let want = if anyone || s.who.platform_admin() {
                    ok
                } else {
                    StatusCode::NOT_FOUND
                };
                let res = send(&t, s, method, &route, "").await;
                assert_eq!(
                    res.status,
                    want,
                    "{:?} {method} {route}: {}",
                    s.who,
                    res.text()
                );
                checked += 1;
            }
            // Running a run again: only who may see it. This run never started, so it has no
            // image to repeat exactly (409); the admin token is no user to own a run (401).
            for route in [format!("/api{}", run_route("/again")), run_route("/again")] {
                let want = match s.who {
                    Who::Read | Who::PlatformAdmin => StatusCode::CONFLICT,
                    Who::AdminToken => StatusCode::UNAUTHORIZED,
                    _ => StatusCode::NOT_FOUND,
                };
                let res = send(&t, s, "POST", &route, "").await;
                assert_eq!(res.status, want, "{:?} POST {route}: {}", s.who, res.text());
                let nobodys = route.replace(&run_id, "00000000000000000000000000000000");
                let res = send(&t, s, "POST", &nobodys, "").await;
                assert_eq!(
                    res.status,
                    StatusCode::NOT_FOUND,
                    "{:?} POST {nobodys}",
                    s.who
                );
                checked += 2;
            }
            // The admin API and the user's page.
            for (method, route, needs, ok) in [
                ("GET", "/api/jobs", Needs::PlatformAdmin, StatusCode::OK),
                (
                    "GET",
                    "/api/deliveries",
                    Needs::PlatformAdmin,
                    StatusCode::OK,
                ),
                ("GET", "/api/builds", Needs::PlatformAdmin, StatusCode::OK),
                (
                    "POST",
                    "/api/jobs/999999/retry",
                    Needs::PlatformAdmin,
                    StatusCode::NOT_FOUND,
                ),
                (
                    "POST",
                    "/api/reconcile",
                    Needs::PlatformAdmin,
                    StatusCode::ACCEPTED,
                ),
                ("GET", "/me", Needs::Login, StatusCode::OK),
                ("GET", "/me/results", Needs::Login, StatusCode::OK),
                // The user's ~/data: listing, and uploads (refused names here, so that
                // nothing is written into these users' homes).
                ("GET", "/api/data", Needs::Login, StatusCode::OK),
                (
                    "POST",
                    "/api/data?name=..%2Fx.csv",
                    Needs::Login,
                    StatusCode::BAD_REQUEST,
                ),
                (
                    "POST",
                    "/data?next=%2F",
                    Needs::Login,
                    StatusCode::BAD_REQUEST,
                ),
            ] {
                let want = expected(s.who, needs, "private", route.starts_with("/api/"), ok);
                let res = send(&t, s, method, route, "").await;
                assert_eq!(res.status, want, "{:?} {method} {route}", s.who);
                checked += 1;
            }
            // Jupyter sessions: everyone lists their own (only the writer has one, the
            // proxied session above; an anonymous request without a visitor cookie owns
            // none), platform administrators every session; stopping one that is not
            // theirs (here: one nobody has) is a 404 for everyone, through the API and
            // the form alike.
            let res = send(&t, s, "GET", "/api/sessions", "").await;
            assert_eq!(res.status, StatusCode::OK, "{:?} GET /api/sessions", s.who);
            if !s.who.platform_admin() {
                let listed: Vec<String> = res.json()["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x["id"].as_str().unwrap_or_default().to_owned())
                    .collect();
                let own: Vec<String> = match (&session, s.who) {
                    (Some(session), Who::Write) => vec![session.id.to_string()],
                    _ => Vec::new(),
                };
                assert_eq!(listed, own, "{:?}", s.who);
            }
            let nobodys = "0123456789abcdef0123456789abcdef";
            for (method, route) in [
                ("DELETE", format!("/api/sessions/{nobodys}")),
                ("POST", format!("/sessions/{nobodys}/stop")),
                ("DELETE", "/api/sessions/..%2F..%2Fimages".to_owned()),
            ] {
                let res = send(&t, s, method, &route, "").await;
                assert_eq!(
                    res.status,
                    StatusCode::NOT_FOUND,
                    "{:?} {method} {route}",
                    s.who
                );
            }
            checked += 4;
            let list = send(&t, s, "GET", "/api/runs", "").await;
            if s.who.logged_in() || s.who.platform_admin() {
                assert_eq!(list.status, StatusCode::OK, "{:?}", s.who);
                assert_eq!(list.text().contains(&run_id), owner_or_admin, "{:?}", s.who);
            } else {
                assert_eq!(list.status, StatusCode::UNAUTHORIZED);
            }
            checked += 1;
            // The landing page lists exactly what the subject may read.
            let landing = send(&t, s, "GET", "/", "").await;
            assert_eq!(landing.status, StatusCode::OK);
            for (visibility, path, _, _) in &projects {
                assert_eq!(
                    landing.text().contains(&format!("/w/{path}/")),
                    readable(s.who, visibility),
                    "{:?} sees {path} on the landing page",
                    s.who
                );
            }
            checked += 1;
        }
        let proxied = if session.is_some() { 2 } else { 0 };
        assert!(
            checked >= 7 * (3 * 12 + 4 + 9 + 5 + 7 + 1 + 1 + proxied),
            "{checked}"
        );
        if let Some(session) = session {
            t.app.app.sessions.stop(&session.id).await.unwrap();
        }
    }
);

on_both_databases!(
    a_member_of_a_parent_group_reads_a_subgroup_project_and_loses_it_when_removed,
    |backend: Backend| async move {
        let Some(t) = with_login(backend, |_| {}).await else {
            return;
        };
        let fake = t.gitlab_fake();
        let p = fake.add_project("lab/sub/deep");
        fake.set_visibility(&p, "private");
        let p = fake.project("lab/sub/deep").unwrap();
        publish(&t, fake, &p, "v1", &release_files()).await;
        let s = subject(&t, Who::Read, 77).await;
        let page = "/w/lab/sub/deep/v1/growth.ipynb";
        assert_eq!(
            send(&t, &s, "GET", page, "").await.status,
            StatusCode::NOT_FOUND
        );
        let member = MemberRow {
            forge: ForgeKind::GitLab,
            scope: "group:lab".into(),
            user_id: 77,
            access_level: 20,
            expires_at: None,
            source: "hook".into(),
        };
        t.db().upsert_member(&member).await.unwrap();
        assert_eq!(send(&t, &s, "GET", page, "").await.status, StatusCode::OK);
        // An expired membership counts for nothing.
        t.db()
            .upsert_member(&MemberRow {
                expires_at: Some("2001-01-01".into()),
                ..member.clone()
            })
            .await
            .unwrap();
        assert_eq!(
            send(&t, &s, "GET", page, "").await.status,
            StatusCode::NOT_FOUND
        );
        t.db().upsert_member(&member).await.unwrap();
        // Blocked in GitLab: the session ends.
        t.db().set_user_state(77, "blocked").await.unwrap();
        assert_eq!(
            send(&t, &s, "GET", page, "").await.status,
            StatusCode::SEE_OTHER
        );
    }
);

on_both_databases!(
    the_admin_group_and_level_groups_come_from_gitlab_through_the_reconciler,
    |backend: Backend| async move {
        let Some(t) = with_login(backend, |s| {
            s.access.admin_group = Some("staff".into());
            s.access.level_groups = vec![("developer".into(), "lab/devs".into())];
        })
        .await
        else {
            return;
        };
        let fake = t.gitlab_fake();
        let (boss, dev, plain) = (
            fake.add_user("boss"),
            fake.add_user("dev"),
            fake.add_user("plain"),
        );
        fake.add_group("staff");
        fake.add_group("lab/devs");
        fake.add_member("staff", &boss, 40);
        fake.add_member("staff", &plain, 30);
        fake.add_member("lab/devs", &dev, 30);
        let res = t
            .request(
                Request::post("/api/reconcile")
                    .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
        t.run_jobs().await;

        let boss_cookie = log_in(&t, &boss, "/").await;
        let jobs = get_with(&t, "/api/jobs", &session(&boss_cookie)).await;
        assert_eq!(
            jobs.status,
            StatusCode::OK,
            "a maintainer of the admin group"
        );
        let plain_cookie = log_in(&t, &plain, "/").await;
        let jobs = get_with(&t, "/api/jobs", &session(&plain_cookie)).await;
        assert_eq!(
            jobs.status,
            StatusCode::FORBIDDEN,
            "a developer of it is not"
        );

        // The level group's member sees the developer's interface; others the default.
        let dev_cookie = log_in(&t, &dev, "/").await;
        let me = get_with(&t, "/me", &session(&dev_cookie)).await.text();
        assert!(me.contains("value=\"developer\" selected"), "{me}");
        let me = get_with(&t, "/me", &session(&plain_cookie)).await.text();
        assert!(me.contains("value=\"end-user\" selected"), "{me}");
        // Choosing a level beyond one's roles is refused; within them, kept.
        let csrf = csrf_of(&me);
        let plain_roles = post_form(
            &t,
            "/me",
            &session(&plain_cookie),
            &[("csrf_token", &csrf), ("level", "script-author")],
            &[("origin", PUBLIC_URL)],
        )
        .await;
        assert_eq!(
            plain_roles.status,
            StatusCode::SEE_OTHER,
            "{}",
            plain_roles.text()
        );
        let me = get_with(&t, "/me", &session(&plain_cookie)).await.text();
        assert!(me.contains("value=\"script-author\" selected"), "{me}");
        // `plain` is a developer in `staff`, so developer is within reach; an unknown
        // level is not.
        let bad = post_form(
            &t,
            "/me",
            &session(&plain_cookie),
            &[("csrf_token", &csrf), ("level", "wizard")],
            &[("origin", PUBLIC_URL)],
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    }
);

#[tokio::test]
async fn cleanup_removes_ended_sessions() {
    let t = with_login(Backend::Sqlite, |s| {
        s.access.session_idle = Duration::from_millis(1);
    })
    .await
    .unwrap();
    let ada = t.gitlab_fake().add_user("ada");
    let cookie = log_in(&t, &ada, "/").await;
    let hash = digest(&["session", &cookie]);
    assert!(t.db().get_web_session(&hash).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let removed = t
        .db()
        .delete_stale_web_sessions(nbforge::storage::now_ms() - 1, 0)
        .await
        .unwrap();
    assert!(removed >= 1);
    assert!(t.db().get_web_session(&hash).await.unwrap().is_none());
}

on_both_databases!(
    the_interface_shows_each_level_its_tools,
    |backend: Backend| async move {
        let Some(t) = with_login(backend, |_| {}).await else {
            return;
        };
        let fake = t.gitlab_fake();
        let p = fake.add_project("lab/growth");
        let p = fake.project(&p.path_with_namespace).unwrap();
        let sha = publish(&t, fake, &p, "v1", &release_files()).await;
        t.db()
            .create_build("gitlab", "lab/growth", Some("main"), &sha, None)
            .await
            .unwrap();
        let launch = format!("/v2/gl/lab%2Fgrowth/{sha}");

        // The environment's status badge, and the launch page's snippets for it.
        let badge = t.get(&format!("/badge/gl/lab%2Fgrowth/{sha}.svg")).await;
        assert_eq!(badge.status, StatusCode::OK);
        assert_eq!(header(&badge, "content-type"), "image/svg+xml");
        assert!(
            badge.text().contains(">building</text>"),
            "{}",
            badge.text()
        );
        let unknown = t.get("/badge/gl/lab%2Fgrowth/no-such-branch.svg").await;
        assert!(unknown.text().contains(">unknown</text>"));
        assert_eq!(t.get("/badge.svg").await.status, StatusCode::OK);
        assert!(
            t.get(&launch)
                .await
                .text()
                .contains(&format!("{PUBLIC_URL}/badge/gl/lab%2Fgrowth/{sha}.svg"))
        );

        // Anonymous visitors (public level): the environment's state, no build log.
        let page = t.get(&launch).await.text();
        assert!(page.contains("being prepared"), "{page}");
        assert!(!page.contains("build log"), "{page}");
        assert!(!page.contains("My results"));

        // A developer in the project, at the developer level: the log link too.
        let dev = subject(&t, Who::Write, 4242).await;
        t.db()
            .upsert_member(&MemberRow {
                forge: ForgeKind::GitLab,
                scope: "project:lab/growth".into(),
                user_id: 4242,
                access_level: 30,
                expires_at: None,
                source: "hook".into(),
            })
            .await
            .unwrap();
        t.db()
            .set_chosen_level(4242, Some("developer"))
            .await
            .unwrap();
        let page = send(&t, &dev, "GET", &launch, "").await.text();
        assert!(page.contains("Follow the build log"), "{page}");
        assert!(page.contains("My results"), "{page}");
        // The same person at the end-user level sees run and results, not the log.
        t.db()
            .set_chosen_level(4242, Some("end-user"))
            .await
            .unwrap();
        let page = send(&t, &dev, "GET", &launch, "").await.text();
        assert!(!page.contains("build log"), "{page}");
        assert!(page.contains("My results"), "{page}");
    }
);
