//! Worksheets: reading real notebooks, parameters, papermill-compatible injection,
//! rendering without code, sanitizing untrusted outputs, the form, the page and the CLI.

use nbforge::worksheet::{
    self, FORM_MARKER, INJECTED_TAG, Notebook, NotebookError, ParamType, ParamValue, RenderOptions,
    Values,
    cli::{RenderArgs, run},
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/notebooks")
}

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ipynb"))
        .collect();
    files.sort();
    files
}

fn load(name: &str) -> Notebook {
    let bytes = std::fs::read(corpus_dir().join(name)).unwrap();
    Notebook::from_slice(&bytes).unwrap()
}

fn render(name: &str) -> String {
    worksheet::render(&load(name), &RenderOptions::default()).body_html
}

fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn corpus_is_real_and_every_notebook_round_trips_byte_for_byte() {
    let files = corpus();
    assert!(files.len() >= 8, "corpus has {} notebooks", files.len());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() < 300 * 1024, "{} is too large", path.display());
        let nb = Notebook::from_json(&text).unwrap();
        // nbformat's writer output is reproduced exactly (sorted keys, 1-space indent,
        // sources and text outputs split into lines).
        let written = nb.to_json_pretty();
        assert_eq!(
            written,
            text,
            "{} changed when written back",
            path.display()
        );
    }
}

#[test]
fn unknown_fields_and_metadata_survive_a_round_trip() {
    let text = r##"{
      "nbformat": 4, "nbformat_minor": 2, "x_top": {"keep": [1, 2]},
      "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {"model_name": "IntSliderModel"}}}},
                   "celltoolbar": "Tags", "custom": {"deep": {"n": null}}},
      "cells": [
        {"cell_type": "code", "execution_count": null, "metadata": {"collapsed": true, "scrolled": "auto"},
         "source": "x = 1", "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi\n", "x_out": 3}],
         "x_cell": "kept"},
        {"cell_type": "markdown", "metadata": {}, "source": ["# T\n", "body"],
         "attachments": {"a.png": {"image/png": "iVBORw0KGgo="}}}
      ]}"##;
    let nb = Notebook::from_json(text).unwrap();
    let again = Notebook::from_json(&nb.to_json_pretty()).unwrap();
    assert_eq!(again, nb);
    let written: serde_json::Value = serde_json::from_str(&nb.to_json_pretty()).unwrap();
    assert_eq!(written["x_top"]["keep"][1], 2);
    assert_eq!(written["metadata"]["celltoolbar"], "Tags");
    assert!(written["metadata"]["custom"]["deep"]["n"].is_null());
    assert_eq!(
        written["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]["abc"]
            ["model_name"],
        "IntSliderModel"
    );
    assert_eq!(written["cells"][0]["x_cell"], "kept");
    assert!(written["cells"][0]["execution_count"].is_null());
    assert_eq!(written["cells"][0]["outputs"][0]["x_out"], 3);
    assert_eq!(written["cells"][0]["metadata"]["scrolled"], "auto");
    assert!(written["cells"][1].get("execution_count").is_none());
    assert_eq!(
        written["cells"][1]["attachments"]["a.png"]["image/png"],
        "iVBORw0KGgo="
    );
}

