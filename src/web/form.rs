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
    /// For `file`: the files of the viewer's `~/data/` to pick from.
    pub options: Vec<FileOption>,
    /// For `file`: what picking nothing means (the notebook's own default).
    pub default_label: String,
    /// For `file`: a note under the picker (log in, or the files could not be listed).
    pub note: Option<String>,
    /// For `file`: where the upload form posts (`/data?next=…`), when the viewer may upload.
    pub upload: Option<String>,
}

/// A file of `~/data/` offered by a file parameter's picker.
#[derive(Debug, Serialize)]
pub struct FileOption {
    pub name: String,
    /// The size for people (`1.2 MiB`).
    pub size: String,
    pub selected: bool,
}

/// The viewer's `~/data/` for the file parameters of a form.
#[derive(Debug, Clone)]
pub struct DataChoice {
    /// The files (name, size in bytes), or `None` when they could not be listed.
    pub files: Option<Vec<(String, u64)>>,
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

impl FormView {
    /// Offers the files of the viewer's `~/data/` to the form's file parameters, with an
    /// upload that comes back to the form.
    pub fn with_data(mut self, data: &DataChoice) -> FormView {
        let next: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("next", &self.action)
            .finish();
        for f in self.fields.iter_mut().filter(|f| f.control == "file") {
            let current = f.value.trim().to_owned();
            let current = crate::worksheet::params::file::picked_name(&current).ok();
            f.note = None;
            match &data.files {
                Some(files) => {
                    f.options = files
                        .iter()
                        .map(|(name, size)| FileOption {
                            name: name.clone(),
                            size: human_size(*size),
                            selected: current == Some(name.as_str()),
                        })
                        .collect();
                    if files.is_empty() {
                        f.note = Some("Your ~/data folder has no files yet: upload one.".into());
                    }
                }
                None => f.note = Some("Your ~/data folder could not be listed just now.".into()),
            }
            f.upload = Some(format!("/data?{next}"));
        }
        self
    }
}

/// `1.2 MiB`, `512 B`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
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
        options: Vec::new(),
        default_label: String::new(),
        note: None,
        upload: None,
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
        ParamType::File => {
            view.control = "file";
            // Only a picked file is selected; the default is the empty choice.
            view.value = current.cloned().unwrap_or_default();
            view.default_label = match &p.default {
                ParamValue::Str(path) => format!("the worksheet's own: {path}"),
                _ => "none".to_owned(),
            };
            view.note = Some("Log in to run this worksheet on your own files.".to_owned());
        }
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
        ParamType::File => "a file of your ~/data".to_string(),
        ParamType::Unsupported => "fixed".to_string(),
    };
    if p.optional {
        format!("{base}, optional")
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worksheet::params::parse_parameters_source;

    #[test]
    fn sizes_read_for_people() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(100 << 20), "100.0 MiB");
        assert_eq!(human_size(3 << 40), "3.0 TiB");
    }

    #[test]
    fn file_fields_pick_among_the_data_files() {
        let params = parse_parameters_source("counts = 'data/counts.csv'  # type: file\n");
        let plain = FormView::new(&params, &HashMap::new(), &[], "/w/lab/x/v1/a.ipynb", "post");
        let f = &plain.fields[0];
        assert_eq!(f.control, "file");
        assert_eq!(f.value, "", "the default is the empty choice, never a file");
        assert!(f.note.as_deref().unwrap().contains("Log in"));
        assert!(f.upload.is_none() && f.options.is_empty());

        let submitted = HashMap::from([("counts".to_owned(), "b.csv".to_owned())]);
        let data = DataChoice {
            files: Some(vec![("a.csv".into(), 10), ("b.csv".into(), 2048)]),
        };
        let form = FormView::new(&params, &submitted, &[], "/w/lab/x/v1/a b.ipynb", "post")
            .with_data(&data);
        let f = &form.fields[0];
        let shown: Vec<(&str, &str, bool)> = f
            .options
            .iter()
            .map(|o| (o.name.as_str(), o.size.as_str(), o.selected))
            .collect();
        assert_eq!(
            shown,
            [("a.csv", "10 B", false), ("b.csv", "2.0 KiB", true)]
        );
        assert_eq!(
            f.upload.as_deref(),
            Some("/data?next=%2Fw%2Flab%2Fx%2Fv1%2Fa+b.ipynb")
        );
        assert!(f.note.is_none());
        let unlisted = FormView::new(&params, &HashMap::new(), &[], "/", "post")
            .with_data(&DataChoice { files: None });
        assert!(
            unlisted.fields[0]
                .note
                .as_deref()
                .unwrap()
                .contains("could not be listed")
        );
    }
}
