//! The block loop of [`blocks`](super::blocks) for x86-64 CPUs with AVX2, POPCNT and carry-less
//! multiplication.
//!
//! The portable loop can only assume SSE2, the x86-64 baseline: sixteen 16-byte compares per block,
//! a popcount done in software and a six-step prefix XOR. With these features a block takes eight
//! 32-byte compares, one instruction per popcount and one per prefix XOR, which roughly halves the
//! time to cross a body of many short strings (a long conversation; the README's "Speed" section has
//! the figures `benches/codec.rs` printed before and after).
//!
//! This is the crate's only `unsafe`: calling a function compiled for CPU features the compiler
//! cannot assume. It is sound because [`skip_container`] calls it only after the CPU reported those
//! features at run time (`is_x86_feature_detected!`, cached by the standard library). Everything
//! inside is safe code; the tests check that both loops end every container at the same byte.

use super::blocks::{skip_with, Masks};
use super::lexer::Malformed;
use std::arch::x86_64::{
    __m128i, __m256i, _mm256_cmpeq_epi8, _mm256_movemask_epi8, _mm256_or_si256, _mm256_set1_epi8,
    _mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_set1_epi8, _mm_set_epi64x,
};

/// [`blocks::skip_container`](super::blocks::skip_container) with AVX2, or `None` when this CPU
/// lacks the features.
#[inline]
pub(super) fn skip_container(
    buf: &[u8],
    start: usize,
    depth: usize,
    max_depth: usize,
) -> Option<Result<usize, Malformed>> {
    if !(is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("popcnt")
        && is_x86_feature_detected!("pclmulqdq"))
    {
        return None;
    }
    #[allow(unsafe_code)]
    // SAFETY: the CPU has every feature `skip` is compiled for: checked just above.
    let end = unsafe { skip(buf, start, depth, max_depth) };
    Some(end)
}

#[target_feature(enable = "avx2,popcnt,pclmulqdq")]
fn skip(buf: &[u8], start: usize, depth: usize, max_depth: usize) -> Result<usize, Malformed> {
    skip_with(
        buf,
        start,
        depth,
        max_depth,
        |block| classify(block),
        |x| prefix_xor(x),
    )
}

#[target_feature(enable = "avx2")]
fn classify(block: &[u8; 64]) -> Masks {
    let [lo, hi]: [[u8; 32]; 2] = bytemuck::cast(*block);
    let (lo, hi): (__m256i, __m256i) = (bytemuck::cast(lo), bytemuck::cast(hi));
    let fold = _mm256_set1_epi8(0x20);
    let (folded_lo, folded_hi) = (_mm256_or_si256(lo, fold), _mm256_or_si256(hi, fold));
    let bits = |lo: __m256i, hi: __m256i, byte: u8| {
        let needle = _mm256_set1_epi8(byte as i8);
        let lo = _mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, needle)) as u32;
        let hi = _mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, needle)) as u32;
        u64::from(lo) | u64::from(hi) << 32
    };
    Masks {
        quote: bits(lo, hi, b'"'),
        backslash: bits(lo, hi, b'\\'),
        // `{`/`[` and `}`/`]` differ only in bit 0x20, as in the portable classifier.
        open: bits(folded_lo, folded_hi, b'{'),
        close: bits(folded_lo, folded_hi, b'}'),
    }
}

/// Carry-less multiplication by all ones is the prefix XOR.
#[target_feature(enable = "pclmulqdq")]
fn prefix_xor(x: u64) -> u64 {
    let product: __m128i =
        _mm_clmulepi64_si128::<0>(_mm_set_epi64x(0, x as i64), _mm_set1_epi8(-1));
    _mm_cvtsi128_si64(product) as u64
}

#[cfg(test)]
mod tests {
    use super::super::blocks;
    use super::*;
    use proptest::prelude::*;

    fn portable(buf: &[u8], start: usize) -> Result<usize, Malformed> {
        skip_with(buf, start, 1, 128, blocks::classify, blocks::prefix_xor)
    }

    fn fast(buf: &[u8], start: usize) -> Option<Result<usize, Malformed>> {
        skip_container(buf, start, 1, 128)
    }

    /// Bytes that matter to the loop, and a few that do not.
    fn json_ish() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop::sample::select(&b"[]{}\"\\\\\"aZ ,:0"[..]).prop_map(|b| vec![b]);
        // Long runs without quotes take the `memchr` jump.
        let run = (60usize..200).prop_map(|n| vec![b'a'; n]);
        prop::collection::vec(prop_oneof![20 => byte, 1 => run], 0..300)
            .prop_map(|pieces| pieces.concat())
    }

    proptest! {
        // Fewer under Miri, which interprets every instruction.
        #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 24 } else { 2000 }))]

        /// Both loops end (or fail) at the same byte, from every start and for every nesting.
        #[test]
        fn ends_where_the_portable_loop_ends(
            body in json_ish(),
            pad in 0usize..70,
            open in prop::sample::select(&b"[{"[..]),
        ) {
            let mut buf = vec![b' '; pad];
            buf.push(open);
            buf.extend_from_slice(&body);
            if let Some(end) = fast(&buf, pad) {
                prop_assert_eq!(end, portable(&buf, pad));
            }
        }
    }
}
