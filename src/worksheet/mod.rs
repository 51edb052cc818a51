//! Worksheets: a notebook shown without its code — markdown, outputs, and a form for its
//! parameters. This module owns the nbformat model ([`Notebook`]), reading the papermill
//! `parameters` cell ([`parameters`]), validating form values ([`validate`]), writing the
//! `injected-parameters` cell ([`parameterize`]), rendering without code ([`render`]),
//! the parameter form and page HTML ([`form_html`], [`page_html`], [`CSP`]), the
//! `nbforge render` command ([`cli`]) and the rendering benchmark ([`bench`]).

pub mod bench;
pub mod cli;
pub mod html;
pub mod model;
pub mod params;
pub mod render;
#[cfg(test)]
mod testing;

pub use html::{CSP, form_html, page_html};
pub use model::{Cell, CellType, MultilineString, Notebook, NotebookError, Output};
pub use params::{
    FORM_MARKER, FieldError, INJECTED_TAG, PARAMETERS_TAG, ParamType, ParamValue, Parameter,
    ParameterErrors, Values, injected_source, parameterize, parameterize_with, parameters,
    validate,
};
pub use render::{RenderOptions, Rendered, markdown_html, render, sanitize_html};

/// A summary of the values a notebook was run with, for a static page.
pub fn values_summary_html(values: &Values) -> String {
    if values.is_empty() {
        return String::new();
    }
    let mut out = String::from("<section class=\"parameters-used\">\n<h2>Parameters</h2>\n<dl>\n");
    for (name, value) in &values.0 {
        out.push_str("<dt>");
        render::escape_into(&mut out, name);
        out.push_str("</dt><dd><code>");
        render::escape_into(&mut out, &value.to_python());
        out.push_str("</code></dd>\n");
    }
    out.push_str("</dl>\n</section>\n");
    out
}
