//! SHA-256 of two messages at once on one core, for signet's model manifests.
//!
//! With SHA-NI, a core's SHA-256 rate is bound by the latency of `sha256rnds2`, not by its
//! throughput: on the AMD EPYC (Zen 4) we measure on, a dependent chain of them runs at half the
//! rate of two independent chains. One message at a time (what `sha2` and OpenSSL do) leaves half
//! of the unit idle, so signet hashes two files per core with their rounds interleaved. The
//! result is plain SHA-256 of each message; the tests check it against `sha2` for every padding
//! case and against FIPS 180-4's examples. Without SHA-NI the blocks go through `sha2`'s own
//! compression function one lane at a time.
//!
//! Its own crate so that its `unsafe` code stands apart from signet's, and so that debug builds
//! can optimize it: unoptimized, the intrinsics are function calls and hash at ~25 MB/s.

/// SHA-256's block size in bytes.
pub const BLOCK: usize = 64;

/// FIPS 180-4 §5.3.3.
const INITIAL_STATE: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// One message being hashed: its chaining state and how many bytes went into it, always whole
/// blocks until [`Lane::finish`] takes the tail.
#[derive(Debug, Clone)]
pub struct Lane {
    state: [u32; 8],
    length: u64,
}

impl Default for Lane {
    fn default() -> Self {
        Self {
            state: INITIAL_STATE,
            length: 0,
        }
    }
}

impl Lane {
    /// Hashes whole blocks of this message alone.
    ///
    /// # Panics
    /// If `blocks` is not a whole number of blocks (a caller bug, never input data).
    pub fn absorb(&mut self, blocks: &[u8]) {
        assert!(blocks.len().is_multiple_of(BLOCK), "whole blocks only");
        #[cfg(target_arch = "x86_64")]
        if shani::available() {
            // SAFETY: `available` checked the CPU features; one lane, whole blocks.
            unsafe { shani::compress([&mut self.state], [blocks]) };
            self.length += blocks.len() as u64;
            return;
        }
        compress_portable(&mut self.state, blocks);
        self.length += blocks.len() as u64;
    }

    /// Hashes the same number of whole blocks into two messages, interleaved.
    ///
    /// # Panics
    /// If the two slices differ in length or are not whole blocks (a caller bug).
    pub fn absorb_pair(
        first: &mut Lane,
        first_blocks: &[u8],
        second: &mut Lane,
        second_blocks: &[u8],
    ) {
        assert!(
            first_blocks.len() == second_blocks.len() && first_blocks.len().is_multiple_of(BLOCK),
            "the same number of whole blocks in each lane"
        );
        #[cfg(target_arch = "x86_64")]
        if shani::available() {
            // SAFETY: `available` checked the CPU features; equal lengths of whole blocks.
            unsafe {
                shani::compress(
                    [&mut first.state, &mut second.state],
                    [first_blocks, second_blocks],
                )
            };
            first.length += first_blocks.len() as u64;
            second.length += second_blocks.len() as u64;
            return;
        }
        first.absorb(first_blocks);
        second.absorb(second_blocks);
    }

