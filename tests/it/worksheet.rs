//! Worksheets from the outside: the parameter form and the page, the `nbforge render`
//! command, the benchmark, and parameterized notebooks executed by Jupyter. The model,
//! parameters, injection and rendering are tested next to their code in `src/worksheet/`.

use nbforge::cli::render::{RenderArgs, run};
use nbforge::worksheet::{self, FORM_MARKER, INJECTED_TAG, Notebook, RenderOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/notebooks")
}

fn load(name: &str) -> Notebook {
    let bytes = std::fs::read(corpus_dir().join(name)).unwrap();
    Notebook::from_slice(&bytes).unwrap()
}

fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn form_html(
    params: &[worksheet::Parameter],
    values: &HashMap<String, String>,
    errors: &[worksheet::FieldError],
    action: &str,
    method: &str,
) -> String {
    let form = nbforge::web::form::FormView::new(params, values, errors, action, method);
    nbforge::web::Templates::new().form(&form).unwrap()
}

#[test]
fn form_has_typed_labelled_inputs_with_help_and_errors() {
    let params = worksheet::parameters(&load("growth_curve.ipynb"));
    let submitted = form(&[("hours", "abc"), ("strain", "\"><script>x</script>")]);
    let errors = worksheet::validate(&params, &submitted).unwrap_err();
    let html = form_html(&params, &submitted, &errors, "/run?x=1&y=2", "post");
    assert!(
        html.starts_with("<form class=\"parameters\" action=\"/run?x=1&amp;y=2\" method=\"post\">")
    );
    assert!(html.contains(&format!("name=\"{FORM_MARKER}\"")));
    assert!(html.contains("<label for=\"param-rate\">rate"));
    assert!(html.contains("id=\"param-rate\" name=\"rate\" value=\"0.8\" step=\"any\""));
    assert!(
        html.contains("type=\"number\" id=\"param-hours\" name=\"hours\" value=\"abc\" step=\"1\"")
    );
    assert!(html.contains("aria-invalid=\"true\""));
    assert!(html.contains("id=\"param-hours-error\" role=\"alert\">expected a whole number"));
    assert!(html.contains("type=\"checkbox\" id=\"param-log_scale\" name=\"log_scale\" value=\"true\" aria-describedby=\"param-log_scale-help\">"));
    assert!(
        html.contains("<textarea id=\"param-replicates\" name=\"replicates\" rows=\"4\"")
            && html.contains(">1\n2\n3</textarea>")
    );
    assert!(html.contains("<p class=\"help\" id=\"param-rate-help\">growth rate r per hour</p>"));
    assert!(html.contains("aria-describedby=\"param-rate-help\""));
    assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""));
    assert!(!html.contains("<script"));

    let odd = worksheet::params::parse_parameters_source(
        "cfg = load_config()  # from disk\nflag = True\n",
    );
    let html = form_html(&odd, &HashMap::new(), &[], "/go", "GET");
    assert!(html.contains("method=\"get\""));
    assert!(html.contains("value=\"load_config()\" readonly disabled"));
    assert!(html.contains("Fixed value:"));
    assert!(html.contains("name=\"flag\" value=\"true\" checked"));
}

#[test]
fn page_is_standalone_with_csp_and_viewport() {
    let rendered = worksheet::render(&load("growth_curve.ipynb"), &RenderOptions::default());
    let page = nbforge::web::Templates::new()
        .standalone(
            rendered.title.as_deref().unwrap(),
            &Default::default(),
            rendered.body_html,
        )
        .unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<title>Bacterial growth curve</title>"));
    assert!(page.contains("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'none';"));
    assert!(!page.contains("frame-ancestors"), "ignored in a meta tag");
    assert!(nbforge::web::CSP.contains("frame-ancestors 'none'"));
    assert!(page.contains("name=\"viewport\" content=\"width=device-width, initial-scale=1\""));
    assert!(page.contains("@media (max-width: 48rem)"));
    assert!(!page.contains("<script"));

    // A page around hostile outputs carries the same policy.
    let bytes = std::fs::read(corpus_dir().join("hostile/xss.ipynb")).unwrap();
    let hostile = worksheet::render(
        &Notebook::from_slice(&bytes).unwrap(),
        &RenderOptions::default(),
    );
    let page = nbforge::web::Templates::new()
        .standalone("x", &Default::default(), hostile.body_html)
        .unwrap();
    assert!(page.contains("script-src 'none'"));
}

fn args(
    notebook: PathBuf,
    params: &[&str],
    output: Option<PathBuf>,
    notebook_out: Option<PathBuf>,
) -> RenderArgs {
    RenderArgs {
        notebook,
        params: params.iter().map(|s| s.to_string()).collect(),
        output,
        notebook_out,
        show_code: false,
        show_traceback: false,
    }
}

