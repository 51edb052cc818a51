//! The worksheet flow in a real headless Chromium: a tag is pushed through the fake
//! GitLab, the landing page lists the worksheet, its card leads to the worksheet with
//! its outputs and parameter form, and an invalid value comes back with its error; a
//! logged-in user runs a worksheet and follows it to its result.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

use crate::catalog::{app_for, make_official, publish, release_files};
use crate::support::fake_gitlab::FakeGitLab;
use crate::support::process::free_port;
use crate::support::{Backend, missing_service};

/// A chromedriver process, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Option<Driver> {
    let chromium =
        std::env::var("NBFORGE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        missing_service("Chromium (NBFORGE_TEST_CHROMIUM)");
        return None;
    }
    let port = free_port();
    let child = match Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            missing_service(&format!("chromedriver ({e})"));
            return None;
        }
    };
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = reqwest::Client::new();
    while Instant::now() < deadline {
        if client
            .get(format!("{}/status", driver.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Some(driver);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

/// A headless Chromium session through `driver`, with a fresh profile (kept alive by the
/// returned folder).
async fn browser(driver: &Driver) -> (fantoccini::Client, tempfile::TempDir) {
    let profile = tempfile::tempdir().unwrap();
    let chromium =
        std::env::var("NBFORGE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=412,915",
                format!("--user-data-dir={}", profile.path().display())
            ]
        }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    (c, profile)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_card_worksheet_form_and_error_in_chromium() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let fake = FakeGitLab::start().await;
    let t = app_for(&fake, Backend::Sqlite).await.unwrap();
    let p = fake.add_project("lab/growth");
    publish(&t, &fake, &p, "v1", &release_files()).await;
    make_official(&t, "lab/growth").await;

    // Serve the app on a real port for the browser.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server =
        tokio::spawn(axum::serve(listener, nbforge::web::router(t.app.clone())).into_future());

    let (c, _profile) = browser(&driver).await;

    // The landing page lists the official worksheet under its area.
    c.goto(&format!("{base}/")).await.unwrap();
    let area = c
        .find(Locator::Css("section.area h2"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(area, "Microbiology");
    let card = c.find(Locator::LinkText("Growth curve")).await.unwrap();
    card.click().await.unwrap();

    // The worksheet: its outputs (the plot) and its form, and no code.
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("form.parameters"))
        .await
        .unwrap();
    let url = c.current_url().await.unwrap();
    assert!(
        url.as_str().ends_with("/w/lab/growth/v1/growth.ipynb"),
        "{url}"
    );
    let plots = c.find_all(Locator::Css("article img")).await.unwrap();
    assert!(!plots.is_empty(), "the growth curve plot is shown");
    let source = c.source().await.unwrap();
    assert!(!source.contains("import numpy"), "no code on the page");

    // An invalid value (the browser accepts any text in a list field; the server checks
    // the numbers) comes back with its error next to the field.
    let replicates = c
        .find(Locator::Css("textarea[name=replicates]"))
        .await
        .unwrap();
    replicates.clear().await.unwrap();
    replicates.send_keys("1, two, 3").await.unwrap();
    c.find(Locator::Css("form.parameters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(".field.invalid .field-error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!error.is_empty(), "an error message");
    let field = c
        .find(Locator::Css(".field.invalid"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        field.contains("replicates"),
        "the error is on the replicates field: {field}"
    );
    let kept = c
        .find(Locator::Css("textarea[name=replicates]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(
        kept.as_deref(),
        Some("1, two, 3"),
        "the submitted value is kept for correction"
    );
    std::fs::write(
        std::env::temp_dir().join("nbforge-worksheet-error.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();

    // Corrected values are accepted.
    let replicates = c
        .find(Locator::Css("textarea[name=replicates]"))
        .await
        .unwrap();
    replicates.clear().await.unwrap();
    replicates.send_keys("1, 2, 3").await.unwrap();
    c.find(Locator::Css("form.parameters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let status = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("p.ok"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.contains("valid"), "{status}");

    c.close().await.unwrap();
    server.abort();
}

/// A scenario against the fake GitLab whose nbforge will be served on a loopback port
/// (the listener, and its base URL), with nbforge registered there as an OAuth app.
async fn with_login_at_a_port() -> (
    crate::support::scenario::Scenario,
    tokio::net::TcpListener,
    String,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let client_id = format!("nbforge-browser-{}", uuid::Uuid::new_v4().simple());
    let secret = nbforge::config::Secret::new("gloas-browser-test-secret");
    let (id, sec, public) = (client_id.clone(), secret.clone(), base.clone());
    let t = crate::support::scenario::Scenario::gitlab_with(Backend::Sqlite, move |s| {
        s.server.public_url = format!("{public}/").parse().unwrap();
        s.access.oauth_client_id = Some(id);
        s.access.oauth_client_secret = Some(sec);
    })
    .await
    .unwrap();
    t.gitlab_fake()
        .register_oauth_app(&client_id, &secret, &format!("{base}/oauth/callback"));
    (t, listener, base)
}

/// Login in a real browser: a private project's worksheet sends an anonymous visitor to
/// GitLab's authorize page; after approving, the worksheet opens with the user named in
/// the header; logging out and coming back leads to the login again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_private_worksheet_and_logout_in_chromium() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let (t, listener, base) = with_login_at_a_port().await;
    let fake = t.gitlab_fake();
    let ada = fake.add_user("ada");
    fake.sign_in(Some(&ada));
    let p = fake.add_project("lab/secret");
    fake.set_visibility(&p, "private");
    fake.add_member("lab/secret", &ada, 20);
    let p = fake.project("lab/secret").unwrap();
    publish(&t, fake, &p, "v1", &release_files()).await;
    t.db()
        .upsert_member(&nbforge::storage::MemberRow {
            forge: nbforge::events::ForgeKind::GitLab,
            scope: "project:lab/secret".into(),
            user_id: ada.id,
            access_level: 20,
            expires_at: None,
            source: "hook".into(),
        })
        .await
        .unwrap();
    let server =
        tokio::spawn(axum::serve(listener, nbforge::web::router(t.app.app.clone())).into_future());

    let (c, _profile) = browser(&driver).await;

    let page = format!("{base}/w/lab/secret/v1/growth.ipynb");
    c.goto(&page).await.unwrap();
    // Sent to GitLab to authorize nbforge.
    let button = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("authorize"))
        .await
        .unwrap();
    let url = c.current_url().await.unwrap();
    assert_eq!(url.path(), "/oauth/authorize", "{url}");
    button.click().await.unwrap();

    // Back on the private worksheet, logged in.
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("form.parameters"))
        .await
        .unwrap();
    assert_eq!(c.current_url().await.unwrap().as_str(), page);
    let who = c
        .find(Locator::Css("header.site nav.who a[href='/me']"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(who, "ada");

    // Log out: back to the landing page, and the worksheet asks for a login again.
    c.find(Locator::Css("header.site nav.who button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let landed = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_url(&url::Url::parse(&format!("{base}/")).unwrap())
        .await;
    if landed.is_err() {
        panic!(
            "not back on the landing page: {} {}",
            c.current_url().await.unwrap(),
            c.source().await.unwrap()
        );
    }
    fake.sign_in(None);
    c.goto(&page).await.unwrap();
    let url = c.current_url().await.unwrap();
    assert_eq!(url.path(), "/oauth/authorize", "sent to log in: {url}");
    let text = c.source().await.unwrap();
    assert!(
        !text.contains("Growth curve"),
        "nothing of the worksheet shows"
    );

    c.close().await.unwrap();
    server.abort();
}

/// A notebook with one empty code cell, for JupyterLab to run a cell in.
const ONE_CELL: &str = r#"{"cells": [{"cell_type": "code", "execution_count": null, "id": "c1", "metadata": {}, "outputs": [], "source": ""}], "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}"#;

/// ada, logged in through the fake GitLab in headless Chromium, against a served nbforge
/// whose environments build, with `files` pushed to `lab/<prefix><random>` and tagged `v1`
/// (built and published). The server stops, and the project's sessions, homes and images
/// go, when it is dropped.
struct LoggedIn {
    t: crate::support::scenario::Scenario,
    c: fantoccini::Client,
    base: String,
    project: String,
    name: String,
    ada_id: i64,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _profile: tempfile::TempDir,
    _cleanup: crate::launch::Cleanup,
    _driver: Driver,
}

impl Drop for LoggedIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn logged_in_with_project(prefix: &str, files: &[(&str, &[u8])]) -> Option<LoggedIn> {
    let driver = start_driver().await?;
    let (t, listener, base) = with_login_at_a_port().await;
    let t = t.with_environments();
    if !t.docker_ready().await {
        return None;
    }
    let fake = t.gitlab_fake();
    fake.randomize_ids();
    let ada = fake.add_user("ada");
    fake.sign_in(Some(&ada));
    let name = format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let project = format!("lab/{name}");
    let cleanup = crate::launch::Cleanup {
        project: project.clone(),
        users: vec![ada.id],
    };
    t.push(&project, files).await;
    t.tag(&project, "v1").await;
    t.run_jobs().await;
    let server =
        tokio::spawn(axum::serve(listener, nbforge::web::router(t.app.app.clone())).into_future());
    let (c, profile) = browser(&driver).await;
    c.goto(&format!("{base}/login?next=/me")).await.unwrap();
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("authorize"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("header.site nav.who a[href='/me']"))
        .await
        .unwrap();
    Some(LoggedIn {
        t,
        c,
        base,
        project,
        name,
        ada_id: ada.id,
        server,
        _profile: profile,
        _cleanup: cleanup,
        _driver: driver,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_badge_opens_jupyterlab_that_runs_a_cell_in_chromium() {
    // A notebook project (worksheet projects open their published worksheets instead),
    // opening try.ipynb.
    let launch = "kind = \"notebook\"\ndefault = \"try.ipynb\"\ntitle = \"Growth\"\n\n[[worksheet]]\npath = \"growth.ipynb\"\n";
    let mut files: Vec<(&str, &[u8])> = release_files()
        .into_iter()
        .filter(|(p, _)| *p != "launch.toml")
        .collect();
    files.push(("launch.toml", launch.as_bytes()));
    files.push(("requirements.txt", b"# the base has all\n"));
    files.push(("try.ipynb", ONE_CELL.as_bytes()));
    let Some(s) = logged_in_with_project("lab", &files).await else {
        return;
    };
    let (t, c, base, project, name) = (&s.t, &s.c, &s.base, &s.project, &s.name);
    // ada works at the developer level (a developer somewhere), and developers see the
    // launch badge.
    t.db()
        .upsert_member(&nbforge::storage::MemberRow {
            forge: nbforge::events::ForgeKind::GitLab,
            scope: "project:lab/never".into(),
            user_id: s.ada_id,
            access_level: 30,
            expires_at: None,
            source: "hook".into(),
        })
        .await
        .unwrap();
    t.db()
        .set_chosen_level(s.ada_id, Some("developer"))
        .await
        .unwrap();
    // JupyterLab's desktop layout.
    c.set_window_size(1280, 900).await.unwrap();

    // The project page's badge starts the launch; its page follows the progress and opens
    // JupyterLab.
    c.goto(&format!("{base}/w/{project}")).await.unwrap();
    let badge = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("p.launch-badge a"))
        .await;
    let badge = match badge {
        Ok(b) => b,
        Err(_) => panic!("no launch badge: {}", c.source().await.unwrap()),
    };
    badge.click().await.unwrap();
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("launch-phase"))
        .await
        .unwrap();
    // JupyterLab opens the project's default notebook (launch.toml's `default`).
    let lab = c
        .wait()
        .at_most(Duration::from_secs(120))
        .for_element(Locator::Css(".jp-Notebook .jp-Cell"))
        .await;
    if lab.is_err() {
        panic!(
            "JupyterLab did not open: {} {}",
            c.current_url().await.unwrap(),
            c.source().await.unwrap()
        );
    }
    let url = c.current_url().await.unwrap();
    assert!(url.path().starts_with("/user/ada/"), "{url}");
    assert!(url.path().contains(&format!("/lab/tree/{name}")), "{url}");
    // JupyterLab may show the folder in the URL while the notebook opens: the notebook's
    // own URL makes sure try.ipynb is the one in front.
    if !url.path().ends_with("/try.ipynb") {
        let at = url.as_str().find("/lab/").unwrap();
        c.goto(&format!(
            "{}/lab/tree/{name}/try.ipynb",
            &url.as_str()[..at]
        ))
        .await
        .unwrap();
    }

    // Type 1+1 in the notebook's code cell and run it.
    let editor = c
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css(".jp-Notebook .jp-CodeCell .cm-content"))
        .await
        .unwrap();
    // The kernel must be idle before the cell runs.
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::XPath(
            "//*[contains(@class,'jp-Notebook-ExecutionIndicator') and @data-status='idle']",
        ))
        .await
        .ok();
    // Focus the cell's editor (a click on the editor area), type, and run with Shift+Enter.
    // JupyterLab may still be laying the notebook out (or covering it while it starts the
    // kernel), and an editor re-rendered while typed in may lose keys: try again until the
    // cell holds exactly `1+1`.
    drop(editor);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let typed = async {
            let area = c
                .find(Locator::Css(
                    ".jp-Notebook .jp-CodeCell .jp-InputArea-editor",
                ))
                .await
                .ok()?;
            area.click().await.ok()?;
            // Ctrl+A, Backspace: whatever an earlier try left.
            let focused = c.active_element().await.ok()?;
            focused.send_keys("\u{E009}a\u{E009}\u{E003}").await.ok()?;
            c.active_element().await.ok()?.send_keys("1+1").await.ok()?;
            let text = c
                .find(Locator::Css(".jp-Notebook .jp-CodeCell .cm-content"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (text.trim() == "1+1").then_some(())
        }
        .await;
        if typed.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cell never held 1+1: {}",
            c.source().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The editor re-renders as it is typed in: run from whatever has the focus now.
    c.active_element()
        .await
        .unwrap()
        .send_keys("\u{E008}\u{E007}")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tried = Instant::now();
    loop {
        let outputs = c
            .find_all(Locator::Css(".jp-OutputArea-output"))
            .await
            .unwrap_or_default();
        let mut texts = Vec::new();
        for o in &outputs {
            texts.push(o.text().await.unwrap_or_default());
        }
        if texts.iter().any(|t| t.trim() == "2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no output 2: {texts:?} {}",
            c.source().await.unwrap()
        );
        // A Shift+Enter that a busy JupyterLab lost: run the first cell (still `1+1`)
        // again; running it twice gives the same output.
        if tried.elapsed() > Duration::from_secs(20) {
            tried = Instant::now();
            if let Ok(area) = c
                .find(Locator::Css(
                    ".jp-Notebook .jp-CodeCell .jp-InputArea-editor",
                ))
                .await
                && area.click().await.is_ok()
                && let Ok(focused) = c.active_element().await
            {
                let _ = focused.send_keys("\u{E008}\u{E007}").await;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.clone().close().await.unwrap();
}

/// A worksheet whose second code cell waits, so that its progress can be watched (with the
/// injected parameters, it is the third of four).
const RUN_SHEET: &str = r###"{"cells": [
 {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": "# Doubling\n\nTwice the rate."},
 {"cell_type": "code", "execution_count": null, "id": "p1", "metadata": {"tags": ["parameters"]}, "outputs": [], "source": "rate = 1.5  # per hour"},
 {"cell_type": "markdown", "id": "m2", "metadata": {}, "source": "## Waiting a little"},
 {"cell_type": "code", "execution_count": null, "id": "c1", "metadata": {}, "outputs": [], "source": "import time\ntime.sleep(6)"},
 {"cell_type": "markdown", "id": "m3", "metadata": {}, "source": "## Result"},
 {"cell_type": "code", "execution_count": null, "id": "c2", "metadata": {}, "outputs": [], "source": "print(f\"doubled={rate * 2}\")"}
], "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}"###;

/// Run in a real browser: a logged-in user opens a worksheet, changes a value and presses
/// Run; the run's page follows the cells as they execute, then shows the result computed
/// from the new value; My results lists the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worksheet_run_from_the_form_to_my_results_in_chromium() {
    let launch = "kind = \"worksheet\"\ntitle = \"Doubling\"\n\n[[worksheet]]\npath = \"double.ipynb\"\ntitle = \"Doubling\"\n";
    let files: Vec<(&str, &[u8])> = vec![
        ("launch.toml", launch.as_bytes()),
        ("requirements.txt", b"# the base has all\n"),
        ("double.ipynb", RUN_SHEET.as_bytes()),
    ];
    let Some(s) = logged_in_with_project("runs", &files).await else {
        return;
    };
    let (t, c, base, project) = (&s.t, &s.c, &s.base, &s.project);

    // The worksheet's form: a new rate, then Run.
    c.goto(&format!("{base}/w/{project}/v1/double.ipynb"))
        .await
        .unwrap();
    let rate = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("form.parameters [name=rate]"))
        .await;
    let rate = match rate {
        Ok(r) => r,
        Err(_) => panic!("no form: {}", c.source().await.unwrap()),
    };
    rate.clear().await.unwrap();
    rate.send_keys("21").await.unwrap();
    c.find(Locator::Css("form.parameters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The run's page, while the run's job executes beside the browser: it shows the cell
    // that waits, under its heading, then the result.
    let watch = async {
        c.wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Id("run-progress"))
            .await
            .unwrap();
        let run_url = c.current_url().await.unwrap();
        assert!(run_url.path().starts_with("/runs/"), "{run_url}");
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut seen = Vec::new();
        loop {
            if let Ok(p) = c.find(Locator::Id("run-progress")).await
                && let Ok(text) = p.text().await
                && !text.is_empty()
                && seen.last() != Some(&text)
            {
                seen.push(text);
            }
            if c.find(Locator::Css(".run-state.state-succeeded"))
                .await
                .is_ok()
            {
                break;
            }
            if c.find(Locator::Css(".run-state.state-failed"))
                .await
                .is_ok()
            {
                panic!("the run failed: {}", c.source().await.unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "the run did not finish: {seen:?} {}",
                c.source().await.unwrap()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            seen.iter()
                .any(|s| s.contains("cell 3 of 4") && s.contains("Waiting a little")),
            "the progress showed the waiting cell: {seen:?}"
        );
        run_url
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let jobs = async {
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            t.app.run_jobs().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (run_url, ()) = tokio::join!(
        async {
            let url = watch.await;
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            url
        },
        jobs
    );
    let page = c.source().await.unwrap();
    assert!(page.contains("doubled=42"), "the result of rate 21: {page}");
    assert!(!page.contains("rate * 2"), "no code on the result page");

    // My results lists it, and its link opens the run.
    c.goto(&format!("{base}/me/results")).await.unwrap();
    let link = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(&format!("a[href='{}']", run_url.path())))
        .await;
    match link {
        Ok(l) => l.click().await.unwrap(),
        Err(_) => panic!(
            "{} is not on My results: {}",
            run_url.path(),
            c.source().await.unwrap()
        ),
    }
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(".run-state.state-succeeded"))
        .await
        .unwrap();
    c.clone().close().await.unwrap();
}