#[test]
fn broken_notebooks_give_located_errors() {
    let err =
        Notebook::from_json("{\"nbformat\": 4,\n \"cells\": [\n  {\"cell_type\": \"code\",}\n]}")
            .unwrap_err();
    match &err {
        NotebookError::Json { line, column, .. } => assert_eq!((*line, *column), (3, 24)),
        other => panic!("expected a JSON error, got {other:?}"),
    }
    assert!(err.to_string().contains("line 3, column 24"), "{err}");

    let err = Notebook::from_json(
        "{\"nbformat\": 4, \"nbformat_minor\": 4, \"metadata\": {}, \"cells\": [\n {\"cell_type\": \"markdown\", \"source\": \"a\"},\n {\"cell_type\": \"code\", \"source\": 42}\n]}",
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            NotebookError::Cell {
                index: 1,
                line: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("cell 1"), "{err}");

    assert!(Notebook::from_json("").is_err());
    assert!(Notebook::from_json("[]").is_err());
    assert!(Notebook::from_slice(&[0xff, 0xfe, 0x00]).is_err());
}

#[test]
fn parameters_are_read_from_the_tagged_cell() {
    let params = worksheet::parameters(&load("growth_curve.ipynb"));
    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "rate",
            "capacity",
            "hours",
            "strain",
            "log_scale",
            "replicates"
        ]
    );
    let rate = &params[0];
    assert_eq!(rate.kind, ParamType::Float);
    assert_eq!(rate.default, ParamValue::Float(0.8));
    assert_eq!(rate.help.as_deref(), Some("growth rate r per hour"));
    assert_eq!(params[1].annotation.as_deref(), Some("float"));
    assert_eq!(params[1].default, ParamValue::Float(1.6));
    assert_eq!(params[2].kind, ParamType::Int);
    assert_eq!(params[3].default, ParamValue::Str("E. coli K-12".into()));
    assert_eq!(params[4].kind, ParamType::Bool);
    assert_eq!(params[5].kind, ParamType::List(Box::new(ParamType::Int)));
    assert!(params.iter().all(|p| p.supported.is_ok()));

    let params = worksheet::parameters(&load("expression_report.ipynb"));
    let genes = params.iter().find(|p| p.name == "genes").unwrap();
    assert_eq!(genes.kind, ParamType::List(Box::new(ParamType::Str)));
    let max_points = params.iter().find(|p| p.name == "max_points").unwrap();
    assert_eq!(max_points.default, ParamValue::Int(2000));
    assert!(worksheet::parameters(&load("errors.ipynb")).is_empty());
}

#[test]
fn odd_parameter_cells_give_read_only_fields_never_a_panic() {
    let src = "import numpy as np\n\
        a = np.arange(3)  # an array\n\
        b = {'k': 1}\n\
        c = 1 + 2\n\
        d, e = 1, 2\n\
        f = f\"x{c}\"\n\
        g = 'unterminated\n\
        h: Path = 'data.csv'\n\
        i: Optional[int] = None  # optional count\n\
        j = [1, 'a']\n\
        k = 99999999999999999999999\n\
        l: int = 'text'\n\
        m = [\n    1,  # first\n    2,\n]  # multi-line list\n\
        n = \"\"\"multi\nline\"\"\"\n\
        o = b'bytes'\n\
        p = 1.5e3\n\
        q = (4)\n\
        r: float | None = 2\n\
        x = 1\nx = 2  # reassigned\n";
    let params = worksheet::params::parse_parameters_source(src);
    let get = |n: &str| {
        params
            .iter()
            .find(|p| p.name == n)
            .unwrap_or_else(|| panic!("no {n}"))
    };
    for name in ["a", "b", "c", "f", "g", "h", "j", "k", "l", "o"] {
        let reason = get(name).supported.as_ref().unwrap_err();
        assert!(!reason.is_empty(), "{name}");
    }
    assert!(
        get("a")
            .supported
            .as_ref()
            .unwrap_err()
            .contains("np.arange(3)")
    );
    assert_eq!(get("a").help.as_deref(), Some("an array"));
    assert!(get("h").supported.as_ref().unwrap_err().contains("Path"));
    assert!(
        !params
            .iter()
            .any(|p| p.name == "d" || p.name == "e" || p.name == "np")
    );
    let i = get("i");
    assert_eq!(
        (i.kind.clone(), i.optional, i.default.clone()),
        (ParamType::Int, true, ParamValue::None)
    );
    assert_eq!(
        get("m").default,
        ParamValue::List(vec![ParamValue::Int(1), ParamValue::Int(2)])
    );
    assert_eq!(get("m").help.as_deref(), Some("multi-line list"));
    assert_eq!(get("n").default, ParamValue::Str("multi\nline".into()));
    assert_eq!(get("p").default, ParamValue::Float(1500.0));
    assert_eq!(get("q").default, ParamValue::Int(4));
    assert_eq!(get("r").default, ParamValue::Float(2.0));
    assert!(get("r").optional);
    assert_eq!(get("x").default, ParamValue::Int(2));
    assert_eq!(params.iter().filter(|p| p.name == "x").count(), 1);

    // Every prefix of the source (cut anywhere) parses without panicking.
    for (i, _) in src.char_indices() {
        let _ = worksheet::params::parse_parameters_source(&src[..i]);
    }
}

