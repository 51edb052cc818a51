//! Small text helpers shared by the forges and the environment flow.

use std::borrow::Cow;

/// `s` cut to at most `max` bytes on a character boundary, ending with `…` when cut.
/// Forges limit status descriptions (GitLab: 255 bytes, GitHub: 140 characters); a cut by
/// bytes fits both.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let ellipsis = '…';
    let mut end = max.saturating_sub(ellipsis.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{ellipsis}", &s[..end]))
}

/// Remove ANSI/VT100 escape sequences (colours, cursor moves, OSC titles and links).
pub fn strip_ansi(text: &str) -> Cow<'_, str> {
    if !text.contains('\x1b') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // CSI: parameters and intermediates, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                // OSC: up to BEL or ST (ESC \).
                while let Some(c) = chars.next() {
                    if c == '\x07' {
                        break;
                    }
                    if c == '\x1b' {
                        if chars.peek() == Some(&'\\') {
                            chars.next();
                        }
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        let long = "é".repeat(200); // 400 bytes
        let cut = truncate(&long, 255);
        assert!(cut.len() <= 255);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate(&"x".repeat(200), 140).len(), 140);
    }
}
