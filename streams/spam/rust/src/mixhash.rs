//! A fast hasher for keys that are already 64-bit hashes (words' XXH3), seeded per process: the
//! splitmix64 finalizer over key ^ seed, so a sender cannot pick words whose keys pile up in one
//! bucket (std's SipHash would be safe too, but costs most of a lookup).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

#[derive(Clone, Copy)]
pub struct MixState(u64);

impl MixState {
    pub fn new() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        MixState(*SEED.get_or_init(|| RandomState::new().hash_one(0x6D61_696C_6761_7465u64)))
    }
}

impl Default for MixState {
    fn default() -> Self {
        Self::new()
    }
}

impl BuildHasher for MixState {
    type Hasher = MixHasher;
    fn build_hasher(&self) -> MixHasher {
        MixHasher(self.0)
    }
}

pub struct MixHasher(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Hasher for MixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = mix(self.0 ^ u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = mix(self.0 ^ key);
    }

    fn write_usize(&mut self, key: usize) {
        self.write_u64(key as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
