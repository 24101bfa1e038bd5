//! Body tokens and the text signature of one mail, in one pass: what `fingerprint.words`,
//! `fingerprint.token_hashes`, the body part of `classifier.tokenize`, `fingerprint.shingles` and
//! `fingerprint.signature` give in Python, exactly (tests/unit/spam/test_spam_native.py compares
//! them on the whole corpus).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use xxhash_rust::xxh3::xxh3_64;

use crate::mixhash::MixState;

pub const BINS: usize = 128;
const SHIFT: u32 = 64 - 7; // the top 7 bits of a shingle hash choose its bin
const M32: u64 = 0xFFFF_FFFF;
const ROTATE: u64 = 0x9E37_79B1;
const SEPARATOR: u64 = 0x5EB5_EB5E_B5EB_5EB5; // between subject and body
const URL_PREFIX: &[u8] = b"\x01url ";
pub const MAX_HEADER_CHARS: usize = 2048; // mime.MAX_HEADER_CHARS

/// White space as Python's `str.isspace` (so `\s` of `re` and `str.split`) has it.
fn is_space(c: char) -> bool {
    matches!(c, '\t'..='\r' | '\u{1c}'..='\u{20}' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}'
        | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}')
}

/// `fingerprint._EDGES`: punctuation stripped off both ends of a word.
fn is_edge(c: char) -> bool {
    matches!(c, '"' | '\'' | '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | '.' | ',' | ';' | ':' | '!' | '?'
        | '*' | '|' | '`' | '~' | '^' | '+' | '=' | '/' | '\\' | '_' | '#' | '&' | '@' | '%' | '-')
}

/// `fingerprint._CJK_RE`: scripts written without spaces, a word per character.
fn is_cjk(c: char) -> bool {
    matches!(c, '\u{3040}'..='\u{30ff}' | '\u{3400}'..='\u{9fff}' | '\u{ac00}'..='\u{d7af}')
}

/// The text with digits 1-9 as 0 (`fingerprint._DIGITS_RE`); only ASCII bytes change, so it stays UTF-8.
pub fn fold_digits(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for b in bytes.iter_mut().filter(|b| (b'1'..=b'9').contains(*b)) {
        *b = b'0';
    }
    String::from_utf8(bytes).expect("ASCII digits replaced by an ASCII digit")
}

/// A piece between separators with edge punctuation off both ends, if anything is left. Edges are
/// ASCII, and no byte of a multi-byte UTF-8 character is, so trimming bytes trims characters.
fn push_word<'a>(text: &'a str, mut start: usize, mut end: usize, out: &mut Vec<&'a str>) {
    let b = text.as_bytes();
    while start < end && is_edge(b[start] as char) {
        start += 1;
    }
    while end > start && is_edge(b[end - 1] as char) {
        end -= 1;
    }
    if start < end {
        out.push(&text[start..end]);
    }
}

/// `fingerprint.words` of text already passed through `fold_digits`: split at white space and
/// around CJK characters, edge punctuation off both ends, empty pieces dropped.
pub fn words(folded: &str) -> Vec<&str> {
    let b = folded.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 6);
    let (mut start, mut at) = (0, 0);
    while at < b.len() {
        if b[at] < 0x80 {  // most text: no decoding
            if is_space(b[at] as char) {
                push_word(folded, start, at, &mut out);
                start = at + 1;
            }
            at += 1;
            continue;
        }
        let c = folded[at..].chars().next().expect("at a character boundary");
        let next = at + c.len_utf8();
        if is_space(c) {
            push_word(folded, start, at, &mut out);
            start = next;
        } else if is_cjk(c) {
            push_word(folded, start, at, &mut out);
            out.push(&folded[at..next]);
            start = next;
        }
        at = next;
    }
    push_word(folded, start, b.len(), &mut out);
    out
}

pub fn token_hash(token: &str) -> u64 {
    xxh3_64(token.as_bytes())
}

/// Python's `len` of a str: its characters (UTF-8 bytes that do not continue one).
fn char_len(word: &str) -> usize {
    word.bytes().filter(|&b| b & 0xC0 != 0x80).count()
}

/// A mail's tokens, all in one buffer (one allocation, not one a token), each a span of it.
pub struct TokenText {
    pub buffer: String,
    pub spans: Vec<(u32, u32)>,
}

