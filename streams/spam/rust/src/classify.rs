//! The token classifier's counts and its `classify`: Robinson's token probability, Fisher's
//! chi-squared combining of the most decisive tokens, as `classifier.TokenClassifier` computes them
//! (the same float operations in the same order, and libm's exp/log/log1p, which CPython calls too;
//! fsum is exactly rounded, so its order does not matter).

use crate::table::Table;

/// (strength |p-0.5|, ln p, ln(1-p), token hash), as `classifier.Clue`.
pub type Clue = (f64, f64, f64, u64);

const HALF_ULP: f64 = 1.0 / (1u64 << 54) as f64; // a term below this share of a sum rounds away
const TINY: f64 = 1.0 / (1u64 << 60) as f64; // leaves room for the bound's rounding

/// A token's counts and, memoised, its clue as of `generation` (Python's memo, emptied by every
/// learn, is the generation here: bumped by a learn, so the memo costs no lookup of its own).
#[derive(Default)]
struct Counts {
    spam: i64,
    ham: i64,
    generation: u64,
    clue: Option<(f64, f64, f64)>,
}

pub struct Classifier {
    counts: Table<u64, Counts>, // tokens with a count > 0 in either class
    pub nspam: i64,
    pub nham: i64,
    strength: f64,
    unknown_prob: f64,
    max_tokens: usize,
    min_strength: f64,
    generation: u64, // clues of an older generation are stale
}

impl Classifier {
    pub fn new(strength: f64, unknown_prob: f64, max_tokens: usize, min_strength: f64) -> Self {
        Self { counts: Table::new(), nspam: 0, nham: 0, strength, unknown_prob, max_tokens, min_strength,
               generation: 1 }
    }

    /// Count one mail's tokens for its class; weight -1 unlearns it.
    pub fn learn(&mut self, tokens: &[u64], is_spam: bool, weight: i64) {
        for &tok in tokens {
            let counts = self.counts.get_or_insert_with(tok, Counts::default);
            let count = if is_spam { &mut counts.spam } else { &mut counts.ham };
            *count = (*count + weight).max(0);
            if counts.spam == 0 && counts.ham == 0 {
                self.counts.remove(&tok);
            }
        }
        if is_spam {
            self.nspam = (self.nspam + weight).max(0);
        } else {
            self.nham = (self.nham + weight).max(0);
        }
        self.generation += 1;
    }

    /// The spam probability of a mail's tokens and the clues used, most decisive first, each with
    /// its token's place in `tokens`.
    pub fn classify(&mut self, tokens: &[u64]) -> (f64, Vec<(Clue, u32)>) {
        let mut used: Vec<(Clue, u32)> = Vec::with_capacity(tokens.len());
        let generation = self.generation;
        let token = TokenProb { nspam: self.nspam.max(1) as f64, nham: self.nham.max(1) as f64,
                                strength: self.strength, unknown_prob: self.unknown_prob,
                                min_strength: self.min_strength };
        self.counts.for_each_mut(tokens, |at, counts| {
            let Some(counts) = counts else { return };
            if counts.generation != generation {
                counts.clue = token.clue(counts.spam, counts.ham);
                counts.generation = generation;
            }
            if let Some((dist, ln_p, ln_q)) = counts.clue {
                used.push(((dist, ln_p, ln_q, tokens[at]), at as u32));
            }
        });
        if used.is_empty() {
            return (0.5, used);
        }
        // as Python sorts the tuples, reversed; tokens are unique, so ties are equal tuples
        used.sort_unstable_by_key(|c| std::cmp::Reverse(order_key(&c.0)));
        used.truncate(self.max_tokens);
        let n = 2 * used.len();
        let hamminess = one_minus_chi2q(-2.0 * fsum(used.iter().map(|c| c.0 .1)), n);
        let spamminess = one_minus_chi2q(-2.0 * fsum(used.iter().map(|c| c.0 .2)), n);
        ((spamminess - hamminess + 1.0) / 2.0, used)
    }
}

/// Robinson's probability of a token from its counts, as `TokenClassifier._token`.
struct TokenProb {
    nspam: f64,
    nham: f64,
    strength: f64,
    unknown_prob: f64,
    min_strength: f64,
}

impl TokenProb {
    fn clue(&self, s: i64, h: i64) -> Option<(f64, f64, f64)> {
        let sr = s as f64 / self.nspam;
        let hr = h as f64 / self.nham;
        let n = (s + h) as f64;
        let p = (self.strength * self.unknown_prob + n * sr / (sr + hr)) / (self.strength + n);
        let dist = (p - 0.5).abs();
        if dist < self.min_strength { None } else { Some((dist, p.ln(), (-p).ln_1p())) }
    }
}

/// A clue as integers that compare as Python compares the tuples (floats compared on their bits: a
/// float compare chain made the sort half of `classify`). Exact for these floats: none is NaN or
/// -0.0 (dist >= +0.0 from abs; ln p and ln(1-p) < 0 for 0 < p < 1).
fn order_key(c: &Clue) -> [u64; 4] {
    let float = |x: f64| {
        let bits = x.to_bits();
        if bits >> 63 == 1 { !bits } else { bits | 1 << 63 }
    };
    [float(c.0), float(c.1), float(c.2), c.3]
}

/// P(chi-squared with v (even) degrees of freedom >= x2), as `classifier.chi2q`.
pub fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut total = term;
    for i in 1..v / 2 {
        term *= m / i as f64;
        if term < total * HALF_ULP && i as f64 > m {
            break;
        }
        total += term;
    }
    total.min(1.0)
}

/// `1.0 - chi2q(x2, v)`, 1.0 at once when the sum is surely below 2**-55 (`classifier.one_minus_chi2q`).
/// ln Gamma(k) of the integer k is summed as ln((k-1)!): its last-bit rounding can differ from
/// CPython's lgamma, but only moves a bound that has 2**5 of room either way.
pub fn one_minus_chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let k = v / 2;
    if m > k as f64 {
        if k as f64 * (-m + (k as f64 - 1.0) * m.ln() - ln_gamma(k)).exp() < TINY {
            return 1.0;
        }
    }
    1.0 - chi2q(x2, v)
}

/// ln Gamma(k) = ln((k-1)!) of a whole k, from a table made once (a sum of k logarithms per call was
/// a third of `classify`).
fn ln_gamma(k: usize) -> f64 {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = vec![0.0; 1025];
        for i in 2..table.len() {
            table[i] = table[i - 1] + ((i - 1) as f64).ln();
        }
        table
    });
    match table.get(k) {
        Some(&value) => value,
        None => (2..k).map(|i| (i as f64).ln()).sum(),
    }
}

/// An exactly rounded sum: CPython's `math.fsum` (Shewchuk's partials, half-even fix-up), finite inputs.
pub fn fsum(values: impl Iterator<Item = f64>) -> f64 {
    let mut partials: Vec<f64> = Vec::with_capacity(32);
    for mut x in values {
        let mut i = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        partials.truncate(i);
        if x != 0.0 {
            partials.push(x);
        }
    }
    let mut n = partials.len();
    if n == 0 {
        return 0.0;
    }
    n -= 1;
    let mut hi = partials[n];
    let mut lo = 0.0;
    while n > 0 {
        let x = hi;
        n -= 1;
        let y = partials[n];
        hi = x + y;
        lo = y - (hi - x);
        if lo != 0.0 {
            break;
        }
    }
    if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        if y == x - hi {
            hi = x;
        }
    }
    hi
}
