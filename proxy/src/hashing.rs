//! The 64-bit hash behind consistent hashing (ring points and request keys): FNV-1a over the
//! bytes, then a SplitMix64 finalizer so that similar keys spread over the whole ring. Stable
//! across runs and builds, so a key keeps its endpoint over an agent restart.

pub(crate) fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_spread() {
        assert_eq!(hash64(b"jason"), hash64(b"jason"));
        assert_ne!(hash64(b"a"), hash64(b"b"));
        // Keys differing in one byte land in different halves of the ring about half the time.
        let high = (0..1000u32)
            .filter(|i| hash64(format!("k{i}").as_bytes()) >> 63 == 1)
            .count();
        assert!((400..600).contains(&high), "{high}");
    }
}
