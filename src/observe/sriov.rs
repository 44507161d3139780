//! `sriov.txt`: one line per SR-IOV capable device,
//! `0000:c9:00.0 totalvfs=7 numvfs=4`, as the probe and the capture script
//! print it from /sys/bus/pci/devices/*/sriov_{totalvfs,numvfs}.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::text;
use super::ParseError;
use crate::model::Bdf;

/// What one physical function reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SriovState {
    /// `sriov_totalvfs`: the most VFs the device offers.
    pub totalvfs: u32,
    /// `sriov_numvfs`: VFs currently enabled.
    pub numvfs: u32,
}

/// Parses the file into PF address -> state. Empty = no SR-IOV device.
///
/// # Errors
/// A [`ParseError`] naming the line for a line that is not
/// `<bdf> totalvfs=<n> numvfs=<n>`.
pub fn parse(input: &str) -> Result<BTreeMap<Bdf, SriovState>, ParseError> {
    let mut out = BTreeMap::new();
    for (n, line) in text::lines(input) {
        let t = line.trim();
        if t.is_empty() || text::is_kernel_line(line) {
            continue;
        }
        let fail = || {
            ParseError::at(
                n,
                format!(
                    "cannot read '{}': expected '<bdf> totalvfs=<n> numvfs=<n>'",
                    text::snippet(t)
                ),
            )
        };
        let mut words = t.split_whitespace();
        let bdf: Bdf = words.next().and_then(|w| w.parse().ok()).ok_or_else(fail)?;
        let mut total = None;
        let mut num = None;
        for w in words {
            match w.split_once('=') {
                Some(("totalvfs", v)) => total = text::decimal::<u32>(v),
                Some(("numvfs", v)) => num = text::decimal::<u32>(v),
                _ => return Err(fail()),
            }
        }
        match (total, num) {
            (Some(totalvfs), Some(numvfs)) => {
                out.insert(bdf, SriovState { totalvfs, numvfs });
            }
            _ => return Err(fail()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_line() {
        let m = parse("0000:c9:00.0 totalvfs=7 numvfs=4\r\n").unwrap();
        assert_eq!(
            m[&"c9:00.0".parse().unwrap()],
            SriovState {
                totalvfs: 7,
                numvfs: 4
            }
        );
        assert!(parse("").unwrap().is_empty());
        assert_eq!(parse("x\n0000:c9:00.0 totalvfs=7").unwrap_err().line, 1);
        assert!(parse("0000:c9:00.0 totalvfs=7 numvfs=\n").is_err());
    }
}
