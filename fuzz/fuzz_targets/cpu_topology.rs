//! `nestlab::observe::cpu_topology::parse` on arbitrary bytes, decoded as
//! `Observed::from_dir` decodes a capture file (invalid UTF-8 replaced).
//! It must never panic, and an error must name a line of the input
//! (1-based, at most one past the last line).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = nestlab::observe::cpu_topology::parse(&text) {
        let lines = text.split('\n').count();
        assert!(
            (1..=lines + 1).contains(&e.line),
            "error on line {} of a {lines}-line input: {e}",
            e.line
        );
    }
});
