//! The page templates (minijinja, auto-escaping on) and the page frame they share: the
//! stylesheet, the Content-Security-Policy (as a header and a `<meta>`), and the loader
//! that embeds every file of `src/web/templates/` in the binary. [`Templates`] is built
//! once and held by the web state; handlers render a page with [`Templates::page`].
//!
//! Every value a template prints is HTML-escaped by the engine, except values made by
//! [`notebook_html`]: sanitized notebook fragments from [`crate::worksheet::render`].

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, Error, Output, State, escape_formatter};
use serde::Serialize;

use super::error::WebError;

/// The Content-Security-Policy of every page (sent as a header by the router). No script
/// runs, so pages showing notebook outputs stay inert; images only from the page itself,
/// `data:` URLs and HTTPS; styles are nbforge's own stylesheet and the grid placement
/// attributes the renderer writes.
pub const CSP: &str = "default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; \
img-src 'self' data: https:; font-src 'self'; form-action 'self'; base-uri 'none'; \
object-src 'none'; frame-src 'none'; frame-ancestors 'none'";

/// The policy of nbforge's own interactive pages (the launch page), which never show
/// notebook outputs: the same, plus scripts served by nbforge itself (nothing inline) and
/// requests back to it (the progress stream).
pub const SCRIPT_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
style-src 'unsafe-inline'; img-src 'self' data: https:; font-src 'self'; form-action 'self'; \
base-uri 'none'; object-src 'none'; frame-src 'none'; frame-ancestors 'none'";

/// The template files, embedded at build time. A new page is one more line here.
const FILES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("style.css", include_str!("templates/style.css")),
    ("macros.html", include_str!("templates/macros.html")),
    ("form.html", include_str!("templates/form.html")),
    ("error.html", include_str!("templates/error.html")),
    ("landing.html", include_str!("templates/landing.html")),
    ("project.html", include_str!("templates/project.html")),
    ("release.html", include_str!("templates/release.html")),
    ("worksheet.html", include_str!("templates/worksheet.html")),
    ("checked.html", include_str!("templates/checked.html")),
    ("launch.html", include_str!("templates/launch.html")),
    (
        "unknown_provider.html",
        include_str!("templates/unknown_provider.html"),
    ),
    ("standalone.html", include_str!("templates/standalone.html")),
    ("me.html", include_str!("templates/me.html")),
    ("run.html", include_str!("templates/run.html")),
    ("results.html", include_str!("templates/results.html")),
];

/// A sanitized notebook fragment (from [`crate::worksheet::render`], which sanitizes every
/// output) as a value templates print unescaped. The only way unescaped HTML enters a page.
pub fn notebook_html(sanitized: String) -> Value {
    Value::from_safe_string(sanitized)
}

