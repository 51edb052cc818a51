//! Worksheet parameters: the papermill `parameters` cell read as typed form fields, form
//! values validated against them, and the `injected-parameters` cell written exactly as
//! papermill's Python translator writes it.
//!
//! The parameters cell is read with a small parser for Python literals (ints, floats,
//! strings in every quoting style, `True`/`False`/`None`, lists and tuples of those) and
//! optional type annotations. Anything else becomes a read-only field with a reason.

use super::model::{Cell, CellType, MultilineString, Notebook};
use serde_json::{Map, Value};
use std::collections::HashMap;
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

// ---------------------------------------------------------------------------------------
// Reading the parameters cell
// ---------------------------------------------------------------------------------------

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

/// Parse the source of a parameters cell.
pub fn parse_parameters_source(src: &str) -> Vec<Parameter> {
    let mut out: Vec<Parameter> = Vec::new();
    let mut p = Parser::new(src);
    while !p.at_end() {
        p.skip_blank_lines();
        if p.at_end() {
            break;
        }
        if let Some(param) = p.statement() {
            if let Some(pos) = out.iter().position(|q| q.name == param.name) {
                out.remove(pos);
            }
            out.push(param);
        }
    }
    out
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

enum Lit {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    None,
    Seq(Vec<Lit>),
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser { src, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Skip spaces and tabs (and backslash line continuations).
    fn skip_inline_ws(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\x0c') => {
                    self.pos += 1;
                }
                Some('\\') if self.rest()[1..].starts_with('\n') => self.pos += 2,
                Some('\\') if self.rest()[1..].starts_with("\r\n") => self.pos += 3,
                _ => break,
            }
        }
    }

    /// Skip whitespace including newlines and comments (inside brackets).
    fn skip_ws_multiline(&mut self) {
        loop {
            self.skip_inline_ws();
            match self.peek() {
                Some('\n' | '\r') => self.pos += 1,
                Some('#') => self.skip_to_eol(),
                _ => break,
            }
        }
    }

    fn skip_to_eol(&mut self) {
        match self.rest().find('\n') {
            Some(i) => self.pos += i,
            None => self.pos = self.src.len(),
        }
    }

    fn skip_blank_lines(&mut self) {
        loop {
            let save = self.pos;
            self.skip_inline_ws();
            match self.peek() {
                Some('\n' | '\r' | ';') => {
                    self.pos += 1;
                }
                Some('#') => {
                    self.skip_to_eol();
                }
                _ => {
                    self.pos = save;
                    self.skip_inline_ws();
                    return;
                }
            }
        }
    }

    fn ident(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let mut chars = self.rest().char_indices();
        match chars.next() {
            Some((_, c)) if c == '_' || c.is_alphabetic() => {}
            _ => return None,
        }
        let mut end = self.rest().len();
        for (i, c) in chars {
            if !(c == '_' || c.is_alphanumeric()) {
                end = i;
                break;
            }
        }
        self.pos += end;
        Some(&self.src[start..self.pos])
    }

    /// Skip the rest of a logical line: brackets and strings may span lines.
    fn skip_logical_line(&mut self) {
        self.skip_code(false);
    }

    /// Skips code to the end of the logical line (or to a trailing comment, with
    /// `stop_at_comment`), stepping over strings and bracketed spans that cross lines.
    fn skip_code(&mut self, stop_at_comment: bool) {
        let mut depth = 0i32;
        while let Some(c) = self.peek() {
            match c {
                '\n' if depth <= 0 => return,
                '#' if depth <= 0 && stop_at_comment => return,
                '#' => self.skip_to_eol(),
                '\'' | '"' => {
                    let start = self.pos;
                    if self.string_literal().is_err() {
                        self.pos = start + 1;
                    }
                }
                '(' | '[' | '{' => {
                    depth += 1;
                    self.pos += 1;
                }
                ')' | ']' | '}' => {
                    depth -= 1;
                    self.pos += 1;
                }
                _ => {
                    self.bump();
                }
            }
        }
    }

    /// One statement. Returns a parameter for `name [: annotation] = value [# help]`.
    fn statement(&mut self) -> Option<Parameter> {
        let stmt_start = self.pos;
        let name = match self.ident() {
            Some(n) if !is_keyword(n) => n,
            _ => {
                self.pos = stmt_start;
                self.skip_logical_line();
                return None;
            }
        };
        self.skip_inline_ws();
        let mut annotation = None;
        if self.peek() == Some(':') {
            self.pos += 1;
            let ann_start = self.pos;
            let mut depth = 0i32;
            while let Some(c) = self.peek() {
                match c {
                    '[' | '(' => depth += 1,
                    ']' | ')' => depth -= 1,
                    '=' if depth <= 0 => break,
                    '\n' | '#' if depth <= 0 => break,
                    _ => {}
                }
                self.bump();
            }
            annotation = Some(self.src[ann_start..self.pos].trim().to_string());
        }
        // A plain assignment: `=` but not `==`; augmented assignments are not parameters.
        if self.peek() != Some('=') || self.rest().starts_with("==") {
            self.pos = stmt_start;
            self.skip_logical_line();
            return None;
        }
        self.pos += 1;
        self.skip_inline_ws();
        let value_start = self.pos;
        let parsed = self.literal();
        let value_end;
        let mut trailing_ok = true;
        match &parsed {
            Ok(_) => {
                value_end = self.pos;
                self.skip_inline_ws();
                match self.peek() {
                    None | Some('\n' | '\r' | '#' | ';') => {}
                    _ => trailing_ok = false,
                }
            }
            Err(_) => value_end = self.pos,
        }
        if parsed.is_err() || !trailing_ok {
            self.pos = value_start;
            self.skip_code_until_comment();
        }
        let source_end = if parsed.is_ok() && trailing_ok {
            value_end
        } else {
            self.pos
        };
        let source = self.src[value_start..source_end].trim().to_string();
        self.skip_inline_ws();
        let mut help = None;
        if self.peek() == Some('#') {
            let start = self.pos + 1;
            self.skip_to_eol();
            let text = self.src[start..self.pos].trim();
            if !text.is_empty() && !text.starts_with("type:") {
                help = Some(text.to_string());
            }
        } else if self.peek() == Some(';') {
            self.pos += 1;
        }

        let mut param = Parameter {
            name: name.to_string(),
            kind: ParamType::Unsupported,
            optional: false,
            default: ParamValue::None,
            help,
            annotation: annotation.clone(),
            source,
            supported: Ok(()),
        };
        let literal = match parsed {
            Ok(lit) if trailing_ok => lit,
            Ok(_) => {
                param.supported = Err(format!(
                    "`{}` is an expression, not a literal value",
                    param.source
                ));
                return Some(param);
            }
            Err(reason) => {
                param.supported = Err(reason);
                return Some(param);
            }
        };
        type_parameter(&mut param, literal, annotation.as_deref());
        Some(param)
    }

    /// After a failed literal: skip the rest of the value up to a trailing comment.
    fn skip_code_until_comment(&mut self) {
        self.skip_code(true);
    }

    fn literal(&mut self) -> Result<Lit, String> {
        self.literal_inner(0)
    }

    fn literal_inner(&mut self, depth: usize) -> Result<Lit, String> {
        if depth > 32 {
            return Err("value nests too deeply".into());
        }
        match self.peek() {
            None => Err("missing value".into()),
            Some('[') => self.sequence(']', depth),
            Some('(') => self.sequence(')', depth),
            Some('{') => Err("dicts and sets are not supported as form fields".into()),
            Some('\'' | '"') => self.string_literal().map(Lit::Str),
            Some(c) if c == '-' || c == '+' || c == '.' || c.is_ascii_digit() => self.number(),
            Some(_) => {
                let start = self.pos;
                let word = self.ident().unwrap_or("");
                let prefix_string = matches!(self.peek(), Some('\'' | '"'));
                match word {
                    "True" => Ok(Lit::Bool(true)),
                    "False" => Ok(Lit::Bool(false)),
                    "None" => Ok(Lit::None),
                    _ if prefix_string => {
                        let lower = word.to_ascii_lowercase();
                        if lower == "r" {
                            self.raw_string().map(Lit::Str)
                        } else if lower == "u" {
                            self.string_literal().map(Lit::Str)
                        } else if lower.contains('f') {
                            Err("f-strings are computed, not literal values".into())
                        } else if lower.contains('b') {
                            Err("byte strings are not supported".into())
                        } else {
                            Err(format!("unknown string prefix `{word}`"))
                        }
                    }
                    _ => {
                        self.pos = start;
                        let end = self
                            .rest()
                            .find(['\n', '#'])
                            .map_or(self.src.len(), |i| self.pos + i);
                        let expr = self.src[start..end].trim();
                        Err(format!("`{expr}` is an expression, not a literal value"))
                    }
                }
            }
        }
    }

    fn sequence(&mut self, close: char, depth: usize) -> Result<Lit, String> {
        self.pos += 1; // opening bracket
        let mut items = Vec::new();
        let mut saw_comma = false;
        loop {
            self.skip_ws_multiline();
            if self.peek() == Some(close) {
                self.pos += 1;
                break;
            }
            items.push(self.literal_inner(depth + 1)?);
            self.skip_ws_multiline();
            match self.bump() {
                Some(',') => saw_comma = true,
                Some(c) if c == close => break,
                Some(c) => return Err(format!("unexpected `{c}` in a list")),
                None => return Err(format!("unclosed list: missing `{close}`")),
            }
        }
        if close == ')' && items.len() == 1 && !saw_comma {
            // `(x)` is a parenthesized value, `(x,)` a one-element tuple.
            return Ok(items.remove(0));
        }
        Ok(Lit::Seq(items))
    }

    fn number(&mut self) -> Result<Lit, String> {
        let start = self.pos;
        let mut negative = false;
        if let Some(sign @ ('-' | '+')) = self.peek() {
            negative = sign == '-';
            self.pos += 1;
            self.skip_inline_ws();
        }
        let body_start = self.pos;
        while let Some(c) = self.peek() {
            let exponent_sign = (c == '-' || c == '+')
                && self.src[body_start..self.pos].ends_with(['e', 'E'])
                && !self.src[body_start..self.pos].starts_with("0x");
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || exponent_sign {
                self.pos += 1;
            } else {
                break;
            }
        }
        let body = &self.src[body_start..self.pos];
        let shown = &self.src[start..self.pos];
        if body.is_empty() {
            return Err(format!("`{shown}` is not a number"));
        }
        if body.starts_with('_') || body.ends_with('_') || body.contains("__") {
            return Err(format!("`{shown}` is not a valid number"));
        }
        let clean: String = body.chars().filter(|&c| c != '_').collect();
        let lower = clean.to_ascii_lowercase();
        if lower.ends_with('j') {
            return Err("complex numbers are not supported".into());
        }
        let radix = match lower.get(..2) {
            Some("0x") => Some(16),
            Some("0o") => Some(8),
            Some("0b") => Some(2),
            _ => None,
        };
        if let Some(radix) = radix {
            let v = i64::from_str_radix(&clean[2..], radix)
                .map_err(|_| format!("`{shown}` is not a valid integer (or is too large)"))?;
            return Ok(Lit::Int(if negative { -v } else { v }));
        }
        let is_float = lower.contains(['.', 'e']) || lower == "inf" || lower == "nan";
        if is_float {
            if !lower
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '-' | '+'))
            {
                return Err(format!("`{shown}` is not a valid number"));
            }
            let v: f64 = clean
                .parse()
                .map_err(|_| format!("`{shown}` is not a valid number"))?;
            return Ok(Lit::Float(if negative { -v } else { v }));
        }
        if !lower.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("`{shown}` is not a valid number"));
        }
        if lower.len() > 1 && lower.starts_with('0') && lower.chars().any(|c| c != '0') {
            return Err(format!(
                "`{shown}`: leading zeros are not allowed in Python"
            ));
        }
        let digits = if negative { format!("-{clean}") } else { clean };
        digits
            .parse::<i64>()
            .map(Lit::Int)
            .map_err(|_| format!("`{shown}` is too large for a 64-bit integer"))
    }

    /// A quoted string at the cursor (no prefix), escapes processed.
    fn string_literal(&mut self) -> Result<String, String> {
        self.quoted(false)
    }

    /// A raw string `r'...'` (cursor on the quote).
    fn raw_string(&mut self) -> Result<String, String> {
        self.quoted(true)
    }

    /// A single- or triple-quoted string; in a raw one a backslash is kept with the
    /// character after it (which cannot end the string).
    fn quoted(&mut self, raw: bool) -> Result<String, String> {
        let (quote, triple) = self.open_quote()?;
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err("unterminated string".into());
            };
            if c == quote && (!triple || self.close_triple(quote)) {
                return Ok(out);
            }
            match c {
                '\n' if !triple => return Err("unterminated string".into()),
                '\\' if raw => {
                    out.push('\\');
                    if let Some(next) = self.bump() {
                        out.push(next);
                    }
                }
                '\\' => self.escape(&mut out)?,
                _ => out.push(c),
            }
        }
    }

    fn open_quote(&mut self) -> Result<(char, bool), String> {
        let quote = match self.bump() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err("expected a string".into()),
        };
        let triple_open: String = [quote, quote].iter().collect();
        if self.rest().starts_with(&triple_open) {
            self.pos += 2;
            return Ok((quote, true));
        }
        Ok((quote, false))
    }

    /// Just consumed one `quote` of a triple-quoted string: is it the closing triple?
    fn close_triple(&mut self, quote: char) -> bool {
        let pair: String = [quote, quote].iter().collect();
        if self.rest().starts_with(&pair) {
            self.pos += 2;
            true
        } else {
            false
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), String> {
        let Some(c) = self.bump() else {
            return Err("unterminated string".into());
        };
        match c {
            '\n' => {}
            '\\' => out.push('\\'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            'x' => out.push(self.hex_escape(2)?),
            'u' => out.push(self.hex_escape(4)?),
            'U' => out.push(self.hex_escape(8)?),
            '0'..='7' => {
                let mut v = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(v).ok_or("invalid octal escape")?);
            }
            'N' => return Err("named unicode escapes (\\N{...}) are not supported".into()),
            other => {
                // Python keeps unknown escapes as written.
                out.push('\\');
                out.push(other);
            }
        }
        Ok(())
    }

    fn hex_escape(&mut self, len: usize) -> Result<char, String> {
        let digits = self.rest().get(..len).ok_or("truncated escape")?;
        if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("bad escape `{digits}`"));
        }
        let v = u32::from_str_radix(digits, 16).map_err(|_| format!("bad escape `{digits}`"))?;
        self.pos += len;
        char::from_u32(v).ok_or_else(|| format!("escape `{digits}` is not a character"))
    }
}

