//! Helpers for the crate's unit tests.

/// Whether the tests run in CI (`CI=true` or `CI=1`), where `./dev setup`
/// installed everything the tests use, so none may be skipped.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The project's rule for a test that cannot run on this machine (a tool,
/// a kernel or a file is missing): outside CI it prints `SKIPPED: <reason>`
/// and the test then returns; in CI it fails with the reason.
///
/// ```ignore
/// let Ok(b) = std::fs::read("/usr/bin/lspci") else {
///     skip_or_fail("/usr/bin/lspci is missing (apt-get install pciutils)");
///     return;
/// };
/// ```
#[track_caller]
pub(crate) fn skip_or_fail(reason: &str) {
    assert!(!in_ci(), "CI is set, so this test may not skip: {reason}");
    eprintln!("SKIPPED: {reason}");
}