#[test]
fn cli_renders_and_writes_the_parameterized_notebook() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("out.html");
    let ipynb = dir.path().join("out.ipynb");
    let code = run(&args(
        corpus_dir().join("growth_curve.ipynb"),
        &["rate=1.5", "strain=B. subtilis", "replicates=7,8"],
        Some(html.clone()),
        Some(ipynb.clone()),
    ))
    .unwrap();
    assert_eq!(code, ExitCode::SUCCESS);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<dt>rate</dt><dd><code>1.5</code></dd>"));
    assert!(page.contains("data:image/png;base64,"));
    let nb = Notebook::from_slice(&std::fs::read(&ipynb).unwrap()).unwrap();
    let injected = &nb.cells[nb.find_tagged(INJECTED_TAG).unwrap()];
    assert_eq!(
        injected.source.text(),
        "# Parameters\nrate = 1.5\nstrain = \"B. subtilis\"\nreplicates = [7, 8]\n"
    );
    assert_eq!(
        nb.find_tagged(INJECTED_TAG),
        nb.find_tagged("parameters").map(|i| i + 1)
    );

    // Bad values: exit code 2, nothing written.
    let bad_html = dir.path().join("bad.html");
    let code = run(&args(
        corpus_dir().join("growth_curve.ipynb"),
        &["hours=soon", "nope=1", "novalue"],
        Some(bad_html.clone()),
        None,
    ))
    .unwrap();
    assert_eq!(code, ExitCode::from(2));
    assert!(!bad_html.exists());

    // A broken notebook is an error that names the file and the place.
    let broken = dir.path().join("broken.ipynb");
    std::fs::write(&broken, "{\n \"cells\": [}\n").unwrap();
    let err = run(&args(broken, &[], Some(dir.path().join("x.html")), None)).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("broken.ipynb") && msg.contains("line 2, column"),
        "{msg}"
    );
}

#[test]
fn bench_renders_every_corpus_notebook() {
    let report = nbforge::bench::worksheets::bench(&corpus_dir(), 2, false).unwrap();
    // The folder is searched recursively: `hostile/` and `papermill/` are included.
    for notebook in [
        "growth_curve.ipynb",
        "hostile/xss.ipynb",
        "papermill/growth_curve.prepared.ipynb",
    ] {
        assert!(
            report
                .rows
                .iter()
                .any(|r| r.notebook == Path::new(notebook)),
            "{notebook}"
        );
    }
    assert!(
        report
            .rows
            .iter()
            .all(|r| r.html_bytes > 500 && r.nbconvert.is_none())
    );
    assert!(report.to_string().contains("notebooks, 2 iterations"));
    assert!(nbforge::bench::worksheets::bench(Path::new("/nonexistent-corpus"), 1, false).is_err());
}

#[test]
fn bench_compares_with_nbconvert_when_installed() {
    let available = std::process::Command::new("jupyter")
        .args(["nbconvert", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        crate::support::missing_service("`jupyter nbconvert` (apt-get install jupyter-nbconvert)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        corpus_dir().join("errors.ipynb"),
        dir.path().join("errors.ipynb"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    std::fs::copy(
        corpus_dir().join("streams.ipynb"),
        dir.path().join("nested/streams.ipynb"),
    )
    .unwrap();
    let report = nbforge::bench::worksheets::bench(dir.path(), 2, true).unwrap();
    assert_eq!(report.rows.len(), 2);
    assert_eq!(report.rows[1].notebook, Path::new("nested/streams.ipynb"));
    assert!(report.rows.iter().all(|r| r.nbconvert.is_some()));
    assert!(report.speedup().is_some());
    assert_eq!(report.in_process_unavailable, None);
    assert!(
        report.rows.iter().all(|r| r.in_process.is_some()),
        "{report}"
    );
    assert!(report.in_process_speedup().is_some());
    let text = report.to_string();
    assert!(text.contains("in-process: nbconvert HTMLExporter in one Python process"));
    assert!(text.contains("process per notebook: `jupyter nbconvert"));
}

/// The parameterized notebook runs unchanged under `jupyter execute` and the kernel sees
/// exactly the submitted values (needs Debian's jupyter-nbconvert/python3-nbclient and
/// python3-ipykernel; skipped with a message when they are missing, a failure in CI).
#[test]
fn parameterized_notebook_executes_with_the_new_values() {
    let available = std::process::Command::new("jupyter")
        .args(["execute", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        crate::support::missing_service(
            "`jupyter execute` (apt-get install python3-nbclient python3-ipykernel)",
        );
        return;
    }
    let check = "assert hours == 6 and isinstance(hours, int), hours\n\
        assert rate == 1e-05, rate\n\
        assert strain == 'K-12 \"wild\"\\\\n \\u00e9\\U0001F600\\t', repr(strain)\n\
        assert replicates == [1, -2, 3], replicates\n\
        assert log_scale is True\n\
        assert note is None\n";
    let nb = Notebook::from_json(&serde_json::json!({
        "nbformat": 4, "nbformat_minor": 4,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": null, "outputs": [],
             "source": "hours = 24\nrate = 0.8\nstrain = 'x'\nreplicates = [1]\nlog_scale = False\nnote: str | None = 'n'\n"},
            {"cell_type": "code", "metadata": {}, "execution_count": null, "outputs": [], "source": check}
        ]
    }).to_string()).unwrap();
    let submitted = form(&[
        ("hours", "6"),
        ("rate", "0.00001"),
        ("strain", "K-12 \"wild\"\\n é😀\t"),
        ("replicates", "1, -2\n3"),
        ("log_scale", "on"),
        ("note", ""),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let run_nb = |nb: &Notebook, name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, nb.to_json_pretty()).unwrap();
        std::process::Command::new("jupyter")
            .arg("execute")
            .arg(&path)
            .output()
            .unwrap()
    };
    let original = run_nb(&nb, "original.ipynb");
    assert!(
        !original.status.success(),
        "the check cell fails with the defaults"
    );
    let parameterized = worksheet::parameterize_with(&nb, &submitted).unwrap();
    let out = run_nb(&parameterized, "parameterized.ipynb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