fn is_keyword(word: &str) -> bool {
    matches!(
        word,
        "import"
            | "from"
            | "def"
            | "class"
            | "if"
            | "for"
            | "while"
            | "with"
            | "return"
            | "print"
            | "assert"
            | "del"
            | "global"
            | "nonlocal"
            | "try"
            | "pass"
            | "raise"
            | "lambda"
            | "True"
            | "False"
            | "None"
    )
}

/// Parse an annotation into (type, optional). `None` when it is not one we can handle.
fn parse_annotation(ann: &str) -> Option<(ParamType, bool)> {
    let ann = ann.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    let compact: String = ann.chars().filter(|c| !c.is_whitespace()).collect();
    let strip_typing = |s: &str| s.strip_prefix("typing.").unwrap_or(s).to_string();
    let compact = strip_typing(&compact);
    if let Some(inner) = compact
        .strip_prefix("Optional[")
        .and_then(|s| s.strip_suffix(']'))
    {
        return parse_annotation(inner).map(|(t, _)| (t, true));
    }
    let parts: Vec<&str> = compact.split('|').collect();
    if parts.len() == 2 && parts.contains(&"None") {
        let other = parts.iter().find(|p| **p != "None")?;
        return parse_annotation(other).map(|(t, _)| (t, true));
    }
    let simple = |s: &str| match s {
        "int" => Some(ParamType::Int),
        "float" => Some(ParamType::Float),
        "str" => Some(ParamType::Str),
        "bool" => Some(ParamType::Bool),
        _ => None,
    };
    if let Some(t) = simple(&compact) {
        return Some((t, false));
    }
    for prefix in [
        "list[",
        "List[",
        "tuple[",
        "Tuple[",
        "Sequence[",
        "typing.List[",
    ] {
        if let Some(inner) = compact
            .strip_prefix(prefix)
            .and_then(|s| s.strip_suffix(']'))
        {
            let inner = inner.strip_suffix(",...").unwrap_or(inner);
            return simple(&strip_typing(inner)).map(|t| (ParamType::List(Box::new(t)), false));
        }
    }
    if matches!(compact.as_str(), "list" | "List" | "tuple" | "Tuple") {
        return Some((ParamType::List(Box::new(ParamType::Unsupported)), false));
    }
    None
}

