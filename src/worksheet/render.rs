//! Rendering a notebook without its code: markdown cells, outputs in nbconvert's display
//! priority, cell tags and `metadata.jupyter` flags, and dashboard grid layouts.
//!
//! Everything taken from the notebook is untrusted: HTML from outputs and markdown goes
//! through ammonia, SVG is shown as an `<img>` (scripts inside never run), base64 image data
//! is checked before it is embedded, and terminal escapes are stripped from text.

use super::model::{CellType, Notebook, Output, bundle_text};
use super::params::{Parameter, parameters};
use base64::Engine as _;
use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::LazyLock;

/// What to include in a rendering.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Show code cells' source (for developers). Worksheets hide it.
    pub show_code: bool,
    /// Show error tracebacks below the short `ename: evalue` message.
    pub show_traceback: bool,
}

/// A rendered worksheet.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// `metadata.title`, else the first level-1 heading of a markdown cell.
    pub title: Option<String>,
    /// Sanitized HTML fragment (an `<article>`), to be placed in a page.
    pub body_html: String,
    /// The worksheet's parameters (from the `parameters` cell).
    pub parameters: Vec<Parameter>,
}

const WIDGET_VIEW: &str = "application/vnd.jupyter.widget-view+json";

/// Render a notebook as a worksheet.
pub fn render(nb: &Notebook, options: &RenderOptions) -> Rendered {
    let grid = DashboardGrid::from_notebook(nb);
    let mut body = String::with_capacity(16 * 1024);
    match &grid {
        Some(g) => {
            let _ = writeln!(
                body,
                "<article class=\"worksheet dashboard-grid\" style=\"--cols: {}; --row-height: {}px\">",
                g.max_columns, g.row_height
            );
        }
        None => body.push_str("<article class=\"worksheet\">\n"),
    }
    let mut title = nb
        .metadata
        .get("title")
        .and_then(Value::as_str)
        .map(str::to_string);
    for cell in &nb.cells {
        if cell.has_tag("remove-cell") {
            continue;
        }
        let placement = match &grid {
            Some(g) => match g.placement(&cell.metadata) {
                CellPlacement::Hidden => continue,
                CellPlacement::At(style) => Some(style),
                CellPlacement::Auto => None,
            },
            None => None,
        };
        let mut inner = String::new();
        let kind = match cell.cell_type {
            CellType::Markdown => {
                if cell.jupyter_flag("source_hidden") || cell.has_tag("remove-input") {
                    continue;
                }
                let md = markdown_html(
                    &cell.source.text(),
                    cell.attachments.as_ref(),
                    if title.is_none() {
                        Some(&mut title)
                    } else {
                        None
                    },
                );
                inner.push_str(&md);
                "markdown"
            }
            CellType::Raw => {
                let mime = cell
                    .metadata
                    .get("format")
                    .or_else(|| cell.metadata.get("raw_mimetype"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                match mime {
                    "text/html" => inner.push_str(&sanitize_html(&cell.source.text())),
                    "text/markdown" => {
                        inner.push_str(&markdown_html(&cell.source.text(), None, None))
                    }
                    _ => continue,
                }
                "raw"
            }
            CellType::Code => {
                if options.show_code
                    && !cell.has_tag("remove-input")
                    && !cell.jupyter_flag("source_hidden")
                {
                    inner.push_str("<pre class=\"source\"><code>");
                    escape_into(&mut inner, &cell.source.text());
                    inner.push_str("</code></pre>\n");
                }
                let hide_outputs =
                    cell.has_tag("remove-output") || cell.jupyter_flag("outputs_hidden");
                if !hide_outputs && let Some(outputs) = &cell.outputs {
                    render_outputs(&mut inner, outputs, options);
                }
                "code"
            }
        };
        if inner.is_empty() {
            continue;
        }
        body.push_str("<section class=\"cell ");
        body.push_str(kind);
        body.push('"');
        if let Some(id) = &cell.id {
            body.push_str(" id=\"cell-");
            escape_into(&mut body, id);
            body.push('"');
        }
        if let Some(style) = placement {
            let _ = write!(body, " style=\"{style}\"");
        }
        body.push_str(">\n");
        body.push_str(&inner);
        body.push_str("</section>\n");
    }
    body.push_str("</article>\n");
    Rendered {
        title,
        body_html: body,
        parameters: parameters(nb),
    }
}

// ---------------------------------------------------------------------------------------
// Dashboard layout
// ---------------------------------------------------------------------------------------

struct DashboardGrid {
    view: String,
    max_columns: u64,
    row_height: u64,
}

enum CellPlacement {
    Hidden,
    Auto,
    At(String),
}

impl DashboardGrid {
    /// The active grid view of `metadata.extensions.jupyter_dashboards` (also used by
    /// voila-gridstack), or the older `metadata.urth.dashboard` layout.
    fn from_notebook(nb: &Notebook) -> Option<DashboardGrid> {
        let dash = nb
            .metadata
            .get("extensions")
            .and_then(|e| e.get("jupyter_dashboards"));
        if let Some(dash) = dash {
            let active = dash
                .get("activeView")
                .and_then(Value::as_str)
                .unwrap_or("grid_default");
            let view = dash.get("views").and_then(|v| v.get(active));
            let kind = view.and_then(|v| v.get("type")).and_then(Value::as_str);
            if kind.is_some_and(|k| k != "grid") {
                return None;
            }
            let num = |key: &str, default: u64| {
                view.and_then(|v| v.get(key))
                    .and_then(Value::as_u64)
                    .filter(|n| (1..=1000).contains(n))
                    .unwrap_or(default)
            };
            return Some(DashboardGrid {
                view: active.to_string(),
                max_columns: num("maxColumns", 12),
                row_height: num("defaultCellHeight", 20),
            });
        }
        let urth = nb.metadata.get("urth").and_then(|u| u.get("dashboard"));
        urth.map(|u| DashboardGrid {
            view: String::new(),
            max_columns: u
                .get("maxColumns")
                .and_then(Value::as_u64)
                .unwrap_or(12)
                .clamp(1, 1000),
            row_height: u
                .get("cellHeight")
                .and_then(Value::as_u64)
                .unwrap_or(20)
                .clamp(1, 1000),
        })
    }

    fn placement(&self, meta: &Map<String, Value>) -> CellPlacement {
        let layout = if self.view.is_empty() {
            meta.get("urth").and_then(|u| u.get("dashboard"))
        } else {
            meta.get("extensions")
                .and_then(|e| e.get("jupyter_dashboards"))
                .and_then(|d| d.get("views"))
                .and_then(|v| v.get(&self.view))
        };
        let Some(layout) = layout else {
            return CellPlacement::Auto;
        };
        if layout
            .get("hidden")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return CellPlacement::Hidden;
        }
        let layout = layout.get("layout").unwrap_or(layout);
        let get = |k: &str| layout.get(k).and_then(Value::as_u64);
        match (get("col"), get("row"), get("width"), get("height")) {
            (Some(col), Some(row), Some(width), Some(height)) => {
                let col = col.min(self.max_columns - 1);
                let width = width.clamp(1, self.max_columns - col);
                let height = height.clamp(1, 10_000);
                let row = row.min(100_000);
                CellPlacement::At(format!(
                    "grid-column: {} / span {width}; grid-row: {} / span {height}",
                    col + 1,
                    row + 1
                ))
            }
            _ => CellPlacement::Auto,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------

fn render_outputs(out: &mut String, outputs: &[Output], options: &RenderOptions) {
    let mut i = 0;
    while i < outputs.len() {
        let o = &outputs[i];
        match o.output_type.as_str() {
            "stream" => {
                // Consecutive chunks of the same stream are shown as one block.
                let name = o.name.as_deref().unwrap_or("stdout");
                let mut text = String::new();
                while i < outputs.len()
                    && outputs[i].output_type == "stream"
                    && outputs[i].name.as_deref().unwrap_or("stdout") == name
                {
                    if let Some(t) = &outputs[i].text {
                        text.push_str(&t.text());
                    }
                    i += 1;
                }
                let class = if name == "stderr" { "stderr" } else { "stdout" };
                let _ = write!(out, "<pre class=\"output stream {class}\">");
                escape_into(out, &terminal_text(&text));
                out.push_str("</pre>\n");
                continue;
            }
            "error" => {
                out.push_str("<div class=\"output error\" role=\"alert\"><p><strong>");
                escape_into(
                    out,
                    &crate::text::strip_ansi(o.ename.as_deref().unwrap_or("Error")),
                );
                out.push_str("</strong>: ");
                escape_into(
                    out,
                    &crate::text::strip_ansi(o.evalue.as_deref().unwrap_or("")),
                );
                out.push_str("</p>");
                if options.show_traceback
                    && let Some(tb) = &o.traceback
                {
                    out.push_str("<pre class=\"traceback\">");
                    escape_into(out, &crate::text::strip_ansi(&tb.join("\n")));
                    out.push_str("</pre>");
                }
                out.push_str("</div>\n");
            }
            "display_data" | "execute_result" | "update_display_data" => {
                if let Some(data) = &o.data {
                    render_bundle(out, data, o.metadata.as_ref());
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// MIME types in the order they are preferred.
const PRIORITY: [&str; 8] = [
    "text/html",
    "image/svg+xml",
    "image/png",
    "image/jpeg",
    "text/markdown",
    "text/latex",
    "application/json",
    "text/plain",
];

fn render_bundle(out: &mut String, data: &Map<String, Value>, meta: Option<&Map<String, Value>>) {
    let chosen = PRIORITY
        .iter()
        .find_map(|m| data.get(*m).map(|v| (*m, v)))
        .or_else(|| {
            // Other image types browsers show (gif, webp).
            data.iter()
                .find(|(k, _)| matches!(k.as_str(), "image/gif" | "image/webp"))
                .map(|(k, v)| (k.as_str(), v))
        });
    let Some((mime, value)) = chosen else {
        if data.contains_key(WIDGET_VIEW) {
            out.push_str("<p class=\"output note\">An interactive widget is not shown in this worksheet.</p>\n");
        } else if let Some(mime) = data.keys().next() {
            out.push_str("<p class=\"output note\">Output of type <code>");
            escape_into(out, mime);
            out.push_str("</code> is not shown.</p>\n");
        }
        return;
    };
    let image_meta = meta.and_then(|m| m.get(mime));
    match mime {
        "text/html" => {
            let html = bundle_text(value).unwrap_or_default();
            out.push_str("<div class=\"output html\">");
            out.push_str(&sanitize_html(&html));
            out.push_str("</div>\n");
        }
        "image/svg+xml" => {
            let svg = bundle_text(value).unwrap_or_default();
            let b64 = base64::engine::general_purpose::STANDARD.encode(svg.as_bytes());
            image_tag(out, mime, &b64, image_meta);
        }
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" => {
            let raw = bundle_text(value).unwrap_or_default();
            let b64: String = raw.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            if base64::engine::general_purpose::STANDARD
                .decode(&b64)
                .is_ok()
                && !b64.is_empty()
            {
                image_tag(out, mime, &b64, image_meta);
            } else {
                out.push_str("<p class=\"output note\">An image could not be shown: its data is not valid base64.</p>\n");
            }
        }
        "text/markdown" => {
            let md = bundle_text(value).unwrap_or_default();
            out.push_str("<div class=\"output markdown\">");
            out.push_str(&markdown_html(&md, None, None));
            out.push_str("</div>\n");
        }
        "text/latex" => {
            let tex = bundle_text(value).unwrap_or_default();
            out.push_str("<div class=\"output math math-display\">");
            escape_into(out, &tex);
            out.push_str("</div>\n");
        }
        "application/json" => {
            let text = serde_json::to_string_pretty(value).unwrap_or_default();
            out.push_str("<pre class=\"output json\">");
            escape_into(out, &text);
            out.push_str("</pre>\n");
        }
        _ => {
            let text = bundle_text(value).unwrap_or_default();
            out.push_str("<pre class=\"output text\">");
            escape_into(out, &crate::text::strip_ansi(&text));
            out.push_str("</pre>\n");
        }
    }
}

fn image_tag(out: &mut String, mime: &str, b64: &str, meta: Option<&Value>) {
    let _ = write!(
        out,
        "<img class=\"output image\" alt=\"output image\" src=\"data:{mime};base64,{b64}\""
    );
    for key in ["width", "height"] {
        if let Some(n) = meta.and_then(|m| m.get(key)).and_then(Value::as_u64) {
            let _ = write!(out, " {key}=\"{n}\"");
        }
    }
    out.push_str(">\n");
}

// ---------------------------------------------------------------------------------------
// Markdown and HTML
// ---------------------------------------------------------------------------------------

/// Render markdown (CommonMark, GitHub tables, strikethrough, task lists) to sanitized
/// HTML. Math (`$…$`, `$$…$$`) is kept verbatim inside `math` spans for a client-side
/// renderer; `attachment:` image links resolve to data URLs from `attachments`. When
/// `title` is given, the first level-1 heading's text is stored in it.
pub fn markdown_html(
    src: &str,
    attachments: Option<&Map<String, Value>>,
    mut title: Option<&mut Option<String>>,
) -> String {
    let opts = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_MATH;
    let mut in_h1 = false;
    let mut heading = String::new();
    let events = Parser::new_ext(src, opts).map(|event| match event {
        Event::InlineMath(m) => {
            let mut s = String::from("<span class=\"math math-inline\">$");
            escape_into(&mut s, &m);
            s.push_str("$</span>");
            if in_h1 {
                heading.push_str(&m);
            }
            Event::InlineHtml(CowStr::from(s))
        }
        Event::DisplayMath(m) => {
            let mut s = String::from("<span class=\"math math-display\">$$");
            escape_into(&mut s, &m);
            s.push_str("$$</span>");
            Event::InlineHtml(CowStr::from(s))
        }
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let dest_url = match dest_url.strip_prefix("attachment:") {
                Some(name) => attachment_url(attachments, name)
                    .map(CowStr::from)
                    .unwrap_or(CowStr::from("")),
                None => dest_url,
            };
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            })
        }
        Event::Start(Tag::Heading {
            level: HeadingLevel::H1,
            ..
        }) => {
            in_h1 = true;
            event
        }
        Event::End(TagEnd::Heading(HeadingLevel::H1)) => {
            in_h1 = false;
            if let Some(t) = title.as_deref_mut()
                && t.is_none()
                && !heading.trim().is_empty()
            {
                *t = Some(heading.trim().to_string());
            }
            heading.clear();
            event
        }
        Event::Text(ref t) | Event::Code(ref t) => {
            if in_h1 {
                heading.push_str(t);
            }
            event
        }
        other => other,
    });
    let mut html = String::with_capacity(src.len() * 2);
    pulldown_cmark::html::push_html(&mut html, events);
    sanitize_html(&html)
}

fn attachment_url(attachments: Option<&Map<String, Value>>, name: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
    let bundle = attachments?.get(decoded.as_ref())?.as_object()?;
    for mime in [
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/svg+xml",
    ] {
        let Some(value) = bundle.get(mime) else {
            continue;
        };
        let text = bundle_text(value)?;
        if mime == "image/svg+xml" && text.trim_start().starts_with('<') {
            let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            return Some(format!("data:{mime};base64,{b64}"));
        }
        let b64: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        if base64::engine::general_purpose::STANDARD
            .decode(&b64)
            .is_ok()
        {
            return Some(format!("data:{mime};base64,{b64}"));
        }
    }
    None
}

static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut b = ammonia::Builder::default();
    b.add_generic_attributes(["class", "id"])
        .add_tag_attributes("td", ["colspan", "rowspan"])
        .add_tag_attributes("th", ["colspan", "rowspan", "scope"])
        .add_tag_attributes("table", ["border"])
        .add_tag_attributes("input", ["type", "checked", "disabled"])
        .add_tags(["input"])
        .id_prefix(Some("nb-"))
        .add_url_schemes(["data"])
        .attribute_filter(|element, attribute, value| {
            // A notebook's classes are its own: prefixed, so that it cannot dress its output
            // as nbforge's messages (`p.error`, `p.ok`, `.output.note`). Only the math
            // classes that Markdown rendering itself writes stay as they are.
            if attribute == "class" {
                const KEPT: &[&str] = &["math", "math-inline", "math-display"];
                let prefixed: Vec<String> = value
                    .split_ascii_whitespace()
                    .map(|c| {
                        if KEPT.contains(&c) {
                            c.to_owned()
                        } else {
                            format!("nb-{c}")
                        }
                    })
                    .collect();
                return Some(Cow::Owned(prefixed.join(" ")));
            }
            // The scheme as a browser reads it: the URL parser drops leading C0 controls
            // and spaces and tabs and newlines anywhere (`\x01data:`, `da\tta:`).
            let scheme = url::Url::parse(value)
                .ok()
                .map(|u| u.scheme().to_ascii_lowercase());
            if scheme.as_deref() != Some("data") {
                if element == "input" && attribute == "type" && value != "checkbox" {
                    return None;
                }
                return Some(Cow::Borrowed(value));
            }
            let v = value.trim_start_matches(|c: char| c <= ' ');
            let image = [
                "data:image/png;",
                "data:image/jpeg;",
                "data:image/gif;",
                "data:image/webp;",
                "data:image/svg+xml;",
            ]
            .iter()
            .any(|p| v.get(..p.len()).is_some_and(|q| q.eq_ignore_ascii_case(p)));
            if element == "img" && attribute == "src" && image {
                Some(Cow::Borrowed(value))
            } else {
                None
            }
        });
    b
});

/// Sanitize untrusted HTML: no scripts, event handlers, `javascript:` URLs, frames, forms,
/// embedded objects or style; `data:` URLs only as image sources.
pub fn sanitize_html(html: &str) -> String {
    SANITIZER.clean(html).to_string()
}

// ---------------------------------------------------------------------------------------
// Text helpers
// ---------------------------------------------------------------------------------------

/// Escape text for HTML element content and attribute values.
pub fn escape_into(out: &mut String, text: &str) {
    let mut last = 0;
    for (i, b) in text.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&text[last..i]);
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(&text[last..]);
}

/// Escape text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

/// Terminal text as a terminal would leave it: escapes stripped, and a carriage return
/// (progress bars) overwriting its line.
fn terminal_text(text: &str) -> Cow<'_, str> {
    let stripped = crate::text::strip_ansi(text);
    if !stripped.contains('\r') {
        return stripped;
    }
    let mut out = String::with_capacity(stripped.len());
    for line in stripped.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b.strip_suffix('\r').unwrap_or(b), "\n"),
            None => (line, ""),
        };
        let last = body.rsplit('\r').find(|s| !s.is_empty()).unwrap_or("");
        out.push_str(last);
        out.push_str(nl);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worksheet;
    use crate::worksheet::testing::*;

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(
            crate::text::strip_ansi(
                "\x1b[0;31mKeyError\x1b[0m: \x1b]8;;http://x\x07link\x1b]8;;\x07"
            ),
            "KeyError: link"
        );
    }

    #[test]
    fn carriage_returns_overwrite() {
        assert_eq!(terminal_text("10%\r50%\r100%\ndone\r\n"), "100%\ndone\n");
    }

    #[test]
    fn math_is_kept_verbatim() {
        let html = markdown_html("Let $a_1 * b_2 < c$ and\n\n$$x^2$$", None, None);
        assert!(html.contains("$a_1 * b_2 &lt; c$"), "{html}");
        assert!(html.contains("$$x^2$$"), "{html}");
    }

    #[test]
    fn code_is_hidden_and_outputs_follow_display_priority() {
        let html = render_file("growth_curve.ipynb");
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

        let svg = render_file("svg_plot.ipynb");
        assert!(svg.contains("src=\"data:image/svg+xml;base64,"));
        assert!(!svg.contains("<svg"));

        let tables = render_file("pandas_tables.ipynb");
        assert!(
            tables.contains("<table"),
            "pandas HTML preferred over text/plain"
        );
        assert!(tables.contains("GENE0"));
        assert!(tables.contains("<del>Old normalisation</del>"));
        assert!(!tables.contains("<style"));

        let mix = render_file("display_mix.ipynb");
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
        let html = render_file("errors.ipynb");
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

        let streams = render_file("streams.ipynb");
        assert!(streams.contains("read batch 39"));
        assert!(streams.contains("&lt;b&gt;not html&lt;/b&gt; &amp; kept as text"));
        assert_eq!(
            streams.matches("class=\"output stream stdout\"").count(),
            2,
            "chunks of one stream are merged"
        );

        let widgets = render_file("widgets.ipynb");
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
        let html = render_file("hidden_cells.ipynb");
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
        let html = render_file("dashboard.ipynb");
        assert!(html.contains(
            "class=\"worksheet dashboard-grid\" style=\"--cols: 12; --row-height: 20px\""
        ));
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

    /// Finding 19: the `data:` check missed C0 control characters before the scheme, and a
    /// notebook's `class` attributes could dress its output as nbforge's own messages.
    #[test]
    fn finding_19_data_urls_behind_control_characters_and_borrowed_classes() {
        for hostile in [
            "<a href=\"\u{1}data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>",
            "<a href=\" \u{1f}DATA:text/html,<script>alert(1)</script>\">x</a>",
            "<a href=\"da\tta:text/html,x\">x</a>",
            "<img src=\"\u{1}data:text/html,x\">",
        ] {
            let clean = sanitize_html(hostile);
            assert!(
                !clean.to_ascii_lowercase().contains("text/html"),
                "{hostile:?} -> {clean}"
            );
        }
        let image = sanitize_html("<img src=\"data:image/png;base64,iVBORw0KGgo=\">");
        assert!(image.contains("src=\"data:image/png;base64,"), "{image}");

        let imitation = sanitize_html("<p class=\"ok error\">Your account is verified</p>");
        assert_eq!(
            imitation,
            "<p class=\"nb-ok nb-error\">Your account is verified</p>"
        );
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
    fn rendered_bodies_of_the_corpus() {
        // Embedded images are long base64 runs: the snapshot keeps their type and size.
        let base64 = regex::Regex::new(r"base64,[A-Za-z0-9+/=]{64,}").unwrap();
        let hostile = corpus_dir().join("hostile/xss.ipynb");
        for path in corpus().into_iter().chain([hostile]) {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let rel = path.strip_prefix(corpus_dir()).unwrap().to_str().unwrap();
            let body = render_file(rel);
            let body = base64.replace_all(&body, |c: &regex::Captures| {
                format!("base64,[{} bytes]", c[0].len() - "base64,".len())
            });
            insta::assert_snapshot!(format!("body_{name}"), body);
        }
    }
}