    /// The digest of everything absorbed followed by `tail` (any length), padded per FIPS 180-4
    /// §5.1.1.
    pub fn finish(mut self, tail: &[u8]) -> [u8; 32] {
        let whole = tail.len() - tail.len() % BLOCK;
        self.absorb(&tail[..whole]);
        let rest = &tail[whole..];
        let bit_length = (self.length + rest.len() as u64).wrapping_mul(8);
        let mut last = [0u8; 2 * BLOCK];
        last[..rest.len()].copy_from_slice(rest);
        last[rest.len()] = 0x80;
        let end = if rest.len() < BLOCK - 8 {
            BLOCK
        } else {
            2 * BLOCK
        };
        last[end - 8..end].copy_from_slice(&bit_length.to_be_bytes());
        self.absorb(&last[..end]);
        let mut digest = [0u8; 32];
        for (bytes, word) in digest.chunks_exact_mut(4).zip(self.state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }
}

/// `sha2`'s own compression function, for CPUs without SHA-NI.
// sha2 0.10 takes its blocks as generic-array 0.14, which marks itself deprecated.
#[allow(deprecated)]
fn compress_portable(state: &mut [u32; 8], blocks: &[u8]) {
    use sha2::digest::generic_array::GenericArray;
    for block in blocks.chunks_exact(BLOCK) {
        sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
}

#[cfg(target_arch = "x86_64")]
mod shani {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_loadu_si128, _mm_set_epi64x,
        _mm_setzero_si128, _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32,
        _mm_shuffle_epi8, _mm_shuffle_epi32, _mm_storeu_si128,
    };

    use super::BLOCK;

    /// FIPS 180-4 §4.2.2.
    const ROUND_CONSTANTS: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    pub fn available() -> bool {
        std::is_x86_feature_detected!("sha")
            && std::is_x86_feature_detected!("ssse3")
            && std::is_x86_feature_detected!("sse4.1")
    }

    /// Runs SHA-256's compression over `blocks[i]` into `states[i]`, the lanes' rounds
    /// interleaved so that their `sha256rnds2` chains overlap.
    ///
    /// # Safety
    /// The CPU must have SHA, SSSE3 and SSE4.1 ([`available`]); every slice in `blocks` must be
    /// the same whole number of blocks.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn compress<const LANES: usize>(
        states: [&mut [u32; 8]; LANES],
        blocks: [&[u8]; LANES],
    ) {
        let count = blocks[0].len() / BLOCK;
        debug_assert!(blocks.iter().all(|b| b.len() == count * BLOCK));
        // Big-endian words from the message bytes.
        let byte_swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        // SHA-NI keeps the eight state words as (A, B, E, F) and (C, D, G, H).
        let mut abef = [_mm_setzero_si128(); LANES];
        let mut cdgh = [_mm_setzero_si128(); LANES];
        for lane in 0..LANES {
            // SAFETY: two 16-byte loads inside the 32-byte state.
            let (dcba, hgfe) = unsafe {
                (
                    _mm_loadu_si128(states[lane].as_ptr().cast::<__m128i>()),
                    _mm_loadu_si128(states[lane][4..].as_ptr().cast::<__m128i>()),
                )
            };
            let cdab = _mm_shuffle_epi32(dcba, 0xB1);
            let efgh = _mm_shuffle_epi32(hgfe, 0x1B);
            abef[lane] = _mm_alignr_epi8(cdab, efgh, 8);
            cdgh[lane] = _mm_blend_epi16(efgh, cdab, 0xF0);
        }
        for block in 0..count {
            let (abef_before, cdgh_before) = (abef, cdgh);
            // The last four groups of four message-schedule words, oldest first.
            let mut schedule = [[_mm_setzero_si128(); 4]; LANES];
            for group in 0..16 {
                // SAFETY: 16 bytes of the round constants, in bounds for group < 16.
                let constants = unsafe {
                    _mm_loadu_si128(ROUND_CONSTANTS[group * 4..].as_ptr().cast::<__m128i>())
                };
                for lane in 0..LANES {
                    let [w0, w1, w2, w3] = schedule[lane];
                    let words = if group < 4 {
                        let offset = block * BLOCK + group * 16;
                        // SAFETY: offset + 16 <= count * BLOCK, the slice's length.
                        let bytes = unsafe {
                            _mm_loadu_si128(blocks[lane][offset..].as_ptr().cast::<__m128i>())
                        };
                        _mm_shuffle_epi8(bytes, byte_swap)
                    } else {
                        // W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16], four at a time.
                        let partial =
                            _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
                        _mm_sha256msg2_epu32(partial, w3)
                    };
                    schedule[lane] = [w1, w2, w3, words];
                    let message = _mm_add_epi32(words, constants);
                    cdgh[lane] = _mm_sha256rnds2_epu32(cdgh[lane], abef[lane], message);
                    abef[lane] = _mm_sha256rnds2_epu32(
                        abef[lane],
                        cdgh[lane],
                        _mm_shuffle_epi32(message, 0x0E),
                    );
                }
            }
            for lane in 0..LANES {
                abef[lane] = _mm_add_epi32(abef[lane], abef_before[lane]);
                cdgh[lane] = _mm_add_epi32(cdgh[lane], cdgh_before[lane]);
            }
        }
        for (lane, state) in states.into_iter().enumerate() {
            let feba = _mm_shuffle_epi32(abef[lane], 0x1B);
            let dchg = _mm_shuffle_epi32(cdgh[lane], 0xB1);
            let dcba = _mm_blend_epi16(feba, dchg, 0xF0);
            let hgfe = _mm_alignr_epi8(dchg, feba, 8);
            // SAFETY: two 16-byte stores inside the 32-byte state.
            unsafe {
                _mm_storeu_si128(state.as_mut_ptr().cast::<__m128i>(), dcba);
                _mm_storeu_si128(state[4..].as_mut_ptr().cast::<__m128i>(), hgfe);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    fn message(length: usize, seed: u8) -> Vec<u8> {
        (0..length)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
            .collect()
    }

    fn reference(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    /// Hashes two messages as the manifest does: paired while both have whole blocks left,
    /// then the longer one alone, then each tail.
    fn paired(first: &[u8], second: &[u8]) -> ([u8; 32], [u8; 32]) {
        let whole = |data: &[u8]| data.len() - data.len() % BLOCK;
        let common = whole(first).min(whole(second));
        let (mut a, mut b) = (Lane::default(), Lane::default());
        Lane::absorb_pair(&mut a, &first[..common], &mut b, &second[..common]);
        a.absorb(&first[common..whole(first)]);
        b.absorb(&second[common..whole(second)]);
        (
            a.finish(&first[whole(first)..]),
            b.finish(&second[whole(second)..]),
        )
    }

    #[test]
    fn fips_180_examples() {
        // FIPS 180-4 example values (NIST CSRC "SHA256.pdf"), one and two blocks.
        let abc = Lane::default().finish(b"abc");
        assert_eq!(
            hex::encode(abc),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let two_blocks =
            Lane::default().finish(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq");
        assert_eq!(
            hex::encode(two_blocks),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            hex::encode(Lane::default().finish(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn pairs_match_sha2_for_every_padding_case() {
        // Every tail length around the one-block/two-block padding boundary, and multi-block
        // bodies of unequal lengths so each lane ends paired, alone, or first.
        let lengths: Vec<usize> = (0..=130)
            .chain([191, 192, 193, 1000, 4096, 65_536 + 55, 100_003])
            .collect();
        for (i, &first_length) in lengths.iter().enumerate() {
            let second_length = lengths[(i * 7 + 3) % lengths.len()];
            let first = message(first_length, 1);
            let second = message(second_length, 2);
            let (a, b) = paired(&first, &second);
            assert_eq!(a, reference(&first), "length {first_length}");
            assert_eq!(b, reference(&second), "length {second_length}");
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn sha_ni_and_the_portable_path_agree() {
        // Whichever path `Lane` takes on this CPU, the other one is checked here too.
        let data = message(960, 5);
        let mut portable = INITIAL_STATE;
        compress_portable(&mut portable, &data);
        if shani::available() {
            let (mut one, mut first, mut second) = (INITIAL_STATE, INITIAL_STATE, INITIAL_STATE);
            let other = message(960, 6);
            let mut other_portable = INITIAL_STATE;
            compress_portable(&mut other_portable, &other);
            // SAFETY: features checked; whole blocks of equal length.
            unsafe {
                shani::compress([&mut one], [&data[..]]);
                shani::compress([&mut first, &mut second], [&data[..], &other[..]]);
            }
            assert_eq!(one, portable);
            assert_eq!((first, second), (portable, other_portable));
        }
    }

    #[test]
    fn a_tail_of_whole_blocks_is_absorbed_before_padding() {
        for length in [64, 100, 128, 200, 1000] {
            let data = message(length, 4);
            assert_eq!(
                Lane::default().finish(&data),
                reference(&data),
                "length {length}"
            );
            let mut lane = Lane::default();
            lane.absorb(&data[..64]);
            assert_eq!(
                lane.finish(&data[64..]),
                reference(&data),
                "length {length}"
            );
        }
    }

    #[test]
    fn one_lane_matches_sha2() {
        for length in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 4095, 1 << 20] {
            let data = message(length, 9);
            let whole = length - length % BLOCK;
            let mut lane = Lane::default();
            lane.absorb(&data[..whole]);
            assert_eq!(
                lane.finish(&data[whole..]),
                reference(&data),
                "length {length}"
            );
        }
    }
}
