//! The parameter form of a worksheet as the `form.html` template shows it: one labelled,
//! typed input per parameter with its help text, its current value (as submitted, else
//! the default) and its errors. Works without JavaScript. Read-only parameters are shown
//! disabled with the reason.

use std::collections::HashMap;

use serde::Serialize;

use crate::worksheet::{FORM_MARKER, FieldError, ParamType, ParamValue, Parameter};

/// A form, ready for `form.html`.
#[derive(Debug, Serialize)]
pub struct FormView {
    pub action: String,
    pub method: &'static str,
    pub marker: &'static str,
    /// Errors about names that are not parameters.
    pub other_errors: Vec<String>,
    pub fields: Vec<FieldView>,
}

/// One field of a [`FormView`].
#[derive(Debug, Serialize)]
pub struct FieldView {
    pub id: String,
    pub name: String,
    /// `fixed`, `checkbox`, `textarea` or `input`.
    pub control: &'static str,
    pub type_label: Option<String>,
    /// For `input`: `text` or `number`.
    pub input_type: &'static str,
    pub step: Option<&'static str>,
    pub inputmode: Option<&'static str>,
    pub required: bool,
    pub value: String,
    pub checked: bool,
    pub invalid: bool,
    pub described_by: Option<String>,
    /// Why a `fixed` parameter cannot be set.
    pub reason: Option<String>,
    pub help: Option<String>,
    pub error_text: String,
}

impl FormView {
    /// The form for `params` posting to `action` with `method` (`get` or `post`).
    pub fn new(
        params: &[Parameter],
        values: &HashMap<String, String>,
        errors: &[FieldError],
        action: &str,
        method: &str,
    ) -> FormView {
        FormView {
            action: action.to_owned(),
            method: if method.eq_ignore_ascii_case("get") {
                "get"
            } else {
                "post"
            },
            marker: FORM_MARKER,
            other_errors: errors
                .iter()
                .filter(|e| !params.iter().any(|p| p.name == e.name))
                .map(ToString::to_string)
                .collect(),
            fields: params
                .iter()
                .map(|p| field(p, values.get(&p.name), errors))
                .collect(),
        }
    }
}

fn field(p: &Parameter, current: Option<&String>, errors: &[FieldError]) -> FieldView {
    let id = format!("param-{}", p.name);
    let errs: Vec<&str> = errors
        .iter()
        .filter(|e| e.name == p.name)
        .map(|e| e.message.as_str())
        .collect();
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
    let value = current
        .cloned()
        .unwrap_or_else(|| p.default.to_form_string());
    let mut view = FieldView {
        id,
        name: p.name.clone(),
        control: "input",
        type_label: (!matches!(p.kind, ParamType::Unsupported)).then(|| type_label(p)),
        input_type: "text",
        step: None,
        inputmode: None,
        required: false,
        value,
        checked: false,
        invalid: !errs.is_empty(),
        described_by: (!described.is_empty()).then(|| described.join(" ")),
        reason: None,
        help: p.help.clone(),
        error_text: errs.join(" "),
    };
    if let Err(reason) = &p.supported {
        view.control = "fixed";
        view.value = p.source.clone();
        view.reason = Some(reason.clone());
        return view;
    }
    match &p.kind {
        ParamType::Bool => {
            view.control = "checkbox";
            view.checked = current.map_or(matches!(p.default, ParamValue::Bool(true)), |v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "true" | "on" | "1" | "yes"
                )
            });
        }
        ParamType::List(_) => view.control = "textarea",
        kind => {
            let (number, step, inputmode) = match kind {
                ParamType::Int => (true, Some("1"), Some("numeric")),
                ParamType::Float => (true, Some("any"), Some("decimal")),
                _ => (false, None, None),
            };
            // Infinity and NaN cannot be typed into a number input.
            let number = number && !view.value.parse::<f64>().is_ok_and(|v| !v.is_finite());
            view.input_type = if number { "number" } else { "text" };
            view.step = step;
            view.inputmode = inputmode;
            view.required = number && !p.optional;
        }
    }
    view
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
