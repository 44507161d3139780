//! The exit codes, as the README documents them.

/// Success: every check passed, or the command did what was asked.
pub const OK: u8 = 0;
/// A check failed.
pub const FAIL: u8 = 1;
/// Invalid input (a profile, a capture file, an argument): nothing started.
pub const INVALID: u8 = 2;
/// Infrastructure: libvirt unreachable, boot failed, timeout, the guest died.
pub const INFRA: u8 = 3;
/// Interrupted by SIGINT (128 + 2); the domains in flight were destroyed.
pub const SIGINT: u8 = 130;
/// Interrupted by SIGTERM (128 + 15); the domains in flight were destroyed.
pub const SIGTERM: u8 = 143;
