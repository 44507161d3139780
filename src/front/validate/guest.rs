//! `[guest]`: the kernel command line's extra words.

use super::*;

pub(super) fn check_cmdline(c: &str) -> Result<(), String> {
    if c.len() > MAX_CMDLINE_EXTRA {
        return Err(format!(
            "is {} bytes long; the limit is {MAX_CMDLINE_EXTRA}",
            c.len()
        ));
    }
    if let Some(ch) = c
        .chars()
        .find(|&ch| !(' '..='~').contains(&ch) || matches!(ch, '"' | '\'' | '\\' | '`' | '$'))
    {
        return Err(format!(
            "character {:?} is not allowed: use printable ASCII without quotes, backslashes, '`' or '$'",
            ch
        ));
    }
    if let Some(word) = c
        .split_whitespace()
        .find(|w| w.starts_with("nestlab.") || w.starts_with("rdinit=") || w.starts_with("init="))
    {
        return Err(format!("'{word}' is reserved: nestlab sets it"));
    }
    Ok(())
}