/// The policy as a `<meta>` carries it: without `frame-ancestors`, which browsers honour
/// only as a header.
fn meta_csp(policy: &str) -> String {
    policy
        .split(';')
        .map(str::trim)
        .filter(|d| !d.starts_with("frame-ancestors"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Escapes like [`crate::worksheet::render::escape`] (`&`, `<`, `>`, `"`, `'`), leaving
/// `/` alone so links stay readable; `none` prints as nothing.
fn formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    if value.is_none() {
        return Ok(());
    }
    if matches!(state.auto_escape(), AutoEscape::Html) && !value.is_safe() {
        let text = match value.as_str() {
            Some(s) => crate::worksheet::render::escape(s),
            None => crate::worksheet::render::escape(&value.to_string()),
        };
        return out.write_str(&text).map_err(Error::from);
    }
    escape_formatter(out, state, value)
}

/// The loaded templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// Parses every embedded template. The templates are part of the binary, so a
    /// template that does not parse is a bug caught by the unit tests.
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .keep_trailing_newline(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_formatter(formatter);
        // A constant without user data; it must keep its quotes to be a valid policy.
        env.add_global("meta_csp", Value::from_safe_string(meta_csp(CSP)));
        env.add_global(
            "script_meta_csp",
            Value::from_safe_string(meta_csp(SCRIPT_CSP)),
        );
        env.add_function(
            "worksheet_url",
            |project: &str, tag: Option<&str>, path: Option<&str>| {
                crate::urls::worksheet(project, tag, path)
            },
        );
        env.add_function("build_log_url", crate::urls::build_log_path);
        for (name, source) in FILES {
            if let Err(e) = env.add_template(name, source) {
                panic!("the embedded template {name} does not parse: {e:#}");
            }
        }
        Templates { env }
    }

    /// Renders the template `name` with `ctx` (any serializable value).
    pub fn render(&self, name: &str, ctx: impl Serialize) -> Result<String, WebError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(Serde(ctx)))
            .map_err(|e| WebError::Internal(anyhow::anyhow!("rendering {name}: {e:#}")))
    }

    /// A page: the template `name` rendered with `ctx` (and, inside a request, the
    /// viewer's `frame`), answered with `status`.
    pub fn page(
        &self,
        status: StatusCode,
        name: &str,
        ctx: impl Serialize,
    ) -> Result<Response, WebError> {
        // The viewer's part of the frame, set for the request by `auth::find_viewer`.
        // `tools`: what the viewer's level shows (every tool outside a request, e.g. in
        // rendering tests); pages test `tools.build_logs`, `tools.git_details`, ….
        let html = match super::auth::FRAME.try_with(Clone::clone) {
            Ok(frame) => self.render(
                name,
                minijinja::context! {
                    tools => Serde(frame.tools),
                    frame => Serde(frame),
                    ..Value::from(Serde(&ctx))
                },
            )?,
            Err(_) => self.render(
                name,
                minijinja::context! {
                    tools => Serde(crate::access::UserLevel::Developer.tools()),
                    ..Value::from(Serde(&ctx))
                },
            )?,
        };
        Ok((status, Html(html)).into_response())
    }

    /// A page of nbforge's own that runs nbforge's scripts (`scripts` in the context), with
    /// [`SCRIPT_CSP`]. Never for pages that show notebook outputs.
    pub fn page_with_scripts(
        &self,
        status: StatusCode,
        name: &str,
        ctx: impl Serialize,
    ) -> Result<Response, WebError> {
        let mut res = self.page(
            status,
            name,
            minijinja::context! { scripts => true, ..Value::from(Serde(&ctx)) },
        )?;
        res.headers_mut().insert(
            axum::http::header::CONTENT_SECURITY_POLICY,
            axum::http::HeaderValue::from_static(SCRIPT_CSP),
        );
        Ok(res)
    }

    /// A parameter form alone (the worksheet page includes it).
    pub fn form(&self, form: &super::form::FormView) -> Result<String, WebError> {
        self.render("form.html", minijinja::context! { form => Serde(form) })
    }

    /// A worksheet page for a file (`nbforge render`): the values it was run with, then
    /// the sanitized notebook; no site header.
    pub fn standalone(
        &self,
        title: &str,
        values: &crate::worksheet::Values,
        sanitized_body: String,
    ) -> Result<String, WebError> {
        self.render(
            "standalone.html",
            minijinja::context! {
                title,
                values => Serde(values_view(values)),
                notebook => notebook_html(sanitized_body),
            },
        )
    }
}

/// One value a worksheet was run with, as pages show it.
#[derive(Serialize)]
pub struct ValueView {
    pub name: String,
    pub value: String,
}

/// The values a notebook was run with, in the order of its parameters cell.
pub fn values_view(values: &crate::worksheet::Values) -> Vec<ValueView> {
    values
        .0
        .iter()
        .map(|(name, value)| ValueView {
            name: name.clone(),
            value: value.to_python(),
        })
        .collect()
}

/// Test helpers for page snapshots.
#[cfg(test)]
pub(crate) mod testing {
    use axum::response::Response;

    /// The status and the text of a rendered page.
    pub async fn text(res: Response) -> (axum::http::StatusCode, String) {
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .expect("a page body");
        (status, String::from_utf8(bytes.to_vec()).expect("UTF-8"))
    }

    /// What a page shows inside `<main>`, without the frame every page shares.
    pub fn main(page: &str) -> &str {
        let start = page.find("<main>\n").expect("a <main>") + "<main>\n".len();
        let end = page.rfind("</main>").expect("a </main>");
        &page[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_carries_the_policy_the_stylesheet_and_escaped_values() {
        let t = Templates::new();
        let mut values = crate::worksheet::Values::default();
        values.insert(
            "strain",
            crate::worksheet::ParamValue::Str("<b>'K-12'</b>".into()),
        );
        let page = t
            .standalone("A & B <c>", &values, "<p>kept</p>".into())
            .unwrap();
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(page.ends_with("</html>\n"));
        assert!(page.contains("<title>A &amp; B &lt;c&gt;</title>"));
        assert!(page.contains("content=\"default-src 'none'; script-src 'none';"));
        assert!(!page.contains("frame-ancestors"));
        assert!(page.contains("@media (max-width: 48rem)"));
        assert!(page.contains("<p>kept</p>"), "notebook HTML is not escaped");
        assert!(page.contains("&lt;b&gt;"), "{page}");
        assert!(!page.contains("<b>"));
        assert!(!page.contains("header class=\"site\""), "no site header");
    }
}
