//! `nestlab check` without the file system: arbitrary (file name, content)
//! pairs go to `Observed::from_files`, and whatever it accepts is verified
//! against the expected view of the shipped `reference` profile, then
//! reported (human, JSON, JUnit). None of it may panic.
//!
//! Input: records separated by NUL bytes; in each record the first line is
//! the file name and the rest its content (invalid UTF-8 replaced, as
//! `Observed::from_dir` does). A seed is a capture directory written as
//! `lspci-tree.txt\n<content>\0numactl.txt\n<content>\0...`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nestlab::expect::Expected;
use nestlab::observe::Observed;
use nestlab::report::Report;

fn reference() -> &'static Expected {
    static EXPECTED: OnceLock<Expected> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        let (_, text) = nestlab::front::parse::SHIPPED
            .iter()
            .find(|(name, _)| *name == "reference")
            .expect("reference is shipped");
        let profile = nestlab::load_profile_str(text, "reference").expect("reference loads");
        let topology = nestlab::resolve::resolve(&profile).expect("reference resolves");
        nestlab::expect::expect(&topology)
    })
}

fuzz_target!(|data: &[u8]| {
    let files: Vec<(String, String)> = data
        .split(|&b| b == 0)
        .map(|record| {
            let record = String::from_utf8_lossy(record);
            match record.split_once('\n') {
                Some((name, content)) => (name.to_string(), content.to_string()),
                None => (record.into_owned(), String::new()),
            }
        })
        .collect();
    let Ok(observed) = Observed::from_files(files) else {
        return;
    };
    let checks = nestlab::verify::verify(reference(), &observed);
    let report = Report::from_checks("reference", checks, false);
    let _ = report.to_human(true);
    let _ = report.to_json();
    let _ = nestlab::report::junit(&[report]);
});
