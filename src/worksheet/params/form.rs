//! Form values (strings, as a browser submits them) validated against the parameters.

use super::literal::{Lit, Parser};
use super::{FORM_MARKER, FieldError, ParamType, ParamValue, Parameter, Values};
use std::collections::HashMap;

/// Validate form values (strings, as submitted) against the parameters.
///
/// A parameter missing from `form` keeps its default and is not in the result, except a
/// `bool` when the form marker [`FORM_MARKER`] is present (an unchecked checkbox is not
/// submitted, so it means `False`). Unknown names, read-only parameters and values of the
/// wrong type are errors naming the parameter.
pub fn validate(
    params: &[Parameter],
    form: &HashMap<String, String>,
) -> Result<Values, Vec<FieldError>> {
    let mut errors = Vec::new();
    let from_form = form.contains_key(FORM_MARKER);
    let mut unknown: Vec<&String> = form
        .keys()
        .filter(|k| k.as_str() != FORM_MARKER && !params.iter().any(|p| &p.name == *k))
        .collect();
    unknown.sort();
    for name in unknown {
        errors.push(FieldError {
            name: name.clone(),
            message: "there is no parameter of this name".into(),
        });
    }
    let mut values = Values::default();
    for p in params {
        let raw = match form.get(&p.name) {
            // No file picked: the notebook keeps its own default.
            Some(raw) if p.kind == ParamType::File && raw.trim().is_empty() => continue,
            Some(raw) => raw.as_str(),
            None if from_form && p.kind == ParamType::Bool && p.supported.is_ok() => "false",
            None => continue,
        };
        if let Err(reason) = &p.supported {
            errors.push(FieldError {
                name: p.name.clone(),
                message: format!("cannot be set: {reason}"),
            });
            continue;
        }
        match parse_form_value(p, raw) {
            Ok(v) => values.insert(p.name.clone(), v),
            Err(message) => errors.push(FieldError {
                name: p.name.clone(),
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

fn parse_form_value(p: &Parameter, raw: &str) -> Result<ParamValue, String> {
    if p.optional && raw.trim().is_empty() {
        return Ok(ParamValue::None);
    }
    match &p.kind {
        ParamType::List(elem) => {
            let items = split_list(raw, elem);
            items
                .iter()
                .map(|item| parse_scalar(elem, item).map_err(|e| format!("list item {e}")))
                .collect::<Result<Vec<_>, _>>()
                .map(ParamValue::List)
        }
        t => parse_scalar(t, raw),
    }
}

/// Items of a list field: one per line; numbers and booleans may also be separated by commas.
fn split_list(raw: &str, elem: &ParamType) -> Vec<String> {
    let lines = raw.lines().map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut out = Vec::new();
    for line in lines {
        if *elem == ParamType::Str {
            if !line.trim().is_empty() {
                out.push(line.to_string());
            }
        } else {
            out.extend(
                line.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        }
    }
    out
}

fn parse_scalar(t: &ParamType, raw: &str) -> Result<ParamValue, String> {
    let s = raw.trim();
    match t {
        ParamType::Int => {
            let mut p = Parser::new(s);
            match p.number() {
                Ok(Lit::Int(v)) if p.at_end() => Ok(ParamValue::Int(v)),
                Ok(Lit::Float(_)) => Err(format!("expected a whole number, got `{s}`")),
                Err(e) if e.contains("too large") => Err(e),
                _ => Err(format!("expected a whole number, got `{s}`")),
            }
        }
        ParamType::Float => {
            let lower = s.to_ascii_lowercase();
            let special = match lower.trim_start_matches(['+', '-']) {
                "inf" | "infinity" => Some(f64::INFINITY),
                "nan" => Some(f64::NAN),
                _ => None,
            };
            if let Some(v) = special {
                return Ok(ParamValue::Float(if lower.starts_with('-') {
                    -v
                } else {
                    v
                }));
            }
            let mut p = Parser::new(s);
            match p.number() {
                Ok(Lit::Int(v)) if p.at_end() => Ok(ParamValue::Float(v as f64)),
                Ok(Lit::Float(v)) if p.at_end() => Ok(ParamValue::Float(v)),
                _ => Err(format!("expected a number, got `{s}`")),
            }
        }
        ParamType::Str => Ok(ParamValue::Str(raw.to_string())),
        // A file of `~/data/`, by name; whether it is there is checked where the home is.
        ParamType::File => super::file::picked_name(raw)
            .map(|name| ParamValue::Str(super::file::container_path(name))),
        ParamType::Bool => match lower_str(s).as_str() {
            "true" | "on" | "1" | "yes" => Ok(ParamValue::Bool(true)),
            "false" | "off" | "0" | "no" | "" => Ok(ParamValue::Bool(false)),
            _ => Err(format!("expected true or false, got `{s}`")),
        },
        ParamType::List(_) | ParamType::Unsupported => {
            Err("this parameter cannot be set from a form".into())
        }
    }
}

fn lower_str(s: &str) -> String {
    s.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worksheet;
    use crate::worksheet::testing::*;

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

        let files = worksheet::params::parse_parameters_source(
            "counts = 'data/counts.csv'  # type: file\nrate = 1.0\n",
        );
        let picked = worksheet::validate(&files, &form(&[("counts", "my counts.csv")])).unwrap();
        assert_eq!(
            picked.get("counts"),
            Some(&ParamValue::Str("/home/jovyan/data/my counts.csv".into()))
        );
        let again = worksheet::validate(
            &files,
            &form(&[("counts", "/home/jovyan/data/my counts.csv")]),
        )
        .unwrap();
        assert_eq!(again, picked, "a stored value reads back the same");
        let none = worksheet::validate(&files, &form(&[("counts", " "), (FORM_MARKER, "1")]));
        assert_eq!(
            none.unwrap().get("counts"),
            None,
            "nothing picked: the default"
        );
        let errors =
            worksheet::validate(&files, &form(&[("counts", "../../etc/passwd")])).unwrap_err();
        assert_eq!(errors[0].name, "counts");
        assert!(errors[0].message.contains("`..`"), "{}", errors[0]);

        let odd =
            worksheet::params::parse_parameters_source("a = np.ones(2)\nb: Optional[int] = 3\n");
        let errors = worksheet::validate(&odd, &form(&[("a", "1")])).unwrap_err();
        assert!(errors[0].message.contains("cannot be set"), "{}", errors[0]);
        let values = worksheet::validate(&odd, &form(&[("b", "")])).unwrap();
        assert_eq!(values.get("b"), Some(&ParamValue::None));
    }
}
