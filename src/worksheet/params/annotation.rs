//! Type annotations of parameters (`int`, `Optional[float]`, `list[str]`, `str | None`).

use super::ParamType;

/// Parse an annotation into (type, optional). `None` when it is not one we can handle.
pub(super) fn parse_annotation(ann: &str) -> Option<(ParamType, bool)> {
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
