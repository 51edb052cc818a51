//! The notebook model: nbformat 4 documents read and written with serde.
//!
//! Only the fields the worksheet needs are typed; everything else a notebook carries
//! (widget state, extension metadata, `execution_count`, fields of future minor versions)
//! is kept in `extra` maps so that writing a notebook back loses nothing.

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;

/// Why a notebook could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NotebookError {
    /// The bytes are not JSON (or not JSON shaped like a notebook at the top level).
    #[error("notebook is not valid JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    /// One cell does not have the shape nbformat 4 describes.
    #[error("cell {index} (line {line}) is malformed: {message}")]
    Cell {
        /// Zero-based cell index, as nbformat and papermill count cells.
        index: usize,
        /// Line of the `"cells"` array where the cell's JSON starts, when known (0 otherwise).
        line: usize,
        message: String,
    },
    /// The document is JSON but not an nbformat 4 notebook.
    #[error("unsupported notebook format {major}.{minor}: only nbformat 4 is supported")]
    Version { major: u64, minor: u64 },
}

impl NotebookError {
    fn from_json(err: &serde_json::Error) -> Self {
        let message = err.to_string();
        // serde_json appends " at line L column C"; keep the message without it.
        let message = match message.rfind(" at line ") {
            Some(at) => message[..at].to_string(),
            None => message,
        };
        NotebookError::Json {
            line: err.line(),
            column: err.column(),
            message,
        }
    }
}

/// A Jupyter notebook (nbformat 4.0–4.5).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notebook {
    pub nbformat: u64,
    pub nbformat_minor: u64,
    /// Notebook metadata, kept whole (kernelspec, widgets, papermill, dashboards, voila, ...).
    pub metadata: Map<String, Value>,
    pub cells: Vec<Cell>,
    /// Top-level fields nbformat does not define.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct RawNotebook {
    nbformat: Option<u64>,
    nbformat_minor: Option<u64>,
    #[serde(default)]
    metadata: Map<String, Value>,
    #[serde(default)]
    cells: Vec<Value>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// The kind of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellType {
    Code,
    Markdown,
    Raw,
}

/// One notebook cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub cell_type: CellType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub source: MultilineString,
    /// Outputs of a code cell (`None` for markdown and raw cells).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<Output>>,
    /// `attachments` of markdown and raw cells: name → MIME bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Map<String, Value>>,
    /// Other fields (`execution_count`, unknown keys).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One output of a code cell. Fields that do not apply to an output type are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// `stream`, `display_data`, `execute_result`, `error`, or something newer.
    pub output_type: String,
    /// Stream name (`stdout`, `stderr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Stream text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<MultilineString>,
    /// MIME bundle of display data and execute results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evalue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<Vec<String>>,
    /// Other fields (`execution_count`, `transient`, unknown keys).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// nbformat's "multiline string": a string, or a list of strings to be concatenated.
/// The form read is the form written back; both forms of the same text are equal.
#[derive(Debug, Clone, Eq)]
pub enum MultilineString {
    One(String),
    Lines(Vec<String>),
}

impl PartialEq for MultilineString {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl Default for MultilineString {
    fn default() -> Self {
        MultilineString::One(String::new())
    }
}

impl MultilineString {
    /// The whole text.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            MultilineString::One(s) => std::borrow::Cow::Borrowed(s),
            MultilineString::Lines(lines) if lines.len() == 1 => {
                std::borrow::Cow::Borrowed(&lines[0])
            }
            MultilineString::Lines(lines) => std::borrow::Cow::Owned(lines.concat()),
        }
    }

    /// Split text into lines the way nbformat writes them (each line keeps its `\n`).
    pub fn lines_of(text: &str) -> MultilineString {
        MultilineString::Lines(text.split_inclusive('\n').map(str::to_string).collect())
    }
}

