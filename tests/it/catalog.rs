//! Publishing worksheets on tag push, the landing page, worksheet pages and forms.

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::support::fake_gitlab::{FakeGitLab, FakeProject};
use crate::support::{ADMIN_TOKEN, Backend, TestApp};

const ZERO: &str = "0000000000000000000000000000000000000000";
const GROWTH: &[u8] = include_bytes!("../data/notebooks/growth_curve.ipynb");
const HOSTILE: &[u8] = include_bytes!("../data/notebooks/hostile/xss.ipynb");

const LAUNCH: &str = r#"kind = "worksheet"
title = "Bacterial growth"
area = "Microbiology"

[[worksheet]]
path = "growth.ipynb"
title = "Growth curve"
description = "Logistic growth of a culture"

[[worksheet]]
path = "broken.ipynb"
title = "Broken one"

[[worksheet]]
path = "hostile.ipynb"
title = "Hostile outputs"
"#;

pub async fn app_for(fake: &FakeGitLab, backend: Backend) -> Option<TestApp> {
    let url = fake.url();
    let token = fake.token();
    TestApp::with_settings(backend, move |s| {
        s.forges.gitlab_url = Some(url);
        s.forges.gitlab_token = Some(token);
    })
    .await
}

/// Commits the example project and pushes tag `tag` through the webhook; runs the jobs.
pub async fn publish(
    t: &TestApp,
    fake: &FakeGitLab,
    p: &FakeProject,
    tag: &str,
    files: &[(&str, &[u8])],
) -> String {
    let sha = fake.commit(p, "main", files, &format!("release {tag}"));
    fake.tag(p, tag, &sha, Some("release"));
    let hook = fake.tag_push_payload(p, tag, ZERO, &sha);
    let res = t
        .gitlab(hook.event, &format!("tag-{tag}-{sha}"), hook.bytes())
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    t.run_jobs().await;
    t.assert_queue_empty().await;
    sha
}

pub fn release_files() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("launch.toml", LAUNCH.as_bytes()),
        ("growth.ipynb", GROWTH),
        ("broken.ipynb", b"{\"cells\": [ this is not json"),
        ("hostile.ipynb", HOSTILE),
    ]
}

