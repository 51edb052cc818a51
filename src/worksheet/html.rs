//! Worksheet HTML around the rendered notebook: the parameter form, the standalone page,
//! and the Content-Security-Policy those pages are served with.

use super::params::{FORM_MARKER, FieldError, ParamType, ParamValue, Parameter};
use super::render::{escape, escape_into};
use std::collections::HashMap;
use std::fmt::Write as _;

/// The Content-Security-Policy for worksheet pages (also sent as a header by the service).
/// No script runs; images only from the page itself, `data:` URLs and HTTPS; styles are
/// nbforge's own stylesheet and the grid placement attributes it writes.
pub const CSP: &str = "default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; \
img-src 'self' data: https:; font-src 'self'; form-action 'self'; base-uri 'none'; \
object-src 'none'; frame-src 'none'; frame-ancestors 'none'";

/// The stylesheet of worksheet pages; responsive, no external resources.
pub const STYLESHEET: &str = r#"
:root { color-scheme: light dark; --fg: #1d1f21; --bg: #fff; --muted: #5f6368; --line: #d9dce0; --accent: #1a5fb4; --err: #b3261e; }
@media (prefers-color-scheme: dark) { :root { --fg: #e8eaed; --bg: #16181b; --muted: #a0a4a8; --line: #3c4043; --accent: #8ab4f8; --err: #f2b8b5; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
h1, h2, h3 { line-height: 1.25; }
a { color: var(--accent); }
img { max-width: 100%; height: auto; }
pre { overflow-x: auto; padding: .6rem .8rem; border-radius: 4px; background: rgba(127,127,127,.08); font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre-wrap; word-break: break-word; }
table { border-collapse: collapse; display: block; overflow-x: auto; max-width: 100%; font-size: .9rem; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; text-align: right; }
th { background: rgba(127,127,127,.08); }
.cell { margin: 0 0 1rem; min-width: 0; }
.output.stderr { border-left: 3px solid #e0a800; }
.output.error { border-left: 3px solid var(--err); padding: .2rem .8rem; }
.output.error strong { color: var(--err); }
.output.note { color: var(--muted); font-style: italic; }
.math-display { display: block; overflow-x: auto; margin: .8rem 0; }
.dashboard-grid { display: grid; grid-template-columns: repeat(var(--cols), minmax(0, 1fr)); grid-auto-rows: minmax(var(--row-height), auto); gap: 10px; max-width: none; }
@media (max-width: 48rem) { .dashboard-grid { display: block; } main { padding: .6rem; } }
form.parameters { border: 1px solid var(--line); border-radius: 6px; padding: 1rem; margin: 0 0 1.5rem; }
.field { margin: 0 0 .9rem; }
.field label { display: block; font-weight: 600; }
.field input[type=text], .field input[type=number], .field textarea { width: 100%; max-width: 32rem; padding: .45rem; font: inherit; border: 1px solid var(--line); border-radius: 4px; background: var(--bg); color: var(--fg); }
.field input[type=checkbox] { width: 1.25rem; height: 1.25rem; vertical-align: middle; }
.field .checkbox-label { display: inline; font-weight: 600; margin-left: .4rem; }
.field .help { margin: .2rem 0 0; color: var(--muted); font-size: .9rem; }
.field .field-error { margin: .2rem 0 0; color: var(--err); font-weight: 600; }
.field.invalid input, .field.invalid textarea { border-color: var(--err); }
header.site { padding: .6rem 1rem; border-bottom: 1px solid var(--line); }
header.site .brand { font-weight: 700; text-decoration: none; }
nav.crumbs { color: var(--muted); font-size: .9rem; margin: .4rem 0; }
form.search { margin: 0 0 1.5rem; }
form.search input[type=search] { padding: .45rem; font: inherit; width: 100%; max-width: 24rem; border: 1px solid var(--line); border-radius: 4px; background: var(--bg); color: var(--fg); }
ul.cards { list-style: none; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr)); gap: .8rem; }
li.card { border: 1px solid var(--line); border-radius: 6px; padding: .8rem; }
li.card > a { font-weight: 600; }
li.card p { margin: .3rem 0; color: var(--muted); font-size: .9rem; }
li.card .version { font-size: .8rem; color: var(--muted); }
p.error { color: var(--err); font-weight: 600; }
p.ok { font-weight: 600; }
button[type=submit] { font: inherit; padding: .55rem 1.4rem; border: 0; border-radius: 4px; background: var(--accent); color: var(--bg); cursor: pointer; }
"#;

/// A standalone HTML page around a body fragment, with the CSP as a `<meta>` (without
/// `frame-ancestors`, which browsers honour only as a header).
pub fn page_html(title: &str, body_html: &str) -> String {
    let meta_csp = CSP
        .split(';')
        .map(str::trim)
        .filter(|d| !d.starts_with("frame-ancestors"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut out = String::with_capacity(body_html.len() + STYLESHEET.len() + 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"");
    // The policy is a constant without `"`, `&` or `<`: written as is.
    out.push_str(&meta_csp);
    out.push_str("\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<meta name=\"referrer\" content=\"no-referrer\">\n<title>");
    escape_into(&mut out, title);
    out.push_str("</title>\n<style>");
    out.push_str(STYLESHEET);
    out.push_str("</style>\n</head>\n<body>\n<main>\n");
    out.push_str(body_html);
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The parameter form: one labelled, typed input per parameter, with its help text, its
/// current value (`values`, as submitted; else the default) and its errors. Works without
/// JavaScript. Read-only parameters are shown disabled with the reason.
pub fn form_html(
    params: &[Parameter],
    values: &HashMap<String, String>,
    errors: &[FieldError],
    action: &str,
    method: &str,
) -> String {
    let mut out = String::new();
    let method = if method.eq_ignore_ascii_case("get") {
        "get"
    } else {
        "post"
    };
    let _ = writeln!(
        out,
        "<form class=\"parameters\" action=\"{}\" method=\"{method}\">",
        escape(action)
    );
    let _ = writeln!(
        out,
        "<input type=\"hidden\" name=\"{FORM_MARKER}\" value=\"1\">"
    );
    for e in errors
        .iter()
        .filter(|e| !params.iter().any(|p| p.name == e.name))
    {
        out.push_str("<p class=\"field-error\" role=\"alert\">");
        escape_into(&mut out, &e.to_string());
        out.push_str("</p>\n");
    }
    for p in params {
        field_html(&mut out, p, values.get(&p.name), errors);
    }
    out.push_str("<button type=\"submit\">Run</button>\n</form>\n");
    out
}

fn field_html(out: &mut String, p: &Parameter, current: Option<&String>, errors: &[FieldError]) {
    let id = format!("param-{}", p.name);
    let errs: Vec<&FieldError> = errors.iter().filter(|e| e.name == p.name).collect();
    let mut described = Vec::new();
    if p.help.is_some() {
        described.push(format!("{id}-help"));
    }
    if !errs.is_empty() {
        described.push(format!("{id}-error"));
    }
    if p.supported.is_err() {
        described.push(format!("{id}-reason"));
    }
    let aria = if described.is_empty() {
        String::new()
    } else {
        format!(" aria-describedby=\"{}\"", escape(&described.join(" ")))
    };
    let invalid = if errs.is_empty() {
        ""
    } else {
        " aria-invalid=\"true\""
    };
    let class = if errs.is_empty() {
        "field"
    } else {
        "field invalid"
    };
    let _ = writeln!(out, "<div class=\"{class}\">");
    let value = current
        .cloned()
        .unwrap_or_else(|| p.default.to_form_string());
    let eid = escape(&id);
    let ename = escape(&p.name);
    let label = |out: &mut String, class: &str| {
        let _ = write!(out, "<label{class} for=\"{eid}\">{ename}");
        if !matches!(p.kind, ParamType::Unsupported) {
            let _ = write!(out, " <small>({})</small>", escape(&type_label(p)));
        }
        out.push_str("</label>\n");
    };
    if let Err(reason) = &p.supported {
        label(out, "");
        let _ = writeln!(
            out,
            "<input type=\"text\" id=\"{eid}\" value=\"{}\" readonly disabled{aria}>",
            escape(&p.source)
        );
        let _ = writeln!(
            out,
            "<p class=\"help\" id=\"{eid}-reason\">Fixed value: {}</p>",
            escape(reason)
        );
    } else {
        match &p.kind {
            ParamType::Bool => {
                let checked = current.map_or(matches!(p.default, ParamValue::Bool(true)), |v| {
                    matches!(
                        v.trim().to_ascii_lowercase().as_str(),
                        "true" | "on" | "1" | "yes"
                    )
                });
                let _ = write!(
                    out,
                    "<input type=\"checkbox\" id=\"{eid}\" name=\"{ename}\" value=\"true\"{}{invalid}{aria}>",
                    if checked { " checked" } else { "" }
                );
                label(out, " class=\"checkbox-label\"");
            }
            ParamType::List(_) => {
                label(out, "");
                let _ = writeln!(
                    out,
                    "<textarea id=\"{eid}\" name=\"{ename}\" rows=\"4\"{invalid}{aria}>{}</textarea>",
                    escape(&value)
                );
            }
            kind => {
                label(out, "");
                let (ty, extra) = match kind {
                    ParamType::Int => ("number", " step=\"1\" inputmode=\"numeric\""),
                    ParamType::Float => ("number", " step=\"any\" inputmode=\"decimal\""),
                    _ => ("text", ""),
                };
                // Infinity and NaN cannot be typed into a number input.
                let ty = if ty == "number" && value.parse::<f64>().is_ok_and(|v| !v.is_finite()) {
                    "text"
                } else {
                    ty
                };
                let required = if p.optional {
                    ""
                } else if ty == "number" {
                    " required"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "<input type=\"{ty}\" id=\"{eid}\" name=\"{ename}\" value=\"{}\"{extra}{required}{invalid}{aria}>",
                    escape(&value)
                );
            }
        }
    }
    if let Some(help) = &p.help {
        let _ = writeln!(
            out,
            "<p class=\"help\" id=\"{eid}-help\">{}</p>",
            escape(help)
        );
    }
    if !errs.is_empty() {
        let _ = write!(
            out,
            "<p class=\"field-error\" id=\"{eid}-error\" role=\"alert\">"
        );
        for (i, e) in errs.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            escape_into(out, &e.message);
        }
        out.push_str("</p>\n");
    }
    out.push_str("</div>\n");
}

fn type_label(p: &Parameter) -> String {
    let base = match &p.kind {
        ParamType::List(e) if **e == ParamType::Str => "list of text, one per line".to_string(),
        ParamType::List(e) => format!("list of {e}, one per line or comma-separated"),
        ParamType::Str => "text".to_string(),
        ParamType::Int => "whole number".to_string(),
        ParamType::Float => "number".to_string(),
        ParamType::Bool => "yes/no".to_string(),
        ParamType::Unsupported => "fixed".to_string(),
    };
    if p.optional {
        format!("{base}, optional")
    } else {
        base
    }
}