impl TokenText {
    pub fn get(&self, at: usize) -> Option<&str> {
        self.spans.get(at).map(|&(s, e)| &self.buffer[s as usize..e as usize])
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Append `pieces` as one token; its span.
    fn push(&mut self, pieces: &[&str]) -> (u32, u32) {
        let start = self.buffer.len() as u32;
        for piece in pieces {
            self.buffer.push_str(piece);
        }
        (start, self.buffer.len() as u32)
    }
}

pub struct TextPrints {
    pub tokens: TokenText,
    pub hashes: Vec<u64>,
    pub signature: Option<[u32; BINS]>,
}

/// The classifier tokens of subject and body (then `extra`, the URL and header tokens) with their
/// hashes, and the MinHash of the text's word 3-shingles and the URL skeletons.
pub fn text_prints(subject: &str, text: &str, extra: &[&str], skeletons: &[&str], min_shingles: usize) -> TextPrints {
    let subject = fold_digits(subject);
    let text = fold_digits(text);
    let subject_words = words(&subject);
    let body_words = words(&text);
    let body_hashes: Vec<u64> = body_words.iter().map(|w| token_hash(w)).collect();

    // each body word once, in order of first use, the last word of a hash kept (`dict(zip(...))`)
    let mut unique: Vec<(u64, &str)> = Vec::with_capacity(body_words.len() / 2);
    let mut seen: HashMap<u64, usize, MixState> = HashMap::with_capacity_and_hasher(body_words.len(), MixState::new());
    for (&hash, &word) in body_hashes.iter().zip(&body_words) {
        match seen.entry(hash) {
            Entry::Occupied(place) => unique[*place.get()].1 = word,
            Entry::Vacant(place) => {
                place.insert(unique.len());
                unique.push((hash, word));
            }
        }
    }
    let lengths: Vec<usize> = unique.iter().map(|u| char_len(u.1)).collect();
    let n = unique.len() + subject_words.len() + extra.len();
    let mut tokens = TokenText { buffer: String::with_capacity(text.len() / 2 + 64 * n.min(256)),
                                 spans: Vec::with_capacity(n) };
    let mut hashes: Vec<u64> = Vec::with_capacity(n);
    let mut token_of: Vec<u32> = vec![u32::MAX; unique.len()]; // unique word -> its place among the tokens
    for (u, (&(hash, word), &len)) in unique.iter().zip(&lengths).enumerate() {
        if (3..=12).contains(&len) {
            token_of[u] = tokens.spans.len() as u32;
            let span = tokens.push(&[word]);
            tokens.spans.push(span);
            hashes.push(hash);
        }
    }
    // then the other tokens, as `dict.update`: a hash already there keeps its place, takes the new token
    let mut later: HashMap<u64, usize, MixState> = HashMap::with_capacity_and_hasher(n - hashes.len(), MixState::new());
    let mut add = |pieces: &[&str], tokens: &mut TokenText, hashes: &mut Vec<u64>| {
        let span = tokens.push(pieces);
        let hash = token_hash(&tokens.buffer[span.0 as usize..span.1 as usize]);
        let body = seen.get(&hash).map(|&u| token_of[u]).filter(|&at| at != u32::MAX).map(|at| at as usize);
        match body.or_else(|| later.get(&hash).copied()) {
            Some(at) => tokens.spans[at] = span,
            None => {
                later.insert(hash, tokens.spans.len());
                tokens.spans.push(span);
                hashes.push(hash);
            }
        }
    };
    for word in &subject_words {
        add(&["s:", word], &mut tokens, &mut hashes);
    }
    let mut first = [0u8; 4];
    for (&(_, word), &len) in unique.iter().zip(&lengths).filter(|(_, &len)| len > 12) {
        let first = word.chars().next().expect("a word is never empty").encode_utf8(&mut first);
        add(&["skip:", first, &(len / 10).to_string()], &mut tokens, &mut hashes);
    }
    for &token in extra {
        add(&[token], &mut tokens, &mut hashes);
    }

    let subject_hashes = subject_words.iter().map(|w| token_hash(w));
    let sequence: Vec<u64> = subject_hashes.chain([SEPARATOR]).chain(body_hashes.iter().copied()).collect();
    let mut shingles: Vec<u64> = sequence.windows(3).map(|w| w[0] ^ (w[1] >> 1) ^ (w[2] >> 2)).collect();
    let mut buffer = Vec::with_capacity(64);
    for skeleton in skeletons {
        buffer.clear();
        buffer.extend_from_slice(URL_PREFIX);
        buffer.extend_from_slice(skeleton.as_bytes());
        shingles.push(xxh3_64(&buffer));
    }
    TextPrints { tokens, hashes, signature: signature(&shingles, min_shingles) }
}

/// The one-permutation MinHash of the hashes (repeats counted once), densified by rotation; None
/// with fewer than `min_shingles` hashes, or too few different ones.
pub fn signature(values: &[u64], min_shingles: usize) -> Option<[u32; BINS]> {
    if values.len() < min_shingles {
        return None;
    }
    let mut least = [u64::MAX; BINS];
    let mut filled_bins = [false; BINS];
    for &v in values {
        let bin = (v >> SHIFT) as usize;
        least[bin] = least[bin].min(v);
        filled_bins[bin] = true;
    }
    let filled: Vec<usize> = (0..BINS).filter(|&b| filled_bins[b]).collect();
    let mut out = [0u32; BINS];
    if filled.len() == BINS {
        for (o, l) in out.iter_mut().zip(least) {
            *o = (l & M32) as u32;
        }
        return Some(out);
    }
    if filled.len() < min_shingles && values.iter().collect::<HashSet<_>>().len() < min_shingles {
        return None;
    }
    // each empty bin takes the next filled bin's value (circularly), plus the distance times a constant
    for (bin, o) in out.iter_mut().enumerate() {
        let after = filled.partition_point(|&f| f < bin);
        let nearest = if after < filled.len() { filled[after] } else { filled[0] + BINS };
        let distance = (nearest - bin) as u64;
        *o = (((least[nearest % BINS] & M32) + distance * ROTATE) & M32) as u32;
    }
    Some(out)
}

/// `normalize._URL_RE`'s body: neither white space nor one of these.
fn is_url_char(c: char) -> bool {
    !is_space(c) && !matches!(c, '<' | '>' | '"' | '\'' | '(' | ')' | '{' | '}' | '[' | ']' | '|' | '\\' | '^' | '`')
}

/// The end of the URL that starts at byte `at` of folded text (`(?:https?://|www\.)` and at least
/// one URL character, greedily), or None.
fn url_at(text: &str, at: usize) -> Option<usize> {
    let rest = &text[at..];
    let prefix = ["http://", "https://", "www."].iter().find(|p| rest.starts_with(*p))?.len();
    let body = rest[prefix..].find(|c: char| !is_url_char(c)).unwrap_or(rest.len() - prefix);
    (body > 0).then_some(at + prefix + body)
}

/// What `normalize.extract` makes of folded text with `_URL_SPLIT_RE.split`: the text without its
/// URLs (each a blank) with white space collapsed as `" ".join(t.split())` does, and the URLs.
pub fn split_urls(text: &str) -> (String, Vec<&str>) {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut urls = Vec::new();
    let mut blank = false; // white space seen since the last character written
    let mut at = 0;
    while at < bytes.len() {
        let b = bytes[at];
        if (b == b'h' || b == b'w') && bytes.len() - at > 4 {
            if let Some(end) = url_at(text, at) {
                urls.push(&text[at..end]);
                blank = true;
                at = end;
                continue;
            }
        }
        // a run of plain ASCII (no blank, no URL start) copied at once; any other character alone
        let len = if b < 0x80 {
            if is_space(b as char) {
                blank = true;
                at += 1;
                continue;
            }
            1 + bytes[at + 1..].iter().position(|&c| c >= 0x80 || c == b'h' || c == b'w' || is_space(c as char))
                .unwrap_or(bytes.len() - at - 1)
        } else {
            let c = text[at..].chars().next().expect("at a character boundary");
            if is_space(c) {
                blank = true;
                at += c.len_utf8();
                continue;
            }
            c.len_utf8()
        };
        if blank && !out.is_empty() {
            out.push(b' ');
        }
        blank = false;
        out.extend_from_slice(&bytes[at..at + len]);
        at += len;
    }
    (String::from_utf8(out).expect("whole characters copied"), urls)
}
