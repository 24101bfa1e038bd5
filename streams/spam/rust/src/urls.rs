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

/// `_SIMPLE_URL_RE.fullmatch` (re.ASCII) but that the host may end in `:port`: (host, port,
/// path, query) spans, or None.
fn simple_parts(url: &[u8]) -> Option<(&[u8], Option<&[u8]>, &[u8], &[u8])> {
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
    let port = if url.get(at) == Some(&b':') {
        let end = run(at + 1, |b| b.is_ascii_digit());
        let port = &url[at + 1..end];
        at = end;
        Some(port)
    } else {
        None
    };
    let path = if url.get(at) == Some(&b'/') {
        let end = run(at, is_path);
        let path = &url[at..end];
        at = end;
        path
    } else {
        &url[at..at]
    };
    if at == url.len() {
        return Some((host, port, path, &url[at..at]));
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
    Some((host, port, path, query))
}

/// What `normalize_url` gives where that is plain: Some(form), Some("") for what is no web URL,
/// None where the Python code must decide. Beyond `_SIMPLE_URL_RE`: a fragment (urlsplit drops it
/// first), a port (dropped when 80 or 443, as `parts.port` reads it), and any scheme but http(s).
pub fn simple_url(url: &str, tracking: &TrackingParams) -> Option<String> {
    let url = url.trim_matches(is_blank).trim_matches(|c| "<>\"'.,;:!".contains(c));
    // urlsplit drops control characters and blanks (even inside): leave those to it
    if !url.is_ascii() || url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return None;
    }
    let mut url = url.replace('\\', "/");
    if url.len() >= 4 && url[..4].eq_ignore_ascii_case("www.") {
        url.insert_str(0, "http://");
    }
    let lower = url.as_bytes()[..url.len().min(8)].to_ascii_lowercase();
    if !(lower.starts_with(b"http://") || lower.starts_with(b"https://")) {
        // urlsplit finds no http(s) scheme with a network location: no web URL
        return Some(String::new());
    }
    let without_fragment = url.split_once('#').map_or(url.as_str(), |(u, _)| u);
    let (host, port, path, query) = simple_parts(without_fragment.as_bytes())?;
    let host = std::str::from_utf8(host).ok()?.trim_matches('.').to_ascii_lowercase();
    if host.bytes().all(|b| b.is_ascii_digit()) || host.contains("xn--") {
        return None;
    }
    let port: Option<u32> = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.len() <= 5 => Some(std::str::from_utf8(digits).ok()?.parse().ok()?),
        Some(_) => return None, // "host:" or a long port: as urlsplit has it
    };
    let mut out = host;
    match port {
        Some(p) if p > 65_535 => return None,
        Some(80 | 443) | None => {}
        Some(p) => {
            out.push(':');
            out.push_str(&p.to_string());
        }
    }
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
