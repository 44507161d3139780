//! `dmesg`: what the kernel said about the IOMMU, its command line, panics.
//!
//! Lines may carry a timestamp (`[    0.123456] `), a syslog level
//! (`<6>`, from `dmesg -r` or a raw console), a printk caller id
//! (`[    T1]`), or nothing (`printk.time=0`); all are stripped before
//! matching. Matching looks for the message text anywhere in the line.

use serde::{Deserialize, Serialize};

use super::text;

/// Proves the Intel IOMMU is active (DMA remapping set up).
pub const IOMMU_ACTIVE: &str = "DMAR: Intel(R) Virtualization Technology for Directed I/O";
/// Proves only that `intel_iommu=on` was seen on the command line.
pub const IOMMU_ENABLED: &str = "DMAR: IOMMU enabled";
/// Interrupt remapping is on (`... in x2apic mode` / `... in xapic mode`).
pub const IRQ_REMAPPING: &str = "DMAR-IR: Enabled IRQ remapping";
/// The virtio-iommu driver's probe line
/// (`virtio_iommu virtio0: input address: 39 bits`): the driver bound to the
/// device and registered the IOMMU.
pub const VIRTIO_IOMMU_PROBED: (&str, &str) = ("virtio_iommu ", ": input address:");

/// One kernel message, without timestamp or level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmesgLine {
    /// 1-based line in the capture.
    pub line: usize,
    /// The message.
    pub text: String,
}

/// Facts taken from the kernel log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmesgFacts {
    /// [`IOMMU_ACTIVE`] appeared: the IOMMU is doing DMA remapping.
    pub iommu_active: bool,
    /// [`IOMMU_ENABLED`] appeared (the option was seen; not proof alone).
    pub iommu_enabled: bool,
    /// [`IRQ_REMAPPING`] appeared.
    pub irq_remapping: bool,
    /// The virtio-iommu driver's probe line ([`VIRTIO_IOMMU_PROBED`]).
    #[serde(default)]
    pub virtio_iommu_active: bool,
    /// The kernel command line (`Command line:`, else `Kernel command line:`).
    pub command_line: Option<String>,
    /// Lines about a kernel panic (`Kernel panic - not syncing: ...`).
    pub panics: Vec<DmesgLine>,
    /// DMAR lines that report a fault, an error or a failure.
    pub dmar_errors: Vec<DmesgLine>,
    /// Number of non-empty lines read; 0 means the capture was empty.
    pub lines: usize,
}

/// Reads the facts from `dmesg` output. Never fails: unknown lines are
/// ignored.
pub fn parse(input: &str) -> DmesgFacts {
    let mut f = DmesgFacts::default();
    let mut kernel_cmdline = None;
    for (n, line) in text::lines(input) {
        let msg = text::strip_kernel_prefix(line).trim();
        if msg.is_empty() {
            continue;
        }
        f.lines += 1;
        if msg.contains(IOMMU_ACTIVE) {
            f.iommu_active = true;
        }
        if msg.contains(IOMMU_ENABLED) {
            f.iommu_enabled = true;
        }
        if msg.contains(IRQ_REMAPPING) {
            f.irq_remapping = true;
        }
        if msg.contains(VIRTIO_IOMMU_PROBED.0) && msg.contains(VIRTIO_IOMMU_PROBED.1) {
            f.virtio_iommu_active = true;
        }
        if let Some(rest) = msg.strip_prefix("Kernel command line:") {
            kernel_cmdline.get_or_insert_with(|| rest.trim().to_string());
        } else if let Some(rest) = msg.strip_prefix("Command line:") {
            f.command_line
                .get_or_insert_with(|| rest.trim().to_string());
        }
        let entry = || DmesgLine {
            line: n,
            text: msg.to_string(),
        };
        if msg.contains("Kernel panic") {
            f.panics.push(entry());
        }
        if msg.contains("DMAR") && is_error(msg) {
            f.dmar_errors.push(entry());
        }
    }
    if f.command_line.is_none() {
        f.command_line = kernel_cmdline;
    }
    f
}

fn is_error(msg: &str) -> bool {
    let lower = msg.to_ascii_lowercase();
    ["fault", "error", "fail", "firmware bug"]
        .iter()
        .any(|w| lower.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/observe/dmesg/", $name))
        };
    }

    const CMDLINE: &str = "console=ttyS0,115200 intel_iommu=on iommu=pt panic=-1 rdinit=/init";

    #[test]
    fn seed_in_all_spellings() {
        for input in [
            fixture!("seed.txt"),
            fixture!("no-timestamps.txt"),
            fixture!("raw-levels.txt"),
            fixture!("printk-caller.txt"),
        ] {
            let f = parse(input);
            assert!(
                f.iommu_active && f.iommu_enabled && f.irq_remapping,
                "{f:?}"
            );
            assert_eq!(f.command_line.as_deref(), Some(CMDLINE));
            assert!(f.panics.is_empty());
            assert!(f.dmar_errors.is_empty(), "{:?}", f.dmar_errors);
            assert!(f.lines > 50);
        }
    }

    #[test]
    fn option_without_iommu() {
        let f = parse(fixture!("option-only.txt"));
        assert!(f.iommu_enabled);
        assert!(!f.iommu_active);
        assert!(!f.irq_remapping);
    }

    #[test]
    fn no_interrupt_remapping() {
        let f = parse(fixture!("no-intremap.txt"));
        assert!(f.iommu_active && !f.irq_remapping);
    }

    #[test]
    fn faults() {
        let f = parse(fixture!("dmar-faults.txt"));
        assert!(f.iommu_active);
        let texts: Vec<&str> = f.dmar_errors.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts.len(), 4, "{texts:?}");
        assert_eq!(texts[0], "DMAR: DRHD: handling fault status reg 2");
        assert!(texts[1].contains("Request device [b5:00.0] fault addr"));
        assert!(texts[3].starts_with("DMAR: Failed to set up IOMMU"));
        assert_eq!(f.dmar_errors[0].line, 68);
    }

    #[test]
    fn panic() {
        let f = parse(fixture!("panic.txt"));
        assert_eq!(f.panics.len(), 2);
        assert_eq!(f.panics[0].line, 30);
        assert_eq!(
            f.panics[0].text,
            "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"
        );
        assert!(!f.iommu_active);
    }

    #[test]
    fn virtio_iommu_probe_line() {
        let f = parse(fixture!("virtio-iommu.txt"));
        assert!(f.virtio_iommu_active && !f.iommu_active && !f.iommu_enabled);
        assert!(!parse(fixture!("seed.txt")).virtio_iommu_active);
        assert!(!parse("[ 1.0] virtio_iommu: loading\n").virtio_iommu_active);
    }

    #[test]
    fn kernel_command_line_fallback_and_empty() {
        let f = parse("[    0.01] Kernel command line: root=/dev/vda\n");
        assert_eq!(f.command_line.as_deref(), Some("root=/dev/vda"));
        let f = parse("");
        assert_eq!(f, DmesgFacts::default());
    }
}
