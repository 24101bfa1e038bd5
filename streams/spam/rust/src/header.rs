//! `mime._split_fields` and `_FIELD_RE` of an ASCII header block: its fields as (name, value).

use crate::text::MAX_HEADER_CHARS;

pub struct Fields<'a> {
    pub all: Vec<(&'a str, &'a str)>,
    pub content: Vec<(&'a str, &'a str)>, // the Content-* ones
    pub bad: Vec<&'a str>,                // lines that are no field (an mbox "From " line first is none of these)
}

/// RFC 5322 ftext: printable ASCII but the colon.
fn is_ftext(b: u8) -> bool {
    matches!(b, 0x21..=0x39 | 0x3b..=0x7e)
}

/// Python's `str.strip()` leaves something of ASCII `s`.
fn has_text(s: &str) -> bool {
    s.bytes().any(|b| !matches!(b, b'\t'..=b'\r' | 0x1c..=0x20))
}

/// The fields of an ASCII header block, continuation lines folded in (a field's own line breaks
/// kept; the `\r` of the break after a field dropped, but for the last field), as `_split_fields`.
fn split_fields(head: &str) -> Vec<&str> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for line in head.split('\n') {
        let end = start + line.len();
        let continues = matches!(line.as_bytes().first(), Some(b' ' | b'\t'));
        match out.last_mut() {
            Some(last) if continues => last.1 = end,
            _ => {
                if let Some(last) = out.last_mut() {
                    if last.1 > last.0 && head.as_bytes()[last.1 - 1] == b'\r' {
                        last.1 -= 1;
                    }
                }
                out.push((start, end));
            }
        }
        start = end + 1;
    }
    out.into_iter().map(|(s, e)| &head[s..e]).collect()
}

pub fn fields(head: &str) -> Fields<'_> {
    let mut found = Fields { all: Vec::new(), content: Vec::new(), bad: Vec::new() };
    for (n, field) in split_fields(head).into_iter().enumerate() {
        let bytes = field.as_bytes();
        let name_end = bytes.iter().position(|&b| !is_ftext(b)).unwrap_or(bytes.len());
        if name_end > 0 && bytes.get(name_end) == Some(&b':') {
            let mut at = name_end + 1;
            while matches!(bytes.get(at), Some(b' ' | b'\t')) {
                at += 1;
            }
            let value = &field[at..(at + MAX_HEADER_CHARS).min(field.len())];
            let name = &field[..name_end];
            found.all.push((name, value));
            if name.len() >= 8 && name[..8].eq_ignore_ascii_case("content-") {
                found.content.push((name, value));
            }
        } else if has_text(field) && !(n == 0 && field.starts_with("From ")) {
            found.bad.push(field);
        }
    }
    found
}

/// Python's `str.isspace`, for `str.strip`.
fn is_blank(c: char) -> bool {
    matches!(c, '\t'..='\r' | '\u{1c}'..='\u{20}' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}'
        | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}')
}

/// `normalize.unfold`: each `\r?\n[ \t]*` one blank, then white space off both ends.
pub fn unfold(value: &str) -> String {
    if !value.contains('\n') {
        return value.trim_matches(is_blank).to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\n' {
            out.push(c);
            continue;
        }
        if out.ends_with('\r') {
            out.pop(); // the \r just before this \n, copied a moment ago
        }
        out.push(' ');
        while matches!(chars.peek(), Some(' ' | '\t')) {
            chars.next();
        }
    }
    out.trim_matches(is_blank).to_owned()
}
