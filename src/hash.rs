//! FNV-1a (64 bit): a stable, dependency-free hash for values that must not change across
//! processes and versions (shard ownership of a host, the jitter seed of a job). Not for
//! hash tables fed by untrusted input.

const OFFSET_BASIS: u64 = 0xcbf29ce484222325;
const PRIME: u64 = 0x100000001b3;

/// FNV-1a of `bytes`, in order.
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes
        .into_iter()
        .fold(OFFSET_BASIS, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn matches_the_published_fnv1a_64_test_vectors() {
        // From the FNV reference test suite (draft-eastlake-fnv).
        for (input, want) in [
            ("", 0xcbf29ce484222325),
            ("a", 0xaf63dc4c8601ec8c),
            ("foobar", 0x85944171f73967e8),
        ] {
            assert_eq!(fnv1a(input.bytes()), want, "{input:?}");
        }
    }
}
