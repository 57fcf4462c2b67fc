//! Random identifiers: instance, task and container-instance ids (hex), refresh and request ids
//! (UUID-shaped). Unique within a process; not for security.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// `digits` random hex digits.
pub fn hex(digits: usize) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let keys = KEYS.get_or_init(std::collections::hash_map::RandomState::new);
    let mut out = String::with_capacity(digits + 16);
    while out.len() < digits {
        let mut h = keys.build_hasher();
        h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(digits);
    out
}

/// A UUID-shaped random id (`8-4-4-4-12` hex digits), as instance refresh and request ids are.
pub fn uuid() -> String {
    let h = hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
