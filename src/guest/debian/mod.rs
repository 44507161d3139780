//! The Debian guest kind: a Debian (bookworm) disk image with systemd,
//! libvirt, QEMU, numactl and pciutils, in which the agent runs as a
//! systemd unit and checks what libvirt sees, as OpenStack Nova reads it.
//!
//! - [`recipe`]: what goes into the image (packages, excludes, the
//!   customize hook), as text hashed into the cache key;
//! - [`image`]: building it with mmdebstrap and `mkfs.ext4 -d`, cached
//!   under `<cache>/debian/<hash>/`, shared by concurrent runs, never
//!   written by one (every run boots a transient overlay of it);
//! - this module: the [`GuestKind`] that boots it: the appliance's kernel
//!   and initramfs (`nestlab.root=/dev/vda`: the initramfs mounts the
//!   image, installs the agent and hands over to systemd), the image as the
//!   topology's system disk.

pub mod image;
pub mod recipe;

use crate::guest::agent::AgentParams;
use crate::guest::appliance::Appliance;
use crate::guest::{cache_artifact, tcg_boot_args, BootFiles, GuestError, GuestKind};
use crate::host::HostFacts;
use crate::model::{Accel, Topology};

pub use image::{DebianImage, ImageError};

/// The Debian guest: the image, and the appliance whose kernel and
/// initramfs boot it.
#[derive(Debug, Clone)]
pub struct DebianGuest {
    /// The cached image.
    pub image: DebianImage,
    /// The appliance (kernel, initramfs).
    pub appliance: Appliance,
}

/// The kernel command line of a Debian guest, before the agent's
/// parameters: the appliance's (one CPU at boot, a quiet serial console,
/// no timer check), the root file system, and systemd told to keep quiet
/// on the console, which the agent owns.
pub fn cmdline() -> String {
    format!(
        "{} nestlab.root=/dev/vda systemd.show_status=0 udev.log_level=3 rd.udev.log_level=3 systemd.log_target=journal",
        crate::guest::appliance::default_cmdline()
    )
}

impl GuestKind for DebianGuest {
    fn name(&self) -> &'static str {
        "debian"
    }

    fn boot_files(
        &self,
        t: &Topology,
        facts: &HostFacts,
        accel: Accel,
        params: &AgentParams,
    ) -> Result<BootFiles, GuestError> {
        if t.disks.is_empty() {
            return Err(GuestError::Unavailable {
                kind: "debian",
                why:
                    "the topology has no system disk (its profile is not [guest] kind = \"debian\")"
                        .into(),
            });
        }
        if self.image.kernel_version != self.appliance.kernel_version {
            return Err(GuestError::Unavailable {
                kind: "debian",
                why: format!(
                    "the image carries the modules of kernel {}, the appliance boots {}: build the image for this kernel (nestlab image)",
                    self.image.kernel_version, self.appliance.kernel_version
                ),
            });
        }
        let tcg = match accel {
            Accel::Tcg => tcg_boot_args(
                facts.tsc_hz(),
                crate::guest::appliance::kernel_config(&self.appliance.source).as_deref(),
            ),
            Accel::Kvm => None,
        };
        let cmdline = [Some(cmdline()), tcg, Some(params.to_cmdline()?)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        Ok(BootFiles {
            kernel: cache_artifact(&self.appliance.kernel),
            initrd: Some(cache_artifact(&self.appliance.initrd)),
            cmdline,
            disks: vec![(cache_artifact(&self.image.root), "raw")],
        })
    }
}
