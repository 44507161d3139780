//! What boots inside the virtual host and speaks the console protocol.
//!
//! - [`protocol`]: the console protocol (markers, framing, compressed
//!   payloads) and its Rust reader;
//! - [`agent`]: the sh agent that runs the captures (and the nested step)
//!   and prints them in that protocol, and the PID-1 wrapper around it;
//! - [`appliance`]: the probe appliance (kernel + initramfs) built from
//!   this machine's files.
//!
//! A [`GuestKind`] turns a topology into what the domain needs to boot it
//! ([`BootFiles`]: kernel, initramfs, kernel command line). Every device a
//! guest kind adds to the domain is part of the resolved topology
//! ([`crate::resolve`]), so the XML and the expected view agree.

pub mod agent;
pub mod appliance;
pub mod protocol;

use crate::host::{Artifact, HostFacts};
use crate::model::{Accel, Topology};
use agent::AgentParams;

/// Why a guest kind cannot boot a topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// The guest kind lacks something this topology needs.
    #[error("{kind}: {why}")]
    Unavailable {
        /// The guest kind.
        kind: &'static str,
        /// What it lacks.
        why: String,
    },
    /// The agent's parameters cannot be written.
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
}

/// What a domain boots: direct kernel boot of these files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// The kernel image.
    pub kernel: Artifact,
    /// The initramfs, if any.
    pub initrd: Option<Artifact>,
    /// The kernel command line, the agent's parameters included (the render
    /// stage appends `intel_iommu=on` and the profile's `cmdline_extra`).
    pub cmdline: String,
}

/// A kind of guest the virtual host can run.
pub trait GuestKind: Send + Sync {
    /// Its name (`appliance`).
    fn name(&self) -> &'static str;

    /// What the domain boots for `t` on a host with `facts`, the agent
    /// running with `params`.
    ///
    /// # Errors
    /// When this guest kind cannot boot the topology (no nested flavour for
    /// a profile that assigns devices, say).
    fn boot_files(
        &self,
        t: &Topology,
        facts: &HostFacts,
        accel: Accel,
        params: &AgentParams,
    ) -> Result<BootFiles, GuestError>;

    /// What this guest kind lacks to boot `t` at all, each a sentence
    /// (empty when nothing): a run of it is then skipped with the reason,
    /// not failed (a kernel without the virtio IOMMU's driver, say).
    fn lacks(&self, _t: &Topology) -> Vec<String> {
        Vec::new()
    }
}

/// Extra kernel arguments for a guest under TCG: `lpj=` (loops per jiffy)
/// from the host's TSC frequency (libvirt's capabilities) and the guest
/// kernel's `CONFIG_HZ`, when both are known.
///
/// Under TCG the guest's TSC is the host's, and the boot CPU derives its
/// `lpj` from the TSC, but every other CPU measures it again with timer
/// interrupts (about 60 ms each under TCG, and the kernel often gives up:
/// "failed to get a good estimate for loops_per_jiffy ... Consider using
/// lpj="). `udelay` counts TSC cycles scaled by `lpj`, so the value the
/// boot CPU would compute is the right one for all of them.
pub fn tcg_boot_args(tsc_hz: Option<u64>, kernel_config: Option<&str>) -> Option<String> {
    let hz: u64 = kernel_config?
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))?
        .trim()
        .parse()
        .ok()
        .filter(|hz| *hz > 0)?;
    let tsc = tsc_hz.filter(|t| (100_000_000..=100_000_000_000).contains(t))?;
    Some(format!("lpj={}", (tsc + hz / 2) / hz))
}

/// An artifact of a cache entry `<cache>/<kind>/<hash>/<file>`, named
/// `<hash>-<file>` (unique for its content).
fn cache_artifact(path: &std::path::Path) -> Artifact {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
    let entry = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|d| d.to_string_lossy().into_owned());
    Artifact {
        path: path.to_path_buf(),
        name: match (entry, file) {
            (Some(e), Some(f)) => format!("{e}-{f}"),
            (_, f) => f.unwrap_or_else(|| "artifact".into()),
        },
    }
}

impl GuestKind for appliance::Appliance {
    fn name(&self) -> &'static str {
        "appliance"
    }

    fn lacks(&self, t: &Topology) -> Vec<String> {
        let mut why = Vec::new();
        let virtio = t
            .profile
            .iommu
            .is_some_and(|i| i.model == crate::model::IommuModel::Virtio);
        if virtio && !self.modules.iter().any(|m| m == "virtio_iommu") {
            why.push(format!(
                "the guest kernel {} has no virtio_iommu driver (CONFIG_VIRTIO_IOMMU is not set): \
                 boot one that has it with --kernel (Debian's linux-image-6.12-amd64 does; \
                 ./dev setup unpacks it into {}/kernel-6.12)",
                self.kernel_version,
                appliance::cache_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|_| "the nestlab cache".into())
            ));
        }
        why
    }

    fn boot_files(
        &self,
        _t: &Topology,
        facts: &HostFacts,
        accel: Accel,
        params: &AgentParams,
    ) -> Result<BootFiles, GuestError> {
        let unavailable = |why: String| GuestError::Unavailable {
            kind: "appliance",
            why,
        };
        let initrd = self
            .initrd_for(!params.assign.is_empty())
            .map_err(unavailable)?;
        let tcg = match accel {
            Accel::Tcg => tcg_boot_args(
                facts.tsc_hz(),
                appliance::kernel_config(&self.source).as_deref(),
            ),
            Accel::Kvm => None,
        };
        let cmdline = [
            Some(appliance::default_cmdline().to_string()),
            tcg,
            Some(params.to_cmdline()?),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        Ok(BootFiles {
            kernel: cache_artifact(&self.kernel),
            initrd: Some(cache_artifact(initrd)),
            cmdline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lpj_from_the_host_tsc() {
        assert_eq!(
            tcg_boot_args(Some(2_793_448_000), Some("CONFIG_HZ=250\n")),
            Some("lpj=11173792".into())
        );
        assert_eq!(tcg_boot_args(None, Some("CONFIG_HZ=250\n")), None);
        assert_eq!(tcg_boot_args(Some(2_793_448_000), None), None);
        assert_eq!(tcg_boot_args(Some(5), Some("CONFIG_HZ=250\n")), None);
        assert_eq!(
            tcg_boot_args(Some(2_793_448_000), Some("CONFIG_HZ=0\n")),
            None
        );
    }
}