pub async fn make_official(t: &TestApp, project: &str) {
    let req = Request::put(format!(
        "/api/projects/{}/official",
        project.replace('/', "%2F")
    ))
    .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
    .header("content-type", "application/json")
    .body(Body::from(r#"{"official": true}"#))
    .unwrap();
    let res = t.request(req).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

async fn post_form(t: &TestApp, path: &str, form: &[(&str, &str)]) -> crate::support::TestResponse {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let req = Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    t.request(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worksheet_page_form_validation_and_download() {
    let fake = FakeGitLab::start().await;
    let t = app_for(&fake, Backend::Sqlite).await.unwrap();
    let p = fake.add_project("lab/growth");
    publish(&t, &fake, &p, "v1", &release_files()).await;
    let url = "/w/lab/growth/v1/growth.ipynb";

    let page = t.get(url).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page
        .headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'none'"), "{csp}");
    let html = page.text();
    assert!(
        html.contains("<form") && html.contains("name=\"rate\""),
        "the parameter form"
    );
    assert!(
        html.contains("growth rate r per hour"),
        "help text from the comment"
    );
    assert!(html.contains("<img"), "the plot");
    assert!(
        !html.contains("np.linspace") && !html.contains("import numpy"),
        "no code is shown"
    );

    // An invalid value: 422 and the error next to its field; nothing else lost.
    let bad = post_form(
        &t,
        url,
        &[("_worksheet_form", "1"), ("rate", "fast"), ("hours", "48")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let html = bad.text();
    assert!(
        html.contains("rate") && html.contains("field-error"),
        "{html}"
    );
    assert!(
        html.contains("value=\"48\""),
        "the other value is kept: {html}"
    );

    // Unknown parameters are refused by name.
    let unknown = post_form(&t, url, &[("_worksheet_form", "1"), ("ratee", "1")]).await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unknown.text().contains("ratee"));

    // Valid values: a link to the parameterized notebook.
    let ok = post_form(
        &t,
        url,
        &[
            ("_worksheet_form", "1"),
            ("rate", "1.25"),
            ("hours", "48"),
            ("strain", "B. subtilis"),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let html = ok.text();
    let start = html
        .find("href=\"/w/lab/growth/v1/growth.ipynb?")
        .expect("download link")
        + 6;
    let link = html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let nb = t.get(&link).await;
    assert_eq!(nb.status, StatusCode::OK);
    let nb: serde_json::Value = nb.json();
    let injected = nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["metadata"]["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "injected-parameters"))
        })
        .expect("an injected-parameters cell");
    let src: String = match &injected["source"] {
        serde_json::Value::Array(lines) => lines.iter().filter_map(|l| l.as_str()).collect(),
        other => other.as_str().unwrap_or_default().to_owned(),
    };
    assert!(
        src.contains("rate = 1.25")
            && src.contains("hours = 48")
            && src.contains("strain = \"B. subtilis\""),
        "{src}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_outputs_never_carry_script() {
    let fake = FakeGitLab::start().await;
    let t = app_for(&fake, Backend::Sqlite).await.unwrap();
    let p = fake.add_project("lab/hostile");
    publish(&t, &fake, &p, "v1", &release_files()).await;
    let res = t.get("/w/lab/hostile/v1/hostile.ipynb").await;
    assert_eq!(res.status, StatusCode::OK);
    let html = res.text().to_lowercase();
    // `javascript:` may remain as visible text, never as a link or a source.
    for bad in [
        "<script",
        "onload=",
        "onerror=",
        "\"javascript:",
        "'javascript:",
        "=javascript:",
        "<iframe",
        "<object",
    ] {
        let at = html
            .find(bad)
            .map(|i| &html[i.saturating_sub(150)..(i + 80).min(html.len())]);
        assert!(at.is_none(), "{bad} reached the page: {at:?}");
    }
    assert!(res.headers.get("content-security-policy").is_some());
    assert_eq!(res.headers.get("x-frame-options").unwrap(), "DENY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_listing_needs_the_admin_token() {
    let fake = FakeGitLab::start().await;
    let t = app_for(&fake, Backend::Sqlite).await.unwrap();
    let req = Request::put("/api/projects/lab%2Fgrowth/official")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"official": true}"#))
        .unwrap();
    assert_eq!(t.request(req).await.status, StatusCode::UNAUTHORIZED);
    let req = Request::put("/api/projects/lab%2Fnone/official")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"official": true}"#))
        .unwrap();
    assert_eq!(t.request(req).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        t.get("/w/nobody/nothing").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_pages_for_pages_and_json_for_the_api() {
    let fake = FakeGitLab::start().await;
    let url = fake.url();
    let token = fake.token();
    let t = TestApp::with_settings(Backend::Sqlite, move |s| {
        s.forges.gitlab_url = Some(url);
        s.forges.gitlab_token = Some(token);
        s.server.max_body_bytes = 4096;
    })
    .await
    .unwrap();
    let p = fake.add_project("lab/growth");
    publish(&t, &fake, &p, "v1", &release_files()).await;

    // A page route: an HTML error page in the site's frame, with the CSP.
    let page = t.get("/w/lab/growth/v9").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let html = page.text();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        html.contains("<h1>Not found</h1>\n<p>No such version.</p>"),
        "{html}"
    );
    assert!(page.headers.get("content-security-policy").is_some());

    // An API route: JSON with the same status.
    let api = t.get("/api/builds/999999").await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.json(),
        serde_json::json!({ "error": "no build with that id" })
    );
    let req = Request::put("/api/projects/lab%2Fgrowth/official")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let bad = t.request(req).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["error"].is_string(), "{}", bad.text());

    // A form over the body limit: 413, as a page.
    let req = Request::post("/w/lab/growth/v1/growth.ipynb")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("strain={}", "x".repeat(8192))))
        .unwrap();
    let big = t.request(req).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(big.text().contains("<h1>Too large</h1>"), "{}", big.text());

    // The ingest benchmark's no-op route is not part of the service.
    let req = Request::post("/noop").body(Body::from("x")).unwrap();
    assert_eq!(t.request(req).await.status, StatusCode::NOT_FOUND);
}

/// Worksheet pages parse a notebook once (off the async runtime) and keep it; a tag
/// published again at another commit shows the new notebook, never the kept one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republished_worksheet_is_never_served_from_what_was_kept() {
    use tower::ServiceExt as _;
    let fake = FakeGitLab::start().await;
    let t = app_for(&fake, Backend::Sqlite).await.unwrap();
    let p = fake.add_project("lab/growth");
    publish(&t, &fake, &p, "v1", &release_files()).await;
    let router = nbforge::web::router(t.app.clone());
    let url = "/w/lab/growth/v1/growth.ipynb";
    let get = |router: axum::Router| async move {
        let res = router
            .oneshot(Request::get(url).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    };
    let first = get(router.clone()).await;
    assert!(first.contains("value=\"0.8\""), "{first}");
    assert!(get(router.clone()).await.contains("value=\"0.8\""));

    // The same tag moved to a commit whose default differs.
    let changed = String::from_utf8(GROWTH.to_vec())
        .unwrap()
        .replace("rate = 0.8", "rate = 0.6");
    let mut files = release_files();
    files.retain(|(name, _)| *name != "growth.ipynb");
    files.push(("growth.ipynb", changed.as_bytes()));
    fake.delete_tag(&p, "v1");
    publish(&t, &fake, &p, "v1", &files).await;
    let second = get(router.clone()).await;
    assert!(second.contains("value=\"0.6\""), "{second}");
}
