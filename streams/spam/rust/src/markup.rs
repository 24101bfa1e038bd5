//! `normalize.html_to_text` for ASCII markup, but for its `html.unescape`: comments out, the link
//! targets, then `_BLOCK_RE`, `_BREAK_RE` and `_TAG_RE` as `re.sub` applies them, each hand-written
//! (the Rust regex crate has no backreference, which `_BLOCK_RE` needs). Only ASCII: Python's
//! case-insensitive and `\b` matching have Unicode cases (e.g. U+017F matches "s") that this does not
//! copy, so the caller gives other markup to the regexes.

const BLOCKS: [&[u8]; 4] = [b"script", b"style", b"head", b"title"];
// an alternation of words each followed by \b: it matches where the whole word is one of them
const BREAKS: [&[u8]; 18] = [b"br", b"p", b"div", b"tr", b"td", b"th", b"li", b"ul", b"ol", b"h1", b"h2", b"h3",
                             b"h4", b"h5", b"h6", b"table", b"blockquote", b"hr"];
const LINK_NAMES: [&[u8]; 4] = [b"href", b"src", b"action", b"background"];

/// `\s` of Python's `re` on ASCII (it counts \x1c-\x1f too).
fn is_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | 0x1c..=0x20)
}

/// `\w` on ASCII.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|at| from + at)
}

fn find_byte(hay: &[u8], from: usize, byte: u8) -> Option<usize> {
    memchr::memchr(byte, hay.get(from..)?).map(|at| from + at)
}

/// `_remove_comments`: each `<!--` through the next `-->` (or the end) out.
pub fn remove_comments(markup: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(markup.len());
    let mut pos = 0;
    while let Some(start) = find(markup, pos, b"<!--") {
        out.extend_from_slice(&markup[pos..start]);
        pos = find(markup, start + 4, b"-->").map_or(markup.len(), |end| end + 3);
    }
    out.extend_from_slice(&markup[pos..]);
    out
}

/// The end of `_HREF_LOWER_RE`'s match at `at` and its value's span, on ASCII markup compared
/// case-insensitively: `(?:href|src|action|background)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))`.
fn link_at(m: &[u8], at: usize) -> Option<(usize, usize, usize)> {
    let name = LINK_NAMES.iter().find(|n| m.len() - at >= n.len() && m[at..at + n.len()].eq_ignore_ascii_case(n))?;
    let mut i = at + name.len();
    while i < m.len() && is_space(m[i]) {
        i += 1;
    }
    if m.get(i) != Some(&b'=') {
        return None;
    }
    i += 1;
    while i < m.len() && is_space(m[i]) {
        i += 1;
    }
    if let Some(&quote @ (b'"' | b'\'')) = m.get(i) {
        if let Some(close) = find_byte(m, i + 1, quote) {
            return Some((close + 1, i + 1, close));
        } // no closing quote: the bare value, from the quote on
    }
    let end = m[i..].iter().position(|&b| is_space(b) || b == b'>').map_or(m.len(), |n| i + n);
    (end > i).then_some((end, i, end))
}

/// `_links`: the values of href/src/action/background attributes, not preceded by a word character.
pub fn links(m: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < m.len() {
        if !matches!(m[at] | 0x20, b'h' | b's' | b'a' | b'b') {  // no attribute name starts here
            at += 1;
            continue;
        }
        match link_at(m, at) {
            Some((end, start, stop)) => {
                if at == 0 || !is_word(m[at - 1]) {
                    out.push((start, stop));
                }
                at = end; // finditer goes on after a match, also one that \b then drops
            }
            None => at += 1,
        }
    }
    out
}

/// The word after `<` (and, for breaks, blanks and a slash) matches one of `names` and ends there
/// (`\b`), then `[^>]*>`: the end of that, or None.
fn tag_end(m: &[u8], name_at: usize, names: &[&[u8]]) -> Option<(usize, usize)> {
    let word = m[name_at..].iter().position(|&b| !is_word(b)).map_or(m.len(), |n| name_at + n);
    let name = &m[name_at..word];
    names.iter().find(|n| name.eq_ignore_ascii_case(n))?;
    Some((word, find_byte(m, word, b'>')? + 1))
}

/// `_BLOCK_RE` at `at`: `<(script|style|head|title)\b[^>]*>.*?</\1\s*>`, the end of the match.
fn block_at(m: &[u8], at: usize) -> Option<usize> {
    let (word, mut pos) = tag_end(m, at + 1, &BLOCKS)?;
    let name = &m[at + 1..word];
    while let Some(close) = find(m, pos, b"</") {
        let after = close + 2 + name.len();
        if after <= m.len() && m[close + 2..after].eq_ignore_ascii_case(name) {
            let mut i = after;
            while i < m.len() && is_space(m[i]) {
                i += 1;
            }
            if m.get(i) == Some(&b'>') {
                return Some(i + 1);
            }
        }
        pos = close + 1;
    }
    None
}

/// `_BREAK_RE` at `at`: `<\s*/?\s*(?:br|p|div|...|hr)\b[^>]*>`, the end of the match.
fn break_at(m: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    while i < m.len() && is_space(m[i]) {
        i += 1;
    }
    if m.get(i) == Some(&b'/') {
        i += 1;
    }
    while i < m.len() && is_space(m[i]) {
        i += 1;
    }
    tag_end(m, i, &BREAKS).map(|(_, end)| end)
}

/// `re.sub` of a pattern that only matches at `<`, found by `matcher`, with `by`.
fn replace_tags(m: &[u8], by: &[u8], matcher: impl Fn(&[u8], usize) -> Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len());
    let mut copied = 0;
    let mut at = 0;
    while let Some(lt) = find_byte(m, at, b'<') {
        match matcher(m, lt) {
            Some(end) => {
                out.extend_from_slice(&m[copied..lt]);
                out.extend_from_slice(by);
                copied = end;
                at = end;
            }
            None => at = lt + 1,
        }
    }
    out.extend_from_slice(&m[copied..]);
    out
}

/// The visible text of ASCII markup (entities still escaped) and its link targets (likewise).
pub fn html_to_text(markup: &str) -> (String, Vec<String>) {
    let m = remove_comments(markup.as_bytes());
    let found = links(&m).into_iter().map(|(s, e)| ascii(&m[s..e])).collect();
    let m = replace_tags(&m, b" ", block_at);
    let m = replace_tags(&m, b"\n", break_at);
    let text = replace_tags(&m, b"", |m, at| find_byte(m, at, b'>').map(|gt| gt + 1));
    (ascii(&text), found)
}

fn ascii(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("ASCII in, ASCII out")
}
