//! `rules._odd_words` for ASCII text: one pass over the distinct words that are not plain letters
//! (amounts, percentages, letters-digits-letters, bait words behind look-alikes or fillers).
//! Python's loop is the reference (`rules._odd_words_py`); the two give the same counts.

use std::collections::HashSet;

/// Python's `str.split()` separators in ASCII (it counts the four information separators too).
fn is_py_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1f)
}

const EDGE: &[u8] = b".,;:!?\"'()[]<>*-";

fn strip_edge(mut w: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = w {
        if EDGE.contains(first) { w = rest } else { break }
    }
    while let [rest @ .., last] = w {
        if EDGE.contains(last) { w = rest } else { break }
    }
    w
}

/// `[a-z]+\d+[a-z]+` matched against the whole word.
fn mixed(w: &[u8]) -> bool {
    let letters = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_lowercase()).count();
    let a = letters(w);
    if a == 0 { return false; }
    let d = w[a..].iter().take_while(|b| b.is_ascii_digit()).count();
    if d == 0 { return false; }
    let rest = &w[a + d..];
    !rest.is_empty() && letters(rest) == rest.len()
}

/// The word with look-alikes mapped back and everything but letters and digits dropped.
fn unmasked(w: &[u8]) -> Vec<u8> {
    w.iter().filter_map(|&b| {
        let b = match b {
            b'0' => b'o', b'1' => b'i', b'3' => b'e', b'4' => b'a', b'5' => b's', b'7' => b't',
            b'@' => b'a', b'$' => b's', b'!' => b'i', b'|' => b'l', other => other,
        };
        b.is_ascii_alphanumeric().then_some(b)
    }).collect()
}

pub struct Counts {
    pub money: u32,
    pub percent: u32,
    pub mixed: u32,
    pub disguised_bait: bool,
}

pub fn odd_words(text: &[u8], bait: &HashSet<Vec<u8>>) -> Counts {
    let mut out = Counts { money: 0, percent: 0, mixed: 0, disguised_bait: false };
    let mut seen: HashSet<&[u8]> = HashSet::new();
    for raw in text.split(|&b| is_py_space(b)) {
        if raw.is_empty() || raw.iter().all(u8::is_ascii_alphabetic) || !seen.insert(raw) {
            continue;
        }
        let w = strip_edge(raw);
        if w.len() < 3 || w.iter().all(u8::is_ascii_alphabetic) || w.iter().all(u8::is_ascii_digit) {
            continue;
        }
        if w[0] == b'$' {
            out.money += 1;
        } else if w[w.len() - 1] == b'%' {
            out.percent += 1;
        } else {
            if mixed(w) {
                out.mixed += 1;
            }
            if !out.disguised_bait && w.len() <= 24 && bait.contains(&unmasked(w)) {
                out.disguised_bait = true;
            }
        }
    }
    out
}