fn lit_type(lit: &Lit) -> Option<ParamType> {
    match lit {
        Lit::Int(_) => Some(ParamType::Int),
        Lit::Float(_) => Some(ParamType::Float),
        Lit::Str(_) => Some(ParamType::Str),
        Lit::Bool(_) => Some(ParamType::Bool),
        Lit::None => None,
        Lit::Seq(items) => {
            let mut elem: Option<ParamType> = None;
            for item in items {
                let t = match item {
                    Lit::Seq(_) => return Some(ParamType::Unsupported),
                    Lit::None => return Some(ParamType::Unsupported),
                    other => lit_type(other)?,
                };
                elem = Some(match (elem, t) {
                    (None, t) => t,
                    (Some(a), b) if a == b => a,
                    (Some(ParamType::Int), ParamType::Float)
                    | (Some(ParamType::Float), ParamType::Int) => ParamType::Float,
                    _ => return Some(ParamType::Unsupported),
                });
            }
            Some(ParamType::List(Box::new(
                elem.unwrap_or(ParamType::Unsupported),
            )))
        }
    }
}

/// Convert a literal to a value of type `t`; `Err` when it does not fit.
fn coerce(lit: &Lit, t: &ParamType) -> Result<ParamValue, String> {
    match (lit, t) {
        (Lit::Int(v), ParamType::Int) => Ok(ParamValue::Int(*v)),
        (Lit::Int(v), ParamType::Float) => Ok(ParamValue::Float(*v as f64)),
        (Lit::Float(v), ParamType::Float) => Ok(ParamValue::Float(*v)),
        (Lit::Str(s), ParamType::Str) => Ok(ParamValue::Str(s.clone())),
        (Lit::Bool(b), ParamType::Bool) => Ok(ParamValue::Bool(*b)),
        (Lit::None, _) => Ok(ParamValue::None),
        (Lit::Seq(items), ParamType::List(elem)) => items
            .iter()
            .map(|i| match i {
                Lit::None => Err("lists with None are not supported".to_string()),
                other => coerce(other, elem),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(ParamValue::List),
        _ => Err(format!("the value does not match the type {t}")),
    }
}

fn type_parameter(param: &mut Parameter, lit: Lit, annotation: Option<&str>) {
    let declared = match annotation {
        Some(ann) => match parse_annotation(ann) {
            Some(d) => Some(d),
            None => {
                param.supported = Err(format!(
                    "type `{ann}` cannot be edited in a form (int, float, str, bool and lists of these can)"
                ));
                return;
            }
        },
        None => None,
    };
    let inferred = lit_type(&lit);
    let (mut kind, optional) = match (declared, inferred) {
        (Some((ParamType::List(e), opt)), Some(ParamType::List(ie)))
            if *e == ParamType::Unsupported =>
        {
            (ParamType::List(ie), opt)
        }
        (Some((t, opt)), _) => (t, opt),
        (None, Some(t)) => (t, false),
        // `x = None` without annotation: a free-text field where empty means None.
        (None, None) => (ParamType::Str, true),
    };
    if let ParamType::List(e) = &kind
        && **e == ParamType::Unsupported
    {
        if matches!(&lit, Lit::Seq(items) if items.is_empty()) {
            kind = ParamType::List(Box::new(ParamType::Str));
        } else {
            param.kind = ParamType::Unsupported;
            param.supported =
                Err("lists must hold values of one type: int, float, str or bool".into());
            return;
        }
    }
    let optional = optional || matches!(lit, Lit::None);
    match coerce(&lit, &kind) {
        Ok(v) => {
            param.kind = kind;
            param.optional = optional;
            param.default = v;
        }
        Err(reason) => {
            param.supported = Err(format!("`{}`: {reason}", param.source));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Form values
// ---------------------------------------------------------------------------------------

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
pub fn python_float(v: f64) -> String {
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

// ---------------------------------------------------------------------------------------
// Injection
// ---------------------------------------------------------------------------------------

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

    #[test]
    fn raw_and_escaped_strings() {
        let params = parse_parameters_source(
            "raw = r'C:\\data\\n'  # a raw path\nplain = 'a\\tb'\nquote = r'it\\'s'\n",
        );
        let value = |n: &str| {
            params
                .iter()
                .find(|p| p.name == n)
                .map(|p| p.default.clone())
        };
        assert_eq!(value("raw"), Some(ParamValue::Str("C:\\data\\n".into())));
        assert_eq!(value("plain"), Some(ParamValue::Str("a\tb".into())));
        // In a raw string, \' does not end it and the backslash stays.
        assert_eq!(value("quote"), Some(ParamValue::Str("it\\'s".into())));
        assert_eq!(
            params
                .iter()
                .find(|p| p.name == "raw")
                .unwrap()
                .help
                .as_deref(),
            Some("a raw path")
        );
    }

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
    fn literals() {
        let ps = parse_parameters_source(
            "a = -1_000\nb = 2.5e-3 # help b\nc = '''x\ny'''\nd = \"q\\\"\"\ne = True\nf = None\ng = [1, 2.0]\nh = ('x', \"y\")\ni = 0x1F\nj = r'\\d+'\n",
        );
        let get = |n: &str| ps.iter().find(|p| p.name == n).unwrap();
        assert_eq!(get("a").default, ParamValue::Int(-1000));
        assert_eq!(get("b").default, ParamValue::Float(0.0025));
        assert_eq!(get("b").help.as_deref(), Some("help b"));
        assert_eq!(get("c").default, ParamValue::Str("x\ny".into()));
        assert_eq!(get("d").default, ParamValue::Str("q\"".into()));
        assert_eq!(get("e").default, ParamValue::Bool(true));
        assert!(get("f").optional);
        assert_eq!(
            get("g").default,
            ParamValue::List(vec![ParamValue::Float(1.0), ParamValue::Float(2.0)])
        );
        assert_eq!(get("h").kind, ParamType::List(Box::new(ParamType::Str)));
        assert_eq!(get("i").default, ParamValue::Int(31));
        assert_eq!(get("j").default, ParamValue::Str("\\d+".into()));
    }
}