impl Serialize for MultilineString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MultilineString::One(s) => serializer.serialize_str(s),
            MultilineString::Lines(lines) => lines.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for MultilineString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MultilineString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MultilineString::One(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(MultilineString::One(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MultilineString::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut lines = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(line) = seq.next_element::<String>()? {
                    lines.push(line);
                }
                Ok(MultilineString::Lines(lines))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Text of a MIME bundle value: a string or a list of strings (nbformat), else `None`.
pub(super) fn bundle_text(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        Value::Array(items) => {
            let mut out = String::new();
            for item in items {
                out.push_str(item.as_str()?);
            }
            Some(std::borrow::Cow::Owned(out))
        }
        _ => None,
    }
}

impl Notebook {
    /// Read a notebook from JSON bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Notebook, NotebookError> {
        let raw: RawNotebook =
            serde_json::from_slice(bytes).map_err(|e| NotebookError::from_json(&e))?;
        let major = raw.nbformat.unwrap_or(0);
        let minor = raw.nbformat_minor.unwrap_or(0);
        if major != 4 {
            return Err(NotebookError::Version { major, minor });
        }
        let mut cells = Vec::with_capacity(raw.cells.len());
        for (index, value) in raw.cells.into_iter().enumerate() {
            let cell = Cell::deserialize(value).map_err(|e| NotebookError::Cell {
                index,
                line: cell_line(bytes, index).unwrap_or(0),
                message: e.to_string(),
            })?;
            cells.push(cell);
        }
        Ok(Notebook {
            nbformat: major,
            nbformat_minor: minor,
            metadata: raw.metadata,
            cells,
            extra: raw.extra,
        })
    }

    /// Read a notebook from a JSON string.
    pub fn from_json(text: &str) -> Result<Notebook, NotebookError> {
        Notebook::from_slice(text.as_bytes())
    }

    /// Write the notebook as nbformat does: keys sorted, one-space indent, multiline strings
    /// of sources and outputs as lists of lines, non-ASCII kept as UTF-8, trailing newline.
    pub fn to_json_pretty(&self) -> String {
        let mut value = match serde_json::to_value(self) {
            Ok(v) => v,
            // Serializing maps with string keys and plain values cannot fail.
            Err(_) => Value::Null,
        };
        split_multiline(&mut value);
        // nbformat sorts keys; maps keep insertion order when serde_json's `preserve_order`
        // is on.
        value.sort_all_objects();
        let mut out = Vec::with_capacity(4096);
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
        if value.serialize(&mut ser).is_err() {
            return String::new();
        }
        out.push(b'\n');
        String::from_utf8(out).unwrap_or_default()
    }

    /// Index of the first cell carrying `tag` in `metadata.tags`.
    pub fn find_tagged(&self, tag: &str) -> Option<usize> {
        self.cells.iter().position(|c| c.has_tag(tag))
    }

    /// The notebook's kernel language (`metadata.kernelspec.language`, else
    /// `metadata.language_info.name`).
    pub fn language(&self) -> Option<&str> {
        self.metadata
            .get("kernelspec")
            .and_then(|k| k.get("language"))
            .and_then(Value::as_str)
            .or_else(|| {
                self.metadata
                    .get("language_info")
                    .and_then(|l| l.get("name"))
                    .and_then(Value::as_str)
            })
    }
}

impl Cell {
    /// Tags from `metadata.tags` (non-string entries ignored).
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.metadata
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags().any(|t| t == tag)
    }

    /// `metadata.jupyter.<key>` as a boolean (false when absent).
    pub fn jupyter_flag(&self, key: &str) -> bool {
        self.metadata
            .get("jupyter")
            .and_then(|j| j.get(key))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// Best-effort line number of the `index`-th element of the top-level `"cells"` array.
fn cell_line(bytes: &[u8], index: usize) -> Option<usize> {
    let text = std::str::from_utf8(bytes).ok()?;
    // Cheap scan: find the `"cells"` key, then count its elements by bracket depth.
    let start = text.find("\"cells\"")?;
    let open = start + text[start..].find('[')?;
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    let mut element = 0usize;
    let mut element_started = false;
    for (offset, ch) in text[open + 1..].char_indices() {
        if in_str {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_str = false;
            }
            continue;
        }
        match ch {
            '"' => in_str = true,
            '{' | '[' => {
                if depth == 0 && !element_started {
                    if element == index {
                        let pos = open + 1 + offset;
                        return Some(text[..pos].matches('\n').count() + 1);
                    }
                    element_started = true;
                }
                depth += 1;
            }
            '}' | ']' => {
                if depth == 0 {
                    return None;
                }
                depth -= 1;
            }
            ',' if depth == 0 => {
                element += 1;
                element_started = false;
            }
            _ => {}
        }
    }
    None
}

/// Split `source`, stream `text` and textual MIME data into lists of lines, as nbformat's
/// writer does.
fn split_multiline(nb: &mut Value) {
    let Some(cells) = nb.get_mut("cells").and_then(Value::as_array_mut) else {
        return;
    };
    for cell in cells {
        if let Some(source) = cell.get_mut("source") {
            split_value(source);
        }
        if let Some(attachments) = cell.get_mut("attachments").and_then(Value::as_object_mut) {
            for bundle in attachments.values_mut() {
                split_bundle(bundle);
            }
        }
        let Some(outputs) = cell.get_mut("outputs").and_then(Value::as_array_mut) else {
            continue;
        };
        for output in outputs {
            if let Some(text) = output.get_mut("text") {
                split_value(text);
            }
            if let Some(data) = output.get_mut("data") {
                split_bundle(data);
            }
        }
    }
}

fn split_bundle(bundle: &mut Value) {
    let Some(map) = bundle.as_object_mut() else {
        return;
    };
    for (mime, value) in map.iter_mut() {
        // nbformat splits text/* and other non-JSON textual types, never JSON payloads
        // or base64 images.
        let textual = mime.starts_with("text/") || mime == "image/svg+xml";
        if textual {
            split_value(value);
        }
    }
}

fn split_value(value: &mut Value) {
    if let Value::String(s) = value {
        if s.is_empty() {
            *value = Value::Array(Vec::new());
            return;
        }
        let lines: Vec<Value> = s
            .split_inclusive('\n')
            .map(|l| Value::String(l.to_string()))
            .collect();
        *value = Value::Array(lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worksheet::testing::*;

    #[test]
    fn syntax_error_names_line_and_column() {
        let err = Notebook::from_json("{\n  \"cells\": [,]\n}").unwrap_err();
        match err {
            NotebookError::Json { line, column, .. } => {
                assert_eq!(line, 2);
                assert_eq!(column, 13);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bad_cell_is_named() {
        let text = "{\"nbformat\": 4, \"nbformat_minor\": 5, \"metadata\": {},\n \"cells\": [\n  {\"cell_type\": \"markdown\", \"source\": \"ok\", \"metadata\": {}},\n  {\"cell_type\": \"picture\", \"source\": \"x\"}\n ]}";
        let err = Notebook::from_json(text).unwrap_err();
        match &err {
            NotebookError::Cell { index, line, .. } => {
                assert_eq!(*index, 1);
                assert_eq!(*line, 4);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("picture"), "{err}");
    }

    #[test]
    fn source_string_or_list() {
        let nb = Notebook::from_json(
            r#"{"nbformat":4,"nbformat_minor":0,"metadata":{},"cells":[
            {"cell_type":"markdown","metadata":{},"source":["a\n","b"]},
            {"cell_type":"raw","metadata":{},"source":"c"}]}"#,
        )
        .unwrap();
        assert_eq!(nb.cells[0].source.text(), "a\nb");
        assert_eq!(nb.cells[1].source.text(), "c");
    }

    #[test]
    fn version_3_is_refused() {
        let err = Notebook::from_json(r#"{"nbformat":3,"nbformat_minor":0,"worksheets":[]}"#)
            .unwrap_err();
        assert!(matches!(err, NotebookError::Version { major: 3, .. }));
    }

    #[test]
    fn deeply_nested_notebook_json_is_refused() {
        // serde_json refuses nesting beyond 128 levels (its default recursion limit) with an
        // error, so hostile metadata or outputs cannot overflow the stack.
        let levels = 100_000;
        let deep = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        for text in [
            format!(r#"{{"nbformat":4,"nbformat_minor":5,"metadata":{{"x":{deep}}},"cells":[]}}"#),
            format!(
                r#"{{"nbformat":4,"nbformat_minor":5,"metadata":{{}},"cells":[{{"cell_type":"code","metadata":{{}},"source":"","outputs":[{{"output_type":"display_data","data":{{"application/json":{deep}}}}}]}}]}}"#
            ),
        ] {
            match Notebook::from_json(&text) {
                Err(NotebookError::Json { message, .. }) => {
                    assert!(message.contains("recursion limit"), "{message}")
                }
                other => panic!("expected a JSON error, got {other:?}"),
            }
        }
        // Nesting below the limit is kept and written back.
        let nested = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let nb = Notebook::from_json(&format!(
            r#"{{"nbformat":4,"nbformat_minor":5,"metadata":{{"x":{nested}}},"cells":[]}}"#
        ))
        .unwrap();
        assert_eq!(Notebook::from_json(&nb.to_json_pretty()).unwrap(), nb);
    }

    #[test]
    fn corpus_is_real_and_every_notebook_round_trips_byte_for_byte() {
        let files = corpus();
        assert!(files.len() >= 8, "corpus has {} notebooks", files.len());
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.len() < 300 * 1024, "{} is too large", path.display());
            let nb = Notebook::from_json(&text).unwrap();
            // nbformat's writer output is reproduced exactly (sorted keys, 1-space indent,
            // sources and text outputs split into lines).
            let written = nb.to_json_pretty();
            assert_eq!(
                written,
                text,
                "{} changed when written back",
                path.display()
            );
        }
    }

    #[test]
    fn unknown_fields_and_metadata_survive_a_round_trip() {
        let text = r##"{
          "nbformat": 4, "nbformat_minor": 2, "x_top": {"keep": [1, 2]},
          "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {"model_name": "IntSliderModel"}}}},
                       "celltoolbar": "Tags", "custom": {"deep": {"n": null}}},
          "cells": [
            {"cell_type": "code", "execution_count": null, "metadata": {"collapsed": true, "scrolled": "auto"},
             "source": "x = 1", "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi\n", "x_out": 3}],
             "x_cell": "kept"},
            {"cell_type": "markdown", "metadata": {}, "source": ["# T\n", "body"],
             "attachments": {"a.png": {"image/png": "iVBORw0KGgo="}}}
          ]}"##;
        let nb = Notebook::from_json(text).unwrap();
        let again = Notebook::from_json(&nb.to_json_pretty()).unwrap();
        assert_eq!(again, nb);
        let written: serde_json::Value = serde_json::from_str(&nb.to_json_pretty()).unwrap();
        assert_eq!(written["x_top"]["keep"][1], 2);
        assert_eq!(written["metadata"]["celltoolbar"], "Tags");
        assert!(written["metadata"]["custom"]["deep"]["n"].is_null());
        assert_eq!(
            written["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]["abc"]
                ["model_name"],
            "IntSliderModel"
        );
        assert_eq!(written["cells"][0]["x_cell"], "kept");
        assert!(written["cells"][0]["execution_count"].is_null());
        assert_eq!(written["cells"][0]["outputs"][0]["x_out"], 3);
        assert_eq!(written["cells"][0]["metadata"]["scrolled"], "auto");
        assert!(written["cells"][1].get("execution_count").is_none());
        assert_eq!(
            written["cells"][1]["attachments"]["a.png"]["image/png"],
            "iVBORw0KGgo="
        );
    }

    #[test]
    fn broken_notebooks_give_located_errors() {
        let err = Notebook::from_json(
            "{\"nbformat\": 4,\n \"cells\": [\n  {\"cell_type\": \"code\",}\n]}",
        )
        .unwrap_err();
        match &err {
            NotebookError::Json { line, column, .. } => assert_eq!((*line, *column), (3, 24)),
            other => panic!("expected a JSON error, got {other:?}"),
        }
        assert!(err.to_string().contains("line 3, column 24"), "{err}");

        let err = Notebook::from_json(
            "{\"nbformat\": 4, \"nbformat_minor\": 4, \"metadata\": {}, \"cells\": [\n {\"cell_type\": \"markdown\", \"source\": \"a\"},\n {\"cell_type\": \"code\", \"source\": 42}\n]}",
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                NotebookError::Cell {
                    index: 1,
                    line: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("cell 1"), "{err}");

        assert!(Notebook::from_json("").is_err());
        assert!(Notebook::from_json("[]").is_err());
        assert!(Notebook::from_slice(&[0xff, 0xfe, 0x00]).is_err());
    }

    #[test]
    fn truncated_or_foreign_notebooks_never_panic() {
        let bytes = std::fs::read(corpus_dir().join("hidden_cells.ipynb")).unwrap();
        for end in (0..bytes.len()).step_by(7) {
            let err = Notebook::from_slice(&bytes[..end]).unwrap_err();
            assert!(
                matches!(err, NotebookError::Json { line, .. } if line >= 1),
                "{err}"
            );
        }
    }
}
