//! `nestlab::observe::dmesg::parse` on arbitrary bytes, decoded as
//! `Observed::from_dir` decodes a capture file (invalid UTF-8 replaced).
//! It must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = nestlab::observe::dmesg::parse(&text);
});