#[test]
fn form_values_are_validated_with_errors_naming_the_parameter() {
    let params = worksheet::parameters(&load("growth_curve.ipynb"));
    let values = worksheet::validate(
        &params,
        &form(&[
            ("rate", "1.25"),
            ("hours", " 48 "),
            ("strain", "B. subtilis \"168\""),
            ("replicates", "4, 5\n6"),
            (FORM_MARKER, "1"),
        ]),
    )
    .unwrap();
    assert_eq!(values.get("rate"), Some(&ParamValue::Float(1.25)));
    assert_eq!(values.get("hours"), Some(&ParamValue::Int(48)));
    assert_eq!(
        values.get("strain"),
        Some(&ParamValue::Str("B. subtilis \"168\"".into()))
    );
    // An unchecked checkbox is not submitted: with the form marker it means False.
    assert_eq!(values.get("log_scale"), Some(&ParamValue::Bool(false)));
    assert_eq!(
        values.get("replicates"),
        Some(&ParamValue::List(vec![
            ParamValue::Int(4),
            ParamValue::Int(5),
            ParamValue::Int(6)
        ]))
    );
    assert_eq!(
        values.get("capacity"),
        None,
        "missing fields keep their default"
    );

    let errors = worksheet::validate(
        &params,
        &form(&[
            ("rate", "fast"),
            ("hours", "2.5"),
            ("colour", "red"),
            ("log_scale", "maybe"),
            ("replicates", "1, x"),
        ]),
    )
    .unwrap_err();
    let named: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        named,
        ["colour", "rate", "hours", "log_scale", "replicates"]
    );
    assert!(
        errors[0].to_string().contains("parameter `colour`"),
        "{}",
        errors[0]
    );
    assert!(errors[1].message.contains("fast"));
    assert!(errors[2].message.contains("whole number"));

    let odd = worksheet::params::parse_parameters_source("a = np.ones(2)\nb: Optional[int] = 3\n");
    let errors = worksheet::validate(&odd, &form(&[("a", "1")])).unwrap_err();
    assert!(errors[0].message.contains("cannot be set"), "{}", errors[0]);
    let values = worksheet::validate(&odd, &form(&[("b", "")])).unwrap();
    assert_eq!(values.get("b"), Some(&ParamValue::None));
}

