//! Verify stage: [`Expected`] + [`Observed`] -> checks.
//!
//! Every check has a stable id and ends pass, fail (expected vs observed in
//! words) or skip (its input was not captured). All checks run; one failure
//! never hides another.

use crate::expect::Expected;
use crate::model::Bytes;
use crate::observe::Observed;
use crate::report::Check;

/// The least a node may show of its configured memory. The kernel keeps
/// some, more on small nodes and with many CPUs (3856 MB of 4000 MiB,
/// 459 MB and, on a 16-vCPU guest, 439 MB of 512 MiB were seen), so a node
/// passes down to the larger of 10% or 96 MiB below what was configured,
/// but never at half of it or less.
pub fn memory_floor_mib(configured: Bytes) -> u64 {
    let mib = configured.mib();
    mib.saturating_sub((mib / 10).max(96)).max(mib / 2 + 1)
}

mod cpu;
mod hmat;
mod hugepages;
mod iommu;
mod kvm;
mod libvirt_view;
mod nested;
mod numa;
mod pci;
mod sriov;
mod tuning;
mod workload;

/// The skip reason for a check whose capture file is missing. Checks name
/// capture files only through their specs ([`crate::capture::CAPTURES`]).
fn not_captured(spec: &crate::capture::CaptureSpec) -> String {
    format!("{} was not captured", spec.file)
}

/// The skip reason for a check that can read either of two files.
fn neither(a: &crate::capture::CaptureSpec, b: &crate::capture::CaptureSpec) -> String {
    format!("neither {} nor {} was captured", a.file, b.file)
}

/// Runs every check.
pub fn verify(e: &Expected, o: &Observed) -> Vec<Check> {
    let mut checks = Vec::new();
    numa::check(e, o, &mut checks);
    pci::check(e, o, &mut checks);
    iommu::check(e, o, &mut checks);
    kvm::check(e, o, &mut checks);
    sriov::check(e, o, &mut checks);
    nested::check(e, o, &mut checks);
    libvirt_view::check(e, o, &mut checks);
    workload::check(e, o, &mut checks);
    cpu::check(e, o, &mut checks);
    hugepages::check(e, o, &mut checks);
    hmat::check(e, o, &mut checks);
    tuning::check(e, o, &mut checks);
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CAPTURES;

    /// Every capture file a check mentions is one the capture table
    /// defines: with no file captured, every check is skipped and names
    /// what it lacks.
    #[test]
    fn checks_only_read_files_the_capture_table_defines() {
        for (name, _) in crate::front::SHIPPED {
            let t =
                crate::resolve::resolve(&crate::front::load_profile_arg(name).unwrap()).unwrap();
            let checks = verify(&crate::expect::expect(&t), &Observed::default());
            assert!(!checks.is_empty());
            for c in &checks {
                assert_eq!(c.status, crate::report::Status::Skip, "{}", c.id);
                let files: Vec<&str> = c
                    .message
                    .split_whitespace()
                    .filter(|w| w.ends_with(".txt") || w.ends_with(".xml"))
                    .collect();
                assert!(!files.is_empty(), "{}: {}", c.id, c.message);
                for f in files {
                    assert!(
                        CAPTURES.iter().any(|s| s.file == f),
                        "{} reads {f}, which the capture table does not define",
                        c.id
                    );
                }
            }
        }
    }

    #[test]
    fn memory_rule() {
        let ok = |configured_mib: u64, seen: u64| {
            seen >= memory_floor_mib(Bytes::from_mib(configured_mib))
        };
        assert!(ok(4000, 3856));
        assert!(ok(2000, 1969));
        assert!(ok(512, 459));
        assert!(ok(1024, 1005));
        assert!(ok(512, 439));
        assert!(!ok(64, 32));
        assert!(!ok(4000, 2000));
        assert!(!ok(512, 256));
    }
}
