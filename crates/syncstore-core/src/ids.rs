//! Document ids. A document inserted without an id gets a temporary id
//! (`tmp_` + time + randomness) until the sync server assigns the canonical
//! one. Randomness and time come from the caller: the core does no I/O.

/// The prefix that marks a temporary id, and its test: the protocol's own.
pub use crate::protocol::{is_temp_id as is_temp, TEMP_ID_PREFIX as TEMP_PREFIX};
/// Longest id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

fn base32(mut n: u128, digits: usize, out: &mut String) {
    let mut buf = vec![b'0'; digits];
    for slot in buf.iter_mut().rev() {
        *slot = ALPHABET[(n & 31) as usize];
        n >>= 5;
    }
    out.push_str(std::str::from_utf8(&buf).expect("ascii"));
}

/// A temporary id: 10 characters of milliseconds (sortable by creation
/// time) and 16 of randomness (80 bits), unique across tabs and reloads.
pub fn temp_id(now_ms: u64, random: u128) -> String {
    let mut s = String::with_capacity(30);
    s.push_str(TEMP_PREFIX);
    base32(now_ms as u128, 10, &mut s);
    base32(random & ((1u128 << 80) - 1), 16, &mut s);
    s
}

/// A random client id, for the server's per-client mutation bookkeeping.
pub fn client_id(random: u128) -> String {
    let mut s = String::from("c_");
    base32(random & ((1u128 << 100) - 1), 20, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_ids_are_marked_sortable_and_distinct() {
        let a = temp_id(1_700_000_000_000, 1);
        let b = temp_id(1_700_000_000_001, 0);
        let c = temp_id(1_700_000_000_000, 2);
        assert!(is_temp(&a) && a.len() == 30);
        assert!(a < b, "later time sorts later");
        assert_ne!(a, c);
        assert!(!is_temp("todo-1"));
    }
}
