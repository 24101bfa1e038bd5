//! The simple-URL path of `urls.normalize_url` (`_SIMPLE_URL_RE`): an http(s) URL of a plain
//! host name, a path of plain characters and a query of plain k=v pairs, with nothing for
//! urlsplit, quote or parse_qsl to do. Anything else is left to the Python code (None).

use std::collections::HashSet;

pub struct TrackingParams {
    pub names: HashSet<String>,
    pub prefixes: Vec<String>,
}

impl TrackingParams {
    /// `urls._keep_param`.
    fn keep(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        !self.names.contains(&name) && !self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

/// Python's `str.isspace` on ASCII (`str.strip` of a URL that is ASCII after it).
fn is_blank(c: char) -> bool {
    matches!(c, '\t'..='\r' | '\u{1c}'..='\u{20}' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}'
        | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}')
}

fn is_host(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

fn is_path(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_/.~!$&'()*+,;=:@-".contains(&b)
}

fn is_query_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_.~-".contains(&b)
}

/// `_SIMPLE_URL_RE.fullmatch` (re.ASCII): (host, path, query) spans, or None.
fn simple_parts(url: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let scheme = if url.len() >= 8 && url[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else if url.len() >= 7 && url[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else {
        return None;
    };
    let run = |from: usize, ok: fn(u8) -> bool| url[from..].iter().position(|&b| !ok(b)).map_or(url.len(), |n| from + n);
    let host_end = run(scheme, is_host);
    let host = &url[scheme..host_end];
    if !host.iter().any(|&b| b != b'.') {
        return None;
    }
    let mut at = host_end;
    let path = if url.get(at) == Some(&b'/') {
        let end = run(at, is_path);
        let path = &url[at..end];
        at = end;
        path
    } else {
        &url[at..at]
    };
    if at == url.len() {
        return Some((host, path, &url[at..at]));
    }
    if url[at] != b'?' {
        return None;
    }
    let query = &url[at + 1..];
    // pairs `key(=value)?` joined by "&", keys not empty, to the end
    for pair in query.split(|&b| b == b'&') {
        let key = pair.iter().position(|&b| !is_query_word(b)).unwrap_or(pair.len());
        if key == 0 || !(key == pair.len() || (pair[key] == b'=' && pair[key + 1..].iter().all(|&b| is_query_word(b)))) {
            return None;
        }
    }
    Some((host, path, query))
}

/// `normalize_url` of a simple URL; None where the Python code must decide (not simple, a host of
/// digits only, or an IDNA one).
pub fn simple_url(url: &str, tracking: &TrackingParams) -> Option<String> {
    let url = url.trim_matches(is_blank).trim_matches(|c| "<>\"'.,;:!".contains(c));
    if !url.is_ascii() {
        return None;
    }
    let mut url = url.replace('\\', "/");
    if url.len() >= 4 && url[..4].eq_ignore_ascii_case("www.") {
        url.insert_str(0, "http://");
    }
    let (host, path, query) = simple_parts(url.as_bytes())?;
    let host = std::str::from_utf8(host).ok()?.trim_matches('.').to_ascii_lowercase();
    if host.bytes().all(|b| b.is_ascii_digit()) || host.contains("xn--") {
        return None;
    }
    let mut out = host;
    let start = out.len();
    for &b in path {
        if !(b == b'/' && out.len() > start && out.ends_with('/')) {
            out.push(b as char); // runs of slashes as one (`_SLASHES_RE`)
        }
    }
    while out.len() > start && out.ends_with('/') {
        out.pop();
    }
    let query = std::str::from_utf8(query).ok()?;
    if !query.is_empty() {
        let mut pairs: Vec<(&str, &str)> = query.split('&').map(|p| p.split_once('=').unwrap_or((p, "")))
            .filter(|(k, _)| tracking.keep(k)).collect();
        pairs.sort_unstable();
        for (n, (k, v)) in pairs.iter().enumerate() {
            out.push(if n == 0 { '?' } else { '&' });
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
    }
    Some(out)
}

/// `urls.url_skeleton` of an ASCII normalised URL without escapes in its query (else None, for
/// the Python code): digit runs as "0", random-looking runs (`_RANDOMISH_RE`) as "*", parameter names only.
pub fn skeleton(normalized: &str) -> Option<String> {
    if !normalized.is_ascii() {
        return None;
    }
    let (base, query) = normalized.split_once('?').unwrap_or((normalized, ""));
    if query.contains(['%', '+']) {
        return None;
    }
    // each run of digits is one "0" (`_SKELETON_RE`)
    let mut folded: Vec<u8> = Vec::with_capacity(base.len());
    let mut in_digits = false;
    for &b in base.as_bytes() {
        let digit = b.is_ascii_digit();
        if !(digit && in_digits) {
            folded.push(if digit { b'0' } else { b.to_ascii_lowercase() });
        }
        in_digits = digit;
    }
    let is_run = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
    let mut out = String::with_capacity(normalized.len());
    let mut at = 0;
    while at < folded.len() {
        let letters = folded[at..].iter().position(|b| !b.is_ascii_lowercase()).map_or(folded.len(), |n| at + n);
        let random = letters < folded.len() && folded[letters].is_ascii_digit() && {
            let run = folded[at..].iter().position(|&b| !is_run(b)).unwrap_or(folded.len() - at);
            if run >= 12 {
                out.push('*');
                at += run;
            }
            run >= 12
        };
        if !random {
            out.push(folded[at] as char);
            at += 1;
        }
    }
    let mut keys: Vec<String> = query.split('&').filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or(p, |(k, _)| k).to_ascii_lowercase()).collect();
    keys.sort_unstable();
    keys.dedup();
    if !keys.is_empty() {
        out.push('?');
        out.push_str(&keys.join("&"));
    }
    Some(out)
}