#[test]
fn injected_cell_follows_papermill() {
    let nb = load("growth_curve.ipynb");
    let mut values = Values::default();
    values.insert("rate", ParamValue::Float(1.0));
    values.insert(
        "strain",
        ParamValue::Str("K-12 \"wild\" type\\n\u{e9}".into()),
    );
    values.insert("log_scale", ParamValue::Bool(true));
    values.insert(
        "replicates",
        ParamValue::List(vec![ParamValue::Int(1), ParamValue::Int(-2)]),
    );
    values.insert("capacity", ParamValue::Float(1e-5));
    values.insert("hours", ParamValue::None);
    let out = worksheet::parameterize(&nb, &values);
    assert_eq!(out.cells.len(), nb.cells.len() + 1);
    let params_at = out.find_tagged("parameters").unwrap();
    let injected = &out.cells[params_at + 1];
    assert!(injected.has_tag(INJECTED_TAG));
    assert_eq!(
        injected.source.text(),
        "# Parameters\nrate = 1.0\nstrain = \"K-12 \\\"wild\\\" type\\\\n\\xe9\"\nlog_scale = True\nreplicates = [1, -2]\ncapacity = 1e-05\nhours = None\n"
    );
    let json: serde_json::Value = serde_json::from_str(&out.to_json_pretty()).unwrap();
    let cell = &json["cells"][params_at + 1];
    assert_eq!(cell["cell_type"], "code");
    assert!(cell["execution_count"].is_null());
    assert_eq!(cell["outputs"], serde_json::json!([]));
    assert_eq!(
        cell["metadata"],
        serde_json::json!({"tags": ["injected-parameters"]})
    );
    assert_eq!(cell["id"].as_str().unwrap().len(), 8);
    assert_eq!(json["metadata"]["papermill"]["parameters"]["rate"], 1.0);
    assert_eq!(
        json["metadata"]["papermill"]["parameters"]["replicates"],
        serde_json::json!([1, -2])
    );

    // Parameterizing again replaces the injected cell.
    let mut other = Values::default();
    other.insert("hours", ParamValue::Int(6));
    let twice = worksheet::parameterize(&out, &other);
    assert_eq!(twice.cells.len(), out.cells.len());
    assert_eq!(
        twice.cells[params_at + 1].source.text(),
        "# Parameters\nhours = 6\n"
    );
    assert_eq!(
        twice
            .cells
            .iter()
            .filter(|c| c.has_tag(INJECTED_TAG))
            .count(),
        1
    );

    // Without a parameters cell the injected cell goes on top.
    let plain = load("errors.ipynb");
    let top = worksheet::parameterize(&plain, &other);
    assert!(top.cells[0].has_tag(INJECTED_TAG));
    assert_eq!(top.cells.len(), plain.cells.len() + 1);

    // nbformat 4.0–4.4 notebooks are upgraded to 4.5 with cell ids, as papermill does.
    let old = Notebook::from_json(r#"{"nbformat":4,"nbformat_minor":2,"metadata":{},"cells":[{"cell_type":"markdown","metadata":{},"source":"x"}]}"#).unwrap();
    let up = worksheet::parameterize(&old, &other);
    assert_eq!(up.nbformat_minor, 5);
    assert!(up.cells.iter().all(|c| c.id.is_some()));
}

#[test]
fn bad_values_for_a_parameterized_notebook_name_the_parameter() {
    let nb = load("growth_curve.ipynb");
    let err = worksheet::parameterize_with(&nb, &form(&[("hours", "a day")])).unwrap_err();
    assert!(err.to_string().contains("parameter `hours`"), "{err}");
    let ok = worksheet::parameterize_with(&nb, &form(&[("hours", "12")])).unwrap();
    let injected = &ok.cells[ok.find_tagged(INJECTED_TAG).unwrap()];
    assert_eq!(injected.source.text(), "# Parameters\nhours = 12\n");
}

#[test]
fn code_is_hidden_and_outputs_follow_display_priority() {
    let html = render("growth_curve.ipynb");
    assert!(!html.contains("np.linspace"), "code must not be shown");
    assert!(html.contains(
        "<img class=\"output image\" alt=\"output image\" src=\"data:image/png;base64,iVBOR"
    ));
    assert!(html.contains("final OD600"));
    let with_code = worksheet::render(
        &load("growth_curve.ipynb"),
        &RenderOptions {
            show_code: true,
            ..Default::default()
        },
    )
    .body_html;
    assert!(with_code.contains("np.linspace"));

    let svg = render("svg_plot.ipynb");
    assert!(svg.contains("src=\"data:image/svg+xml;base64,"));
    assert!(!svg.contains("<svg"));

    let tables = render("pandas_tables.ipynb");
    assert!(
        tables.contains("<table"),
        "pandas HTML preferred over text/plain"
    );
    assert!(tables.contains("GENE0"));
    assert!(tables.contains("<del>Old normalisation</del>"));
    assert!(!tables.contains("<style"));

    let mix = render("display_mix.ipynb");
    assert!(mix.contains("<th>well</th>"));
    assert!(mix.contains("src=\"data:image/jpeg;base64,/9j/"));
    assert!(mix.contains("width=\"64\""));
    assert!(mix.contains("<pre class=\"output json\">"));
    assert!(mix.contains("&quot;wells&quot;"));
    assert!(
        !mix.contains("IPython.core.display"),
        "text/plain fallback not used when richer data exists"
    );
    assert!(mix.contains("<pre class=\"output text\">42</pre>"));
}

#[test]
fn errors_streams_and_widgets() {
    let html = render("errors.ipynb");
    assert!(
        html.contains("<strong>KeyError</strong>: &#39;chrM&#39;"),
        "{html}"
    );
    assert!(html.contains("<strong>ZeroDivisionError</strong>: division by zero"));
    assert!(
        !html.contains("Traceback") && !html.contains("-----"),
        "traceback hidden by default"
    );
    assert!(html.contains("red and bold green"));
    assert!(!html.contains('\u{1b}'));
    assert!(html.contains("class=\"output stream stderr\""));
    let tb = worksheet::render(
        &load("errors.ipynb"),
        &RenderOptions {
            show_traceback: true,
            ..Default::default()
        },
    )
    .body_html;
    assert!(tb.contains("class=\"traceback\""));
    assert!(!tb.contains('\u{1b}'));

    let streams = render("streams.ipynb");
    assert!(streams.contains("read batch 39"));
    assert!(streams.contains("&lt;b&gt;not html&lt;/b&gt; &amp; kept as text"));
    assert_eq!(
        streams.matches("class=\"output stream stdout\"").count(),
        2,
        "chunks of one stream are merged"
    );

    let widgets = render("widgets.ipynb");
    assert!(widgets.contains("An interactive widget is not shown"));
    assert!(widgets.contains("threshold is 5"));
    let fallback = Notebook::from_json(r#"{"nbformat":4,"nbformat_minor":5,"metadata":{},"cells":[{"cell_type":"code","id":"w","metadata":{},"execution_count":1,"source":"s","outputs":[{"output_type":"display_data","metadata":{},"data":{"application/vnd.jupyter.widget-view+json":{"model_id":"1","version_major":2,"version_minor":0},"text/plain":"IntSlider(value=5)"}}]}]}"#).unwrap();
    let html = worksheet::render(&fallback, &RenderOptions::default()).body_html;
    assert!(html.contains("IntSlider(value=5)"));
}

#[test]
fn markdown_math_attachments_and_title() {
    let rendered = worksheet::render(&load("markdown_math.ipynb"), &RenderOptions::default());
    assert_eq!(rendered.title.as_deref(), Some("Population genetics notes"));
    let html = rendered.body_html;
    assert!(html.contains("$p^2 + 2pq + q^2 = 1$"));
    assert!(
        html.contains("$p_1 * q_2$"),
        "math is not touched by emphasis rules"
    );
    assert!(html.contains("$$\\chi^2 = \\sum_i \\frac{(O_i - E_i)^2}{E_i}$$"));
    assert!(html.contains("<table>") && html.contains("<td>Aa</td>"));
    assert!(
        html.contains("src=\"data:image/png;base64,iVBORw0KGgo"),
        "attachment resolved"
    );
    assert!(!html.contains("attachment:"));
    assert!(html.contains("<b>bold HTML</b>"));
    assert!(html.contains("rel=\"noopener noreferrer\""));
    assert!(html.contains("<strong>computed</strong> result: <span class=\"math math-inline\">$\\hat{p} = 0.54$</span>"));
    assert!(html.contains("$$F_{ST} = \\frac{H_T - H_S}{H_T}$$"));
    assert!(!html.contains("raw cell text"));
}

#[test]
fn tags_and_jupyter_flags_hide_cells() {
    let html = render("hidden_cells.ipynb");
    assert!(!html.contains("removed entirely"));
    assert!(!html.contains("output removed"));
    assert!(html.contains("input removed, output kept"));
    assert!(html.contains("input hidden, output kept"));
    assert!(!html.contains(">outputs_hidden"));
    assert!(!html.contains("collapsed markdown"));
    assert!(html.contains("Visible closing remark."));
}

#[test]
fn dashboard_layout_places_cells_on_a_grid() {
    let html = render("dashboard.ipynb");
    assert!(
        html.contains(
            "class=\"worksheet dashboard-grid\" style=\"--cols: 12; --row-height: 20px\""
        )
    );
    assert!(html.contains("style=\"grid-column: 1 / span 12; grid-row: 1 / span 2\""));
    assert!(html.contains("style=\"grid-column: 1 / span 8; grid-row: 3 / span 10\""));
    assert!(html.contains("style=\"grid-column: 9 / span 4; grid-row: 3 / span 4\""));
    assert!(html.contains("plate 7, 96 wells"));
    assert!(
        !html.contains("Notes for the operator"),
        "hidden in the dashboard view"
    );
}

fn assert_inert(html: &str) {
    let lower = html.to_ascii_lowercase();
    for bad in [
        "<script",
        "onerror",
        "onload",
        "onclick",
        "=\"javascript:",
        "<iframe",
        "<object",
        "<style",
        "<form",
        "srcdoc",
        "data:text/html",
        "style=",
        "<svg",
    ] {
        assert!(!lower.contains(bad), "found {bad:?} in:\n{html}");
    }
}

#[test]
fn hostile_outputs_and_markdown_cannot_run_script() {
    let bytes = std::fs::read(corpus_dir().join("hostile/xss.ipynb")).unwrap();
    let nb = Notebook::from_slice(&bytes).unwrap();
    let rendered = worksheet::render(
        &nb,
        &RenderOptions {
            show_traceback: true,
            ..Default::default()
        },
    );
    let html = &rendered.body_html;
    assert_inert(html);
    assert!(html.contains("<td>kept cell</td>"), "harmless HTML is kept");
    assert!(html.contains(">styled</p>"));
    assert!(
        html.contains("data:image/svg+xml;base64,"),
        "SVG isolated in an <img>"
    );
    assert!(html.contains("not valid base64"));
    assert!(html.contains("&lt;b&gt;Evil&lt;/b&gt;"));
    assert!(html.contains("&lt;script&gt;alert(&#39;ename&#39;)"));
    let page = worksheet::page_html("x", html);
    assert!(page.contains("script-src 'none'"));

    let md = worksheet::markdown_html(
        "<a href=\"JaVaScRiPt:alert(1)\">x</a> <img src=\"x\" onerror=\"alert(1)\"> <svg><script>alert(1)</script></svg>",
        None,
        None,
    );
    assert_inert(&md);
    let html = worksheet::sanitize_html(
        "<a href=\"data:text/html,<script>alert(1)</script>\">x</a><img src=\"data:image/png;base64,iVBORw0KGgo=\">",
    );
    assert!(!html.contains("data:text/html"));
    assert!(html.contains("src=\"data:image/png;base64,iVBORw0KGgo=\""));
}

#[test]
fn form_has_typed_labelled_inputs_with_help_and_errors() {
    let params = worksheet::parameters(&load("growth_curve.ipynb"));
    let submitted = form(&[("hours", "abc"), ("strain", "\"><script>x</script>")]);
    let errors = worksheet::validate(&params, &submitted).unwrap_err();
    let html = worksheet::form_html(&params, &submitted, &errors, "/run?x=1&y=2", "post");
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
    let html = worksheet::form_html(&odd, &HashMap::new(), &[], "/go", "GET");
    assert!(html.contains("method=\"get\""));
    assert!(html.contains("value=\"load_config()\" readonly disabled"));
    assert!(html.contains("Fixed value:"));
    assert!(html.contains("name=\"flag\" value=\"true\" checked"));
}

#[test]
fn page_is_standalone_with_csp_and_viewport() {
    let rendered = worksheet::render(&load("growth_curve.ipynb"), &RenderOptions::default());
    let page = worksheet::page_html(rendered.title.as_deref().unwrap(), &rendered.body_html);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<title>Bacterial growth curve</title>"));
    assert!(page.contains("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'none';"));
    assert!(!page.contains("frame-ancestors"), "ignored in a meta tag");
    assert!(worksheet::CSP.contains("frame-ancestors 'none'"));
    assert!(page.contains("name=\"viewport\" content=\"width=device-width, initial-scale=1\""));
    assert!(page.contains("@media (max-width: 48rem)"));
    assert!(!page.contains("<script"));
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
    let report = worksheet::bench::bench(&corpus_dir(), 2, false).unwrap();
    // The folder is searched recursively: `hostile/` and `papermill/` are included.
    assert!(report.rows.len() > corpus().len());
    assert!(
        report
            .rows
            .iter()
            .any(|r| r.notebook == Path::new("hostile/xss.ipynb"))
    );
    assert!(
        report
            .rows
            .iter()
            .all(|r| r.html_bytes > 500 && r.nbconvert.is_none())
    );
    assert!(report.to_string().contains("notebooks, 2 iterations"));
    assert!(worksheet::bench::bench(Path::new("/nonexistent-corpus"), 1, false).is_err());
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
    let report = worksheet::bench::bench(dir.path(), 2, true).unwrap();
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

/// `papermill/growth_curve.prepared.ipynb` was written by papermill 2.7.0:
/// `papermill growth_curve.ipynb out.ipynb --prepare-only -y 'replicates: [1, -2, 2.5]'
/// -p rate 1.0 -p strain 'K-12 "wild" type\n é😀' -p log_scale True -p capacity 1e-05 -p hours 3`.
#[test]
fn injected_cell_is_identical_to_papermills() {
    let prepared = Notebook::from_slice(
        &std::fs::read(corpus_dir().join("papermill/growth_curve.prepared.ipynb")).unwrap(),
    )
    .unwrap();
    let theirs = &prepared.cells[prepared.find_tagged(INJECTED_TAG).unwrap()];

    let mut values = Values::default();
    values.insert(
        "replicates",
        ParamValue::List(vec![
            ParamValue::Int(1),
            ParamValue::Int(-2),
            ParamValue::Float(2.5),
        ]),
    );
    values.insert("rate", ParamValue::Float(1.0));
    values.insert(
        "strain",
        ParamValue::Str("K-12 \"wild\" type\\n é😀".into()),
    );
    values.insert("log_scale", ParamValue::Bool(true));
    values.insert("capacity", ParamValue::Float(1e-5));
    values.insert("hours", ParamValue::Int(3));
    let ours = worksheet::parameterize(&load("growth_curve.ipynb"), &values);
    let at = ours.find_tagged(INJECTED_TAG).unwrap();
    assert_eq!(Some(at), prepared.find_tagged(INJECTED_TAG));
    let mine = &ours.cells[at];
    assert_eq!(mine.source.text(), theirs.source.text());
    assert_eq!(mine.metadata, theirs.metadata);
    assert_eq!(mine.extra, theirs.extra);
    assert_eq!(mine.outputs, theirs.outputs);
    assert_eq!(
        ours.metadata["papermill"]["parameters"],
        prepared.metadata["papermill"]["parameters"]
    );

    // Parameterizing papermill's output replaces its injected cell.
    let again = worksheet::parameterize(&prepared, &values);
    assert_eq!(again.cells.len(), prepared.cells.len());
    assert_eq!(again.cells[at].source.text(), theirs.source.text());
}

#[test]
fn truncated_or_foreign_notebooks_never_panic() {
    let bytes = std::fs::read(corpus_dir().join("hidden_cells.ipynb")).unwrap();
    for end in (0..bytes.len()).step_by(7) {
        let err = Notebook::from_slice(&bytes[..end]).unwrap_err();
        assert!(
            matches!(err, NotebookError::Json { line, .. } if line >= 1),
            "{err}"
        );
    }

    // An R notebook's parameters are read but cannot be set: the injected cell is Python.
    let r = Notebook::from_json(r#"{"nbformat":4,"nbformat_minor":5,"metadata":{"kernelspec":{"name":"ir","language":"R","display_name":"R"}},"cells":[{"cell_type":"code","id":"p","metadata":{"tags":["parameters"]},"execution_count":null,"outputs":[],"source":"alpha = 0.05"}]}"#).unwrap();
    let params = worksheet::parameters(&r);
    assert_eq!(params.len(), 1);
    assert!(params[0].supported.as_ref().unwrap_err().contains("R"));
    assert!(worksheet::validate(&params, &form(&[("alpha", "0.1")])).is_err());
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
