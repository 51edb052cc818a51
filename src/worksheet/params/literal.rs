//! A small reader of Python source for the parameters cell: a cursor over the text,
//! whitespace and comments, identifiers, and literal values (numbers, strings in every
//! quoting style, `True`/`False`/`None`, lists and tuples of those), with a nesting limit.

/// How deeply lists and tuples may nest in a value; deeper values are refused (the reader
/// recurses once per level).
pub(super) const MAX_NESTING: usize = 32;

pub(super) struct Parser<'a> {
    pub(super) src: &'a str,
    pub(super) pos: usize,
}

pub(super) enum Lit {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    None,
    Seq(Vec<Lit>),
}

impl<'a> Parser<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Parser { src, pos: 0 }
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    pub(super) fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub(super) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Skip spaces and tabs (and backslash line continuations).
    pub(super) fn skip_inline_ws(&mut self) {
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
    pub(super) fn skip_ws_multiline(&mut self) {
        loop {
            self.skip_inline_ws();
            match self.peek() {
                Some('\n' | '\r') => self.pos += 1,
                Some('#') => self.skip_to_eol(),
                _ => break,
            }
        }
    }

    pub(super) fn skip_to_eol(&mut self) {
        match self.rest().find('\n') {
            Some(i) => self.pos += i,
            None => self.pos = self.src.len(),
        }
    }

    pub(super) fn ident(&mut self) -> Option<&'a str> {
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
    pub(super) fn literal(&mut self) -> Result<Lit, String> {
        self.literal_inner(0)
    }

    pub(super) fn literal_inner(&mut self, depth: usize) -> Result<Lit, String> {
        if depth > MAX_NESTING {
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

    pub(super) fn sequence(&mut self, close: char, depth: usize) -> Result<Lit, String> {
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

    pub(super) fn number(&mut self) -> Result<Lit, String> {
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
    pub(super) fn string_literal(&mut self) -> Result<String, String> {
        self.quoted(false)
    }

    /// A raw string `r'...'` (cursor on the quote).
    pub(super) fn raw_string(&mut self) -> Result<String, String> {
        self.quoted(true)
    }

    /// A single- or triple-quoted string; in a raw one a backslash is kept with the
    /// character after it (which cannot end the string).
    pub(super) fn quoted(&mut self, raw: bool) -> Result<String, String> {
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

    pub(super) fn open_quote(&mut self) -> Result<(char, bool), String> {
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
    pub(super) fn close_triple(&mut self, quote: char) -> bool {
        let pair: String = [quote, quote].iter().collect();
        if self.rest().starts_with(&pair) {
            self.pos += 2;
            true
        } else {
            false
        }
    }

    pub(super) fn escape(&mut self, out: &mut String) -> Result<(), String> {
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

    pub(super) fn hex_escape(&mut self, len: usize) -> Result<char, String> {
        let digits = self.rest().get(..len).ok_or("truncated escape")?;
        if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("bad escape `{digits}`"));
        }
        let v = u32::from_str_radix(digits, 16).map_err(|_| format!("bad escape `{digits}`"))?;
        self.pos += len;
        char::from_u32(v).ok_or_else(|| format!("escape `{digits}` is not a character"))
    }
}
