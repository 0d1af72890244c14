//! Which partition a keyed record belongs to: Kafka's murmur2 partitioner.
//!
//! This is the placement of the Java client's default partitioner for keyed records and of
//! librdkafka's `murmur2` / `murmur2_random` partitioners:
//! `(murmur2(key) & 0x7fffffff) % partitions`. Our producers use it, and the command processor
//! uses it to decide whether it owns a command, whatever partitioner the client that wrote the
//! command used (librdkafka's default, `consistent_random`, hashes with CRC32 instead).

/// Seed of Kafka's murmur2 variant.
const SEED: u32 = 0x9747_b28c;
/// Multiplier of MurmurHash2.
const M: u32 = 0x5bd1_e995;
/// Shift of MurmurHash2.
const R: u32 = 24;

/// Kafka's 32-bit murmur2 hash of `data` (the bits of Java's `Utils.murmur2`, as unsigned).
pub fn murmur2(data: &[u8]) -> u32 {
    // Java computes this on signed ints; wrapping unsigned arithmetic and logical shifts give
    // the same bits, and the length is hashed as Java's int, so as its low 32 bits.
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition murmur2 places `key` in among `partitions`; `None` when `partitions < 1`.
pub fn partition_for(key: &[u8], partitions: i32) -> Option<i32> {
    if partitions < 1 {
        return None;
    }
    // The sign bit is cleared (not the absolute value taken), exactly like Java's `toPositive`.
    let positive = (murmur2(key) & 0x7fff_ffff) as i32;
    Some(positive % partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own vectors (`UtilsTest.testMurmur2` of the Java client), as Java ints.
    #[test]
    fn matches_the_java_client_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(
                murmur2(key) as i32,
                want,
                "{:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    /// librdkafka's vectors (`unittest_murmur2`), which cover every tail length and the empty key.
    #[test]
    fn matches_the_librdkafka_vectors() {
        let cases: [(&str, u32); 11] = [
            ("kafka", 0xd067_cf64),
            ("giberish123456789", 0x8f55_2b0c),
            ("1234", 0x9fc9_7b14),
            ("234", 0xe7c0_09ca),
            ("34", 0x8739_30da),
            ("4", 0x5a4b_5ca1),
            ("PreAmbleWillBeRemoved,ThePrePartThatIs", 0x7842_4f1c),
            ("reAmbleWillBeRemoved,ThePrePartThatIs", 0x4a62_b377),
            ("eAmbleWillBeRemoved,ThePrePartThatIs", 0xe0e4_e09e),
            ("AmbleWillBeRemoved,ThePrePartThatIs", 0x62b8_b43f),
            ("", 0x106e_08d9),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key.as_bytes()), want, "{key:?}");
        }
    }

    #[test]
    fn partition_clears_the_sign_bit_instead_of_negating() {
        // "21" hashes to a negative Java int: -973932308 & 0x7fffffff = 1173551340.
        assert_eq!(partition_for(b"21", i32::MAX), Some(1_173_551_340));
        assert_eq!(partition_for(b"21", 8), Some(1_173_551_340 % 8));
        // A positive hash is used as it is: 479470107 % 12 = 3.
        assert_eq!(partition_for(b"abc", 12), Some(479_470_107 % 12));
    }

    #[test]
    fn partitions_are_in_range_and_stable() {
        for n in 1..=64 {
            for i in 0..200 {
                let key = format!("SKU-{i:04}");
                let p = partition_for(key.as_bytes(), n).expect("positive count");
                assert!((0..n).contains(&p));
                assert_eq!(partition_for(key.as_bytes(), n), Some(p));
            }
        }
        assert_eq!(partition_for(b"anything", 1), Some(0));
    }

    #[test]
    fn no_partition_without_partitions() {
        assert_eq!(partition_for(b"SKU-1", 0), None);
        assert_eq!(partition_for(b"SKU-1", -3), None);
    }
}
