//! Type annotations of parameters (`int`, `Optional[float]`, `list[str]`, `str | None`),
//! and type comments after the value (`# type: file`, or PEP 484's `# type: int`).

use super::ParamType;

/// The longest annotation read: every type a form can edit is far shorter, and reading is
/// bounded however long a hostile parameters cell makes it.
pub(super) const MAX_ANNOTATION_LEN: usize = 200;
/// How many `Optional[...]` / `... | None` wrappers are unwrapped around a type.
const MAX_OPTIONAL_WRAPPERS: usize = 4;

/// Parse an annotation into (type, optional). `None` when it is not one we can handle,
/// including annotations over [`MAX_ANNOTATION_LEN`] bytes or wrapped in `Optional` more
/// than [`MAX_OPTIONAL_WRAPPERS`] times.
pub(super) fn parse_annotation(ann: &str) -> Option<(ParamType, bool)> {
    parse(ann, false)
}

/// Parse a type comment (the text after `# type:`) into (type, optional): what
/// [`parse_annotation`] reads, plus `file` ([`ParamType::File`]), which only a comment can
/// say (`x: file = …` would fail in Python: `file` is no type there). Bounded the same way.
pub(super) fn parse_type_comment(comment: &str) -> Option<(ParamType, bool)> {
    parse(comment, true)
}

fn parse(ann: &str, allow_file: bool) -> Option<(ParamType, bool)> {
    if ann.len() > MAX_ANNOTATION_LEN {
        return None;
    }
    let mut current = normalize(ann);
    let mut optional = false;
    for _ in 0..=MAX_OPTIONAL_WRAPPERS {
        match unwrap_optional(&current) {
            Some(inner) => {
                current = normalize(inner);
                optional = true;
            }
            None if allow_file && current == "file" => return Some((ParamType::File, optional)),
            None => return base_type(&current).map(|t| (t, optional)),
        }
    }
    None
}

/// Without quotes (a string annotation), whitespace and a `typing.` prefix.
fn normalize(ann: &str) -> String {
    let ann = ann.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    let compact: String = ann.chars().filter(|c| !c.is_whitespace()).collect();
    strip_typing(&compact).to_string()
}

fn strip_typing(s: &str) -> &str {
    s.strip_prefix("typing.").unwrap_or(s)
}

/// The `T` of `Optional[T]`, `T | None` or `None | T`.
fn unwrap_optional(compact: &str) -> Option<&str> {
    if let Some(inner) = compact
        .strip_prefix("Optional[")
        .and_then(|s| s.strip_suffix(']'))
    {
        return Some(inner);
    }
    let parts: Vec<&str> = compact.split('|').collect();
    if parts.len() == 2 && parts.contains(&"None") {
        return parts.into_iter().find(|p| *p != "None");
    }
    None
}

/// A type without `Optional`: a scalar, or a list or tuple of scalars.
fn base_type(compact: &str) -> Option<ParamType> {
    let simple = |s: &str| match s {
        "int" => Some(ParamType::Int),
        "float" => Some(ParamType::Float),
        "str" => Some(ParamType::Str),
        "bool" => Some(ParamType::Bool),
        _ => None,
    };
    if let Some(t) = simple(compact) {
        return Some(t);
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
            return simple(strip_typing(inner)).map(|t| ParamType::List(Box::new(t)));
        }
    }
    if matches!(compact, "list" | "List" | "tuple" | "Tuple") {
        return Some(ParamType::List(Box::new(ParamType::Unsupported)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worksheet::params::parse_parameters_source;

    #[test]
    fn deeply_nested_annotation_is_refused() {
        // A 500 KB parameters line of nested `Optional[` once overflowed the stack.
        let levels = 50_000;
        let line = format!(
            "x: {}int{} = 1\n",
            "Optional[".repeat(levels),
            "]".repeat(levels)
        );
        let params = parse_parameters_source(&line);
        assert_eq!(params.len(), 1);
        let reason = params[0].supported.as_ref().unwrap_err();
        assert!(reason.len() < 300, "the reason is short: {reason:.300}");
        assert!(parse_annotation(&line[3..line.len() - 5]).is_none());
    }

    #[test]
    fn optional_wrappers_are_read_up_to_the_limit() {
        assert_eq!(parse_annotation("int"), Some((ParamType::Int, false)));
        assert_eq!(
            parse_annotation("typing.Optional[ 'float' ]"),
            Some((ParamType::Float, true))
        );
        assert_eq!(parse_annotation("None | str"), Some((ParamType::Str, true)));
        assert_eq!(
            parse_annotation("Optional[list[int]]"),
            Some((ParamType::List(Box::new(ParamType::Int)), true))
        );
        assert_eq!(parse_annotation("None | None"), None);
        let wrapped = |n: usize| format!("{}int{}", "Optional[".repeat(n), "]".repeat(n));
        assert_eq!(
            parse_annotation(&wrapped(MAX_OPTIONAL_WRAPPERS)),
            Some((ParamType::Int, true))
        );
        assert_eq!(parse_annotation(&wrapped(MAX_OPTIONAL_WRAPPERS + 1)), None);
    }

    #[test]
    fn file_is_a_type_only_in_comments() {
        assert_eq!(parse_type_comment(" file "), Some((ParamType::File, false)));
        assert_eq!(
            parse_type_comment("Optional[file]"),
            Some((ParamType::File, true))
        );
        assert_eq!(
            parse_type_comment("file | None"),
            Some((ParamType::File, true))
        );
        assert_eq!(parse_type_comment("int"), Some((ParamType::Int, false)));
        assert_eq!(parse_annotation("file"), None);
        assert_eq!(parse_type_comment("list[file]"), None);
        let long = format!("{}file", " ".repeat(MAX_ANNOTATION_LEN));
        assert_eq!(parse_type_comment(&long), None);
    }
}
