//! `ConsoleReader` on an arbitrary console stream cut into arbitrary
//! chunks, with a fixed nonce (`abc123`, the one of the fixture consoles).
//!
//! Input: the first byte seeds the chunk sizes, the rest is the stream.
//! The reader must never panic, and (as its docs promise) the result must
//! not depend on where the chunks split: the events and `finish()` must
//! equal those of the same stream fed in one piece.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nestlab::guest::protocol::console::ConsoleReader;
use nestlab::guest::protocol::Nonce;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let nonce: Nonce = "abc123".parse().expect("a valid nonce");

    let mut whole = ConsoleReader::new(&nonce);
    let whole_events = whole.feed(stream);
    let whole_result = whole.finish();

    // Chunk sizes from a small xorshift generator; the seed's low bits
    // choose the largest chunk (1 byte .. 128 bytes, or up to 4 KiB).
    let max = match seed & 7 {
        0 => 1,
        1 => 2,
        2..=5 => 16usize << (seed & 3),
        _ => 4096,
    };
    let mut state = u32::from(seed) | 0x9e37_7900;
    let mut chunked = ConsoleReader::new(&nonce);
    let mut events = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % max + 1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        events.extend(chunked.feed(chunk));
        rest = tail;
    }
    let _ = chunked.tail(10);
    let result = chunked.finish();
    assert_eq!(events, whole_events, "events depend on the chunking");
    assert_eq!(result, whole_result, "finish() depends on the chunking");
});
