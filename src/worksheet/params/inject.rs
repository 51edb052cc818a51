//! Values written as Python (papermill's translator) and the `injected-parameters` cell
//! inserted as papermill's `parameterize_notebook` does.

use super::super::model::{Cell, CellType, MultilineString, Notebook};
use super::{
    INJECTED_TAG, PARAMETERS_TAG, ParamValue, ParameterErrors, Values, parameters, validate,
};
use serde_json::{Map, Value};
use std::collections::HashMap;

impl ParamValue {
    /// The value as papermill's Python translator writes it.
    pub fn to_python(&self) -> String {
        let mut out = String::new();
        self.write_python(&mut out);
        out
    }

    fn write_python(&self, out: &mut String) {
        match self {
            ParamValue::None => out.push_str("None"),
            ParamValue::Bool(true) => out.push_str("True"),
            ParamValue::Bool(false) => out.push_str("False"),
            ParamValue::Int(v) => out.push_str(&v.to_string()),
            ParamValue::Float(v) => out.push_str(&python_float(*v)),
            ParamValue::Str(s) => {
                out.push('"');
                out.push_str(&unicode_escape(s).replace('"', "\\\""));
                out.push('"');
            }
            ParamValue::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_python(out);
                }
                out.push(']');
            }
        }
    }

    /// The value as a form field shows it.
    pub fn to_form_string(&self) -> String {
        match self {
            ParamValue::None => String::new(),
            ParamValue::Bool(b) => b.to_string(),
            ParamValue::Int(v) => v.to_string(),
            ParamValue::Float(v) => python_float(*v).replace("float('", "").replace("')", ""),
            ParamValue::Str(s) => s.clone(),
            ParamValue::List(items) => items
                .iter()
                .map(ParamValue::to_form_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The value as JSON (for `metadata.papermill.parameters`).
    pub fn to_json(&self) -> Value {
        match self {
            ParamValue::None => Value::Null,
            ParamValue::Bool(b) => Value::Bool(*b),
            ParamValue::Int(v) => Value::from(*v),
            ParamValue::Float(v) => serde_json::Number::from_f64(*v)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(python_float(*v))),
            ParamValue::Str(s) => Value::String(s.clone()),
            ParamValue::List(items) => {
                Value::Array(items.iter().map(ParamValue::to_json).collect())
            }
        }
    }
}

/// Python's `str(float)`: shortest round-trip digits, exponent form below 1e-4 and from 1e16,
/// and papermill's `float('nan')` / `float('inf')` for non-finite values.
fn python_float(v: f64) -> String {
    if v.is_nan() {
        return "float('nan')".into();
    }
    if v.is_infinite() {
        return if v < 0.0 {
            "float('-inf')".into()
        } else {
            "float('inf')".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits: "1.2345e-5", "1e16".
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        let zeros = "0".repeat((-point) as usize);
        format!("{sign}0.{zeros}{digits}")
    } else {
        let point = point as usize;
        if digits.len() <= point {
            let zeros = "0".repeat(point - digits.len());
            format!("{sign}{digits}{zeros}.0")
        } else {
            format!("{sign}{}.{}", &digits[..point], &digits[point..])
        }
    }
}

/// Python's `str.encode('unicode_escape').decode('utf-8')`.
fn unicode_escape(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let code = c as u32;
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ if code < 0x20 || (0x7f..0x100).contains(&code) => {
                let _ = write!(out, "\\x{code:02x}");
            }
            _ if code >= 0x10000 => {
                let _ = write!(out, "\\U{code:08x}");
            }
            _ if code >= 0x100 => {
                let _ = write!(out, "\\u{code:04x}");
            }
            _ => out.push(c),
        }
    }
    out
}

/// The source papermill's `PythonTranslator.codify` writes (without the optional `black`
/// formatting pass): a `# Parameters` comment, then one `name = value` line per value.
pub fn injected_source(values: &Values) -> String {
    let mut content = String::from("# Parameters\n");
    for (name, value) in &values.0 {
        content.push_str(name);
        content.push_str(" = ");
        content.push_str(&value.to_python());
        content.push('\n');
    }
    content
}

/// Insert the `injected-parameters` cell as papermill's `parameterize_notebook` does:
/// replacing an existing injected cell, else right after the `parameters` cell, else at
/// the top. Like papermill (which upgrades the notebook to nbformat 4.5 first), every
/// cell gets an `id`; the values are recorded in `metadata.papermill.parameters`.
pub fn parameterize(nb: &Notebook, values: &Values) -> Notebook {
    let mut nb = nb.clone();
    if nb.nbformat_minor < 5 {
        for cell in nb.cells.iter_mut() {
            if cell.id.is_none() {
                cell.id = Some(new_cell_id());
            }
        }
        nb.metadata
            .insert("orig_nbformat_minor".into(), Value::from(nb.nbformat_minor));
        nb.nbformat_minor = 5;
    }
    let mut metadata = Map::new();
    metadata.insert(
        "tags".into(),
        Value::Array(vec![Value::String(INJECTED_TAG.into())]),
    );
    let mut extra = Map::new();
    extra.insert("execution_count".into(), Value::Null);
    let cell = Cell {
        cell_type: CellType::Code,
        id: Some(new_cell_id()),
        metadata,
        source: MultilineString::One(injected_source(values)),
        outputs: Some(Vec::new()),
        attachments: None,
        extra,
    };
    if let Some(i) = nb.find_tagged(INJECTED_TAG) {
        nb.cells[i] = cell;
    } else if let Some(i) = nb.find_tagged(PARAMETERS_TAG) {
        nb.cells.insert(i + 1, cell);
    } else {
        nb.cells.insert(0, cell);
    }
    let params: Map<String, Value> = values
        .0
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    let papermill = nb
        .metadata
        .entry("papermill")
        .or_insert_with(|| Value::Object(Map::new()));
    if !papermill.is_object() {
        *papermill = Value::Object(Map::new());
    }
    if let Some(obj) = papermill.as_object_mut() {
        obj.insert("parameters".into(), Value::Object(params));
    }
    nb
}

/// Validate string values and parameterize in one step; errors name each bad parameter.
pub fn parameterize_with(
    nb: &Notebook,
    form: &HashMap<String, String>,
) -> Result<Notebook, ParameterErrors> {
    let params = parameters(nb);
    let values = validate(&params, form).map_err(ParameterErrors)?;
    Ok(parameterize(nb, &values))
}

/// An nbformat cell id: 8 lowercase hex characters, random (as nbformat's `random_cell_id`).
fn new_cell_id() -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(8);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worksheet::testing::*;
    use crate::worksheet::{self, INJECTED_TAG};

    #[test]
    fn python_float_matches_repr() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456789.125, "123456789.125"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (f64::NAN, "float('nan')"),
            (f64::NEG_INFINITY, "float('-inf')"),
        ];
        for (v, want) in cases {
            assert_eq!(python_float(v), want, "{v}");
        }
    }

    #[test]
    fn strings_escape_like_unicode_escape() {
        let v = ParamValue::Str("a\"b'c\\d\n\té€😀\x01".into());
        assert_eq!(v.to_python(), r#""a\"b'c\\d\n\t\xe9\u20ac\U0001f600\x01""#);
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
}
