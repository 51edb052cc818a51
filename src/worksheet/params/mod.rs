//! Worksheet parameters: the papermill `parameters` cell read as typed form fields, form
//! values validated against them, and the `injected-parameters` cell written exactly as
//! papermill's Python translator writes it.
//!
//! This module holds the shared types. The parameters cell is read by `cell` with a small
//! parser for Python literals (`literal`: ints, floats, strings in every quoting style,
//! `True`/`False`/`None`, lists and tuples of those) and optional type annotations
//! (`annotation`), including `# type: file` comments (`file`: paths in the user's
//! `~/data/`). Anything else becomes a read-only field with a reason. Form values are
//! checked by `form`; the injected cell is written by `inject`.

mod annotation;
mod cell;
pub mod file;
mod form;
mod inject;
mod literal;

pub use cell::parse_parameters_source;
pub use form::validate;
pub use inject::{injected_source, parameterize, parameterize_with};

use super::model::Notebook;
use std::fmt;

/// The tag papermill looks for.
pub const PARAMETERS_TAG: &str = "parameters";
/// The tag of the cell papermill inserts.
pub const INJECTED_TAG: &str = "injected-parameters";
/// Hidden field the parameter form always sends, so that an unchecked checkbox (which
/// browsers do not submit) reads as `False` rather than "keep the default".
pub const FORM_MARKER: &str = "_worksheet_form";

/// The type of a parameter's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamType {
    Int,
    Float,
    Str,
    Bool,
    List(Box<ParamType>),
    /// A file of the user's `~/data/` (`# type: file`): its value is the file's path in
    /// the run's container (see [`file`]).
    File,
    /// No usable type (the field is read-only).
    Unsupported,
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamType::Int => f.write_str("int"),
            ParamType::Float => f.write_str("float"),
            ParamType::Str => f.write_str("str"),
            ParamType::Bool => f.write_str("bool"),
            ParamType::List(t) => write!(f, "list[{t}]"),
            ParamType::File => f.write_str("file"),
            ParamType::Unsupported => f.write_str("unsupported"),
        }
    }
}

/// A parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    None,
    List(Vec<ParamValue>),
}

/// One field of a worksheet's parameter form.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub kind: ParamType,
    /// `None` is accepted (annotation `Optional[T]` / `T | None`, or a `None` default).
    pub optional: bool,
    pub default: ParamValue,
    /// The trailing comment of the assignment.
    pub help: Option<String>,
    /// The type annotation as written, if any.
    pub annotation: Option<String>,
    /// The right-hand side as written.
    pub source: String,
    /// `Err(reason)` when the value cannot be set from a form.
    pub supported: Result<(), String>,
}

/// Validated values, in the order of the parameters cell.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Values(pub Vec<(String, ParamValue)>);

impl Values {
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Set a value, replacing an earlier one of the same name.
    pub fn insert(&mut self, name: impl Into<String>, value: ParamValue) {
        let name = name.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A form value that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The parameter's name (as submitted).
    pub name: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parameter `{}`: {}", self.name, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Errors of [`parameterize_with`]: one per refused field.
#[derive(Debug, thiserror::Error)]
#[error("invalid parameters: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ParameterErrors(pub Vec<FieldError>);

/// The parameters of a notebook: the assignments of its first cell tagged `parameters`.
/// A name assigned twice keeps its last assignment (as Python would).
pub fn parameters(nb: &Notebook) -> Vec<Parameter> {
    let Some(index) = nb.find_tagged(PARAMETERS_TAG) else {
        return Vec::new();
    };
    let mut params = parse_parameters_source(&nb.cells[index].source.text());
    // The injected cell is written in Python; other kernels' notebooks are shown read-only.
    if let Some(language) = nb.language()
        && !language.eq_ignore_ascii_case("python")
    {
        for p in &mut params {
            p.supported = Err(format!(
                "only Python notebooks can be run with new values (this one is {language})"
            ));
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worksheet::testing::*;
    use crate::worksheet::{self, Notebook};

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
    fn foreign_kernel_parameters_are_read_only() {
        // An R notebook's parameters are read but cannot be set: the injected cell is Python.
        let r = Notebook::from_json(r#"{"nbformat":4,"nbformat_minor":5,"metadata":{"kernelspec":{"name":"ir","language":"R","display_name":"R"}},"cells":[{"cell_type":"code","id":"p","metadata":{"tags":["parameters"]},"execution_count":null,"outputs":[],"source":"alpha = 0.05"}]}"#).unwrap();
        let params = worksheet::parameters(&r);
        assert_eq!(params.len(), 1);
        assert!(params[0].supported.as_ref().unwrap_err().contains("R"));
        assert!(worksheet::validate(&params, &form(&[("alpha", "0.1")])).is_err());
    }
}
