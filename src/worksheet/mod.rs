//! Worksheets: a notebook shown without its code — markdown, outputs, and a form for its
//! parameters. This module owns the nbformat model ([`Notebook`]), reading the papermill
//! `parameters` cell ([`parameters`]), validating form values ([`validate`]), writing the
//! `injected-parameters` cell ([`parameterize`]), rendering without code into sanitized
//! HTML fragments ([`render`]). Pages around those fragments are `web`'s; the `nbforge
//! render` command is `cli::render` and the rendering benchmark `bench::worksheets`.

pub mod model;
pub mod params;
pub mod render;
#[cfg(test)]
mod testing;

pub use model::{Cell, CellType, MultilineString, Notebook, NotebookError, Output};
pub use params::{
    FORM_MARKER, FieldError, INJECTED_TAG, PARAMETERS_TAG, ParamType, ParamValue, Parameter,
    ParameterErrors, Values, injected_source, parameterize, parameterize_with, parameters,
    validate,
};
pub use render::{RenderOptions, Rendered, markdown_html, render, sanitize_html};
