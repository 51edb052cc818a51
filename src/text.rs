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
