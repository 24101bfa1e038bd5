//! The near-duplicate index of text signatures (`lsh.SignatureIndex`): LSH buckets per band of
//! `BAND_ROWS` bins, the signatures sharing most bands compared bin by bin.

use std::collections::HashMap;

use crate::mixhash::MixState;
use crate::table::Table;
use crate::text::BINS;

const BAND_ROWS: usize = 4;
const BANDS: usize = BINS / BAND_ROWS;

pub type Sig = [u32; BINS];

fn band_key(sig: &Sig, band: usize) -> u128 {
    sig[band * BAND_ROWS..(band + 1) * BAND_ROWS].iter().fold(0u128, |key, &bin| (key << 32) | bin as u128)
}

#[derive(Default)]
pub struct SignatureIndex {
    buckets: Table<(u8, u128), Vec<u32>>, // (band, bucket key) -> rows, in order of insertion
    rows: HashMap<String, u32>,
    keys: Vec<String>, // row -> its key ("" for a free row)
    sigs: Vec<Sig>,
    free: Vec<u32>,
}

impl SignatureIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Index `sig` under `key` (replacing what `key` had).
    pub fn add(&mut self, key: &str, sig: &Sig) {
        self.discard(key);
        let row = match self.free.pop() {
            Some(row) => row,
            None => {
                self.keys.push(String::new());
                self.sigs.push([0; BINS]);
                (self.keys.len() - 1) as u32
            }
        };
        self.keys[row as usize] = key.to_owned();
        self.sigs[row as usize] = *sig;
        self.rows.insert(key.to_owned(), row);
        for band in 0..BANDS {
            self.buckets.get_or_insert_with((band as u8, band_key(sig, band)), Vec::new).push(row);
        }
    }

    /// Forget `key`; nothing happens if it is not indexed.
    pub fn discard(&mut self, key: &str) {
        let Some(row) = self.rows.remove(key) else { return };
        let sig = self.sigs[row as usize];
        for band in 0..BANDS {
            let bucket_key = (band as u8, band_key(&sig, band));
            if let Some(bucket) = self.buckets.get_mut(&bucket_key) {
                bucket.retain(|&r| r != row);
                if bucket.is_empty() {
                    self.buckets.remove(&bucket_key);
                }
            }
        }
        self.keys[row as usize].clear();
        self.free.push(row);
    }

    /// (key, similarity) of at most `limit` indexed signatures, those sharing most bands (ties: the
    /// first seen), in order of first sight unless cut to `limit` (then by bands shared).
    pub fn candidates(&self, sig: &Sig, limit: usize) -> Vec<(&str, f64)> {
        let mut order: Vec<(u32, u32)> = Vec::new(); // (row, bands shared)
        let mut at: HashMap<u32, usize, MixState> = HashMap::with_hasher(MixState::new());
        let keys: Vec<(u8, u128)> = (0..BANDS).map(|band| (band as u8, band_key(sig, band))).collect();
        self.buckets.for_each(&keys, |bucket| {
            for &row in bucket.into_iter().flatten() {
                let slot = *at.entry(row).or_insert_with(|| {
                    order.push((row, 0));
                    order.len() - 1
                });
                order[slot].1 += 1;
            }
        });
        if order.len() > limit {
            order.sort_by(|a, b| b.1.cmp(&a.1)); // stable: ties stay in order of first sight
            order.truncate(limit);
        }
        order.iter().map(|&(row, _)| {
            let known = &self.sigs[row as usize];
            let equal = known.iter().zip(sig).filter(|(a, b)| a == b).count();
            (self.keys[row as usize].as_str(), equal as f64 / BINS as f64)
        }).collect()
    }
}
