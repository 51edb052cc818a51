//! Reading the parameters cell: each `name [: annotation] = literal [# help]` statement
//! becomes a [`Parameter`], typed from its annotation or its value; other statements are
//! skipped.

use super::annotation::{MAX_ANNOTATION_LEN, parse_annotation, parse_type_comment};
use super::literal::{Lit, Parser};
use super::{ParamType, ParamValue, Parameter};
use std::collections::HashSet;

/// Parse the source of a parameters cell.
pub fn parse_parameters_source(src: &str) -> Vec<Parameter> {
    let mut all: Vec<Parameter> = Vec::new();
    let mut p = Parser::new(src);
    while !p.at_end() {
        p.skip_blank_lines();
        if p.at_end() {
            break;
        }
        if let Some(param) = p.statement() {
            all.push(param);
        }
    }
    // A name assigned twice keeps its last assignment, in that assignment's place (linear
    // however many assignments a cell holds).
    let mut seen = HashSet::new();
    let mut out: Vec<Parameter> = all
        .into_iter()
        .rev()
        .filter(|param| seen.insert(param.name.clone()))
        .collect();
    out.reverse();
    out
}

impl Parser<'_> {
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
                '\'' | '"' => self.skip_string(),
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

    /// Skips a string in code (cursor on its opening quote) without reading escapes: to its
    /// closing quote, else to the end of the line (single quotes) or of the cell (triple
    /// quotes), as far as Python's tokenizer would read it. Each character is read once.
    fn skip_string(&mut self) {
        let Ok((quote, triple)) = self.open_quote() else {
            return;
        };
        while let Some(c) = self.peek() {
            match c {
                '\n' if !triple => return,
                '\\' => {
                    self.pos += 1;
                    self.bump();
                }
                c if c == quote => {
                    self.pos += 1;
                    if !triple || self.close_triple(quote) {
                        return;
                    }
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
        let mut type_comment = None;
        if self.peek() == Some('#') {
            let start = self.pos + 1;
            self.skip_to_eol();
            let text = self.src[start..self.pos].trim();
            // `# type: T`, optionally followed by `# help`.
            if let Some(rest) = text.strip_prefix("type:") {
                let (ty, after) = rest.split_once('#').unwrap_or((rest, ""));
                type_comment = Some(ty.trim());
                let after = after.trim();
                if !after.is_empty() {
                    help = Some(after.to_string());
                }
            } else if !text.is_empty() {
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
        type_parameter(&mut param, literal, annotation.as_deref(), type_comment);
        Some(param)
    }

    /// After a failed literal: skip the rest of the value up to a trailing comment.
    fn skip_code_until_comment(&mut self) {
        self.skip_code(true);
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

/// Types a parameter from its annotation, its type comment and its value. A type
/// comment `file` makes a file parameter; another readable type comment stands for the
/// annotation when there is none (PEP 484); one that cannot be read is ignored, as Python
/// ignores it.
fn type_parameter(
    param: &mut Parameter,
    lit: Lit,
    annotation: Option<&str>,
    type_comment: Option<&str>,
) {
    if let Some(comment) = type_comment {
        match parse_type_comment(comment) {
            Some((ParamType::File, optional)) => {
                return file_parameter(param, lit, annotation, optional);
            }
            Some(_) if annotation.is_none() => {
                return type_parameter(param, lit, Some(comment), None);
            }
            _ => {}
        }
    }
    let declared = match annotation {
        Some(ann) => match parse_annotation(ann) {
            Some(d) => Some(d),
            None if ann.len() > MAX_ANNOTATION_LEN => {
                param.supported = Err(format!(
                    "the type annotation is longer than {MAX_ANNOTATION_LEN} characters"
                ));
                return;
            }
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

/// A parameter with `# type: file`: its default is a path in quotes (or `None`); an
/// annotation, if any, must be `str` (or optional `str`).
fn file_parameter(param: &mut Parameter, lit: Lit, annotation: Option<&str>, optional: bool) {
    let mut optional = optional;
    if let Some(ann) = annotation {
        match parse_annotation(ann) {
            Some((ParamType::Str, opt)) => optional |= opt,
            _ => {
                param.supported = Err(format!(
                    "a file parameter holds a path: its annotation must be `str`, not `{}`",
                    crate::text::truncate(ann, 80)
                ));
                return;
            }
        }
    }
    match lit {
        Lit::Str(path) => {
            param.kind = ParamType::File;
            param.optional = optional;
            param.default = ParamValue::Str(path);
        }
        Lit::None => {
            param.kind = ParamType::File;
            param.optional = true;
            param.default = ParamValue::None;
        }
        _ => {
            param.supported = Err(format!(
                "`{}`: the default of a file parameter must be a path in quotes (or None)",
                param.source
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worksheet;
    use crate::worksheet::params::literal::MAX_NESTING;

    #[test]
    fn type_comments_make_file_parameters() {
        let params = parse_parameters_source(
            "counts_file = \"data/counts.csv\"  # type: file\n\
             genes: str = 'genes.txt'  # type: file  # one gene per line\n\
             extra = None  # type: Optional[file]\n\
             bad: int = 3  # type: file\n\
             number = 2  # type: file\n\
             ratio = 1  # type: float  # a ratio\n\
             typed: int = 1  # type: float\n\
             odd = 'x'  # type: np.ndarray\n",
        );
        let get = |n: &str| params.iter().find(|p| p.name == n).unwrap();
        let counts = get("counts_file");
        assert_eq!(counts.kind, ParamType::File);
        assert_eq!(counts.default, ParamValue::Str("data/counts.csv".into()));
        assert!(!counts.optional && counts.help.is_none() && counts.supported.is_ok());
        let genes = get("genes");
        assert_eq!(genes.kind, ParamType::File);
        assert_eq!(genes.help.as_deref(), Some("one gene per line"));
        let extra = get("extra");
        assert_eq!(
            (extra.kind.clone(), extra.optional, extra.default.clone()),
            (ParamType::File, true, ParamValue::None)
        );
        assert!(get("bad").supported.as_ref().unwrap_err().contains("`str`"));
        assert!(
            get("number")
                .supported
                .as_ref()
                .unwrap_err()
                .contains("path in quotes")
        );
        // Other type comments stand for a missing annotation; an annotation wins.
        assert_eq!(get("ratio").kind, ParamType::Float);
        assert_eq!(get("ratio").default, ParamValue::Float(1.0));
        assert_eq!(get("ratio").help.as_deref(), Some("a ratio"));
        assert_eq!(get("typed").kind, ParamType::Int);
        assert_eq!(get("odd").kind, ParamType::Str);
        assert!(get("odd").supported.is_ok());
        // A type comment of any length is read within the annotation's bound.
        let long = format!(
            "x = 'a'  # type: {}file{}\n",
            "Optional[".repeat(1 << 16),
            "]".repeat(1 << 16)
        );
        let x = &parse_parameters_source(&long)[0];
        assert_eq!(x.kind, ParamType::Str);
        assert!(x.supported.is_ok());
    }

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

    #[test]
    fn deeply_nested_list_literal_is_refused() {
        let levels = 100_000;
        let src = format!(
            "x = {}1{}  # deep\ny = 2\n",
            "[".repeat(levels),
            "]".repeat(levels)
        );
        let params = parse_parameters_source(&src);
        assert_eq!(params.len(), 2);
        assert_eq!(
            params[0].supported.as_ref().unwrap_err(),
            "value nests too deeply"
        );
        assert_eq!(params[0].help.as_deref(), Some("deep"));
        assert_eq!(params[1].default, ParamValue::Int(2));
        // Just within the limit, a nested list is read (as a read-only field).
        let ok = format!(
            "x = {}1{}\n",
            "[".repeat(MAX_NESTING),
            "]".repeat(MAX_NESTING)
        );
        let x = &parse_parameters_source(&ok)[0];
        assert_ne!(
            x.supported.as_ref().err().map(String::as_str),
            Some("value nests too deeply")
        );
    }

    #[test]
    fn many_assignments_keep_the_last_of_each_name() {
        let src: String = (0..50_000)
            .map(|i| format!("p{} = {i}\n", i % 25_000))
            .collect();
        let params = parse_parameters_source(&src);
        assert_eq!(params.len(), 25_000);
        assert_eq!(params[0].name, "p0");
        assert_eq!(params[0].default, ParamValue::Int(25_000));
    }

    #[test]
    fn odd_parameter_cells_give_read_only_fields_never_a_panic() {
        let src = "import numpy as np\n\
            a = np.arange(3)  # an array\n\
            b = {'k': 1}\n\
            c = 1 + 2\n\
            d, e = 1, 2\n\
            f = f\"x{c}\"\n\
            g = 'unterminated\n\
            h: Path = 'data.csv'\n\
            i: Optional[int] = None  # optional count\n\
            j = [1, 'a']\n\
            k = 99999999999999999999999\n\
            l: int = 'text'\n\
            m = [\n    1,  # first\n    2,\n]  # multi-line list\n\
            n = \"\"\"multi\nline\"\"\"\n\
            o = b'bytes'\n\
            p = 1.5e3\n\
            q = (4)\n\
            r: float | None = 2\n\
            x = 1\nx = 2  # reassigned\n";
        let params = worksheet::params::parse_parameters_source(src);
        let get = |n: &str| {
            params
                .iter()
                .find(|p| p.name == n)
                .unwrap_or_else(|| panic!("no {n}"))
        };
        for name in ["a", "b", "c", "f", "g", "h", "j", "k", "l", "o"] {
            let reason = get(name).supported.as_ref().unwrap_err();
            assert!(!reason.is_empty(), "{name}");
        }
        assert!(
            get("a")
                .supported
                .as_ref()
                .unwrap_err()
                .contains("np.arange(3)")
        );
        assert_eq!(get("a").help.as_deref(), Some("an array"));
        assert!(get("h").supported.as_ref().unwrap_err().contains("Path"));
        assert!(
            !params
                .iter()
                .any(|p| p.name == "d" || p.name == "e" || p.name == "np")
        );
        let i = get("i");
        assert_eq!(
            (i.kind.clone(), i.optional, i.default.clone()),
            (ParamType::Int, true, ParamValue::None)
        );
        assert_eq!(
            get("m").default,
            ParamValue::List(vec![ParamValue::Int(1), ParamValue::Int(2)])
        );
        assert_eq!(get("m").help.as_deref(), Some("multi-line list"));
        assert_eq!(get("n").default, ParamValue::Str("multi\nline".into()));
        assert_eq!(get("p").default, ParamValue::Float(1500.0));
        assert_eq!(get("q").default, ParamValue::Int(4));
        assert_eq!(get("r").default, ParamValue::Float(2.0));
        assert!(get("r").optional);
        assert_eq!(get("x").default, ParamValue::Int(2));
        assert_eq!(params.iter().filter(|p| p.name == "x").count(), 1);

        // Every prefix of the source (cut anywhere) parses without panicking.
        for (i, _) in src.char_indices() {
            let _ = worksheet::params::parse_parameters_source(&src[..i]);
        }
    }

    #[test]
    fn runs_of_unterminated_quotes_are_skipped_once() {
        // `'\'\'\'…` is one string that never ends (every quote after the first is
        // escaped). Skipping the value used to restart after each failed string, re-reading
        // the rest of the line from every quote: a 100 KB line took minutes.
        let src = format!("x = a {}'\ny = 1  # next\n", "'\\".repeat(50_000));
        let params = parse_parameters_source(&src);
        assert_eq!(params.len(), 2);
        assert!(params[0].supported.is_err());
        assert_eq!(params[1].default, ParamValue::Int(1));
        assert_eq!(params[1].help.as_deref(), Some("next"));
    }
}
