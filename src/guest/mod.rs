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
pub mod debian;
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
    /// The image of each of the topology's disks, in order, with its format
    /// (`raw`, `qcow2`). Never written: the domain boots a transient overlay.
    pub disks: Vec<(Artifact, &'static str)>,
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

    /// What this guest kind lacks to show `t` under `accel`, each a
    /// sentence (empty when nothing): a run of it is then skipped with the
    /// reason, not failed (a kernel without the virtio IOMMU's driver, say).
    fn lacks(&self, _t: &Topology, _accel: Accel) -> Vec<String> {
        Vec::new()
    }
}

/// The guest kinds of a run, chosen per profile (`[guest] kind`,
/// `--guest`): the appliance always, the Debian guest when a profile asks
/// for it (its image is built only then).
pub struct GuestKinds {
    /// The busybox appliance.
    pub appliance: appliance::Appliance,
    /// The Debian guest, when some profile of the run needs it.
    pub debian: Option<debian::DebianGuest>,
}

impl GuestKind for GuestKinds {
    fn name(&self) -> &'static str {
        "by profile"
    }

    fn boot_files(
        &self,
        t: &Topology,
        facts: &HostFacts,
        accel: Accel,
        params: &AgentParams,
    ) -> Result<BootFiles, GuestError> {
        match t.profile.guest {
            crate::model::GuestKindId::Appliance => {
                self.appliance.boot_files(t, facts, accel, params)
            }
            crate::model::GuestKindId::Debian => match &self.debian {
                Some(d) => d.boot_files(t, facts, accel, params),
                None => Err(GuestError::Unavailable {
                    kind: "debian",
                    why: "the Debian image was not prepared for this run".into(),
                }),
            },
        }
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

/// The major and minor number of a kernel release (`6.1.0-57-amd64` ->
/// (6, 1)).
pub fn kernel_release(version: &str) -> Option<(u32, u32)> {
    let mut it = version.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// An artifact of a cache entry `<cache>/<kind>/<hash>/<file>`, named
/// `<hash>-<file>` (unique for its content: the entry's hash covers
/// everything that went into it).
pub fn cache_artifact(path: &std::path::Path) -> Artifact {
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

/// An artifact of any file (an `--initrd` given by the user), named
/// `<sha256 of its content, 32 hex>-<file>`, so that a host keeping files
/// by name never boots an older file of the same name. A file that cannot
/// be read keeps its plain name (staging it then fails, naming the file).
pub fn file_artifact(path: &std::path::Path) -> Artifact {
    use sha2::{Digest, Sha256};
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "artifact".into());
    let hash = std::fs::File::open(path).and_then(|mut f| {
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h)?;
        Ok(h.finalize())
    });
    let name = match hash {
        Ok(h) => {
            let hex: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
            format!("{hex}-{file}")
        }
        Err(_) => file,
    };
    Artifact {
        path: path.to_path_buf(),
        name,
    }
}

impl appliance::Appliance {
    /// Every file a domain may boot from this appliance: the kernel, the
    /// base initramfs and the nested flavour's (what `nestlab appliance
    /// --prune --connect URI` keeps on a host).
    pub fn artifacts(&self) -> Vec<Artifact> {
        let mut out = vec![cache_artifact(&self.kernel)];
        out.push(if self.initrd.starts_with(&self.dir) {
            cache_artifact(&self.initrd)
        } else {
            file_artifact(&self.initrd)
        });
        if let Some(n) = &self.nested {
            out.push(cache_artifact(&n.initrd));
        }
        out
    }
}

impl GuestKind for appliance::Appliance {
    fn name(&self) -> &'static str {
        "appliance"
    }

    fn lacks(&self, t: &Topology, accel: Accel) -> Vec<String> {
        let mut why = Vec::new();
        let smt = t.profile.cpu.is_some_and(|c| c.threads > 1);
        let release = kernel_release(&self.kernel_version);
        if smt && accel == Accel::Tcg && release.is_some_and(|r| r < (6, 9)) {
            why.push(format!(
                "the guest kernel {} cannot see SMT siblings under TCG: QEMU's TCG CPU is an \
                 AMD one without topoext, and Linux before 6.9 takes an AMD CPU's threads only \
                 from topoext (6.9 and later read CPUID leaf 0xB): boot a newer kernel with \
                 --kernel (./dev setup fetches Debian's 6.12)",
                self.kernel_version
            ));
        }
        let virtio = t
            .profile
            .iommu
            .is_some_and(|i| i.model == crate::model::IommuModel::Virtio);
        if virtio && !self.modules.iter().any(|m| m == "virtio_iommu") {
            why.push(format!(
                "the guest kernel {} has no virtio_iommu driver (CONFIG_VIRTIO_IOMMU is not set): \
                 boot one that has it with --kernel (./dev setup fetches Debian's 6.12, which does)",
                self.kernel_version
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
        // The entry's files are named by the entry's hash; a replacement
        // initramfs (--initrd) by its own content.
        let initrd = if initrd.starts_with(&self.dir)
            || self
                .nested
                .as_ref()
                .is_some_and(|n| initrd.starts_with(&n.dir))
        {
            cache_artifact(initrd)
        } else {
            file_artifact(initrd)
        };
        Ok(BootFiles {
            kernel: cache_artifact(&self.kernel),
            initrd: Some(initrd),
            cmdline,
            disks: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn appliance(version: &str, modules: &[&str]) -> appliance::Appliance {
        appliance::Appliance {
            kernel: "/k/vmlinux".into(),
            bzimage: "/k/vmlinuz".into(),
            pvh_unavailable: None,
            initrd: "/k/initrd.img".into(),
            kernel_version: version.into(),
            modules: modules.iter().map(|m| m.to_string()).collect(),
            missing_modules: vec![],
            hash: "h".into(),
            cached: true,
            dir: "/k".into(),
            source: appliance::GuestKernel {
                vmlinuz: "/boot/vmlinuz".into(),
                modules_dir: "/lib/modules".into(),
                version: version.into(),
                origin: appliance::KernelOrigin::Explicit,
            },
            initrd_size: 0,
            nested: None,
            nested_unavailable: None,
        }
    }

    #[test]
    fn what_an_appliance_kernel_cannot_show() {
        let t = |name: &str| {
            crate::resolve::resolve(&crate::front::load_profile_arg(name).unwrap()).unwrap()
        };
        let old = appliance("6.1.0-57-amd64", &["kvm", "e1000e"]);
        let new = appliance("6.12.117+deb12-amd64", &["kvm", "e1000e", "virtio_iommu"]);
        let why = old.lacks(&t("virtio-iommu"), Accel::Tcg);
        assert_eq!(why.len(), 1);
        assert!(
            why[0].starts_with("the guest kernel 6.1.0-57-amd64 has no virtio_iommu driver"),
            "{}",
            why[0]
        );
        assert!(new.lacks(&t("virtio-iommu"), Accel::Tcg).is_empty());
        let why = old.lacks(&t("cern"), Accel::Tcg);
        assert!(
            why[0].contains("cannot see SMT siblings under TCG"),
            "{why:?}"
        );
        assert!(
            old.lacks(&t("cern"), Accel::Kvm).is_empty(),
            "host CPUs show their threads"
        );
        assert!(new.lacks(&t("cern"), Accel::Tcg).is_empty());
        assert!(old.lacks(&t("reference"), Accel::Tcg).is_empty());
    }

    #[test]
    fn kernel_releases() {
        assert_eq!(kernel_release("6.1.0-57-amd64"), Some((6, 1)));
        assert_eq!(kernel_release("6.12.117+deb12-amd64"), Some((6, 12)));
        assert_eq!(kernel_release("linux"), None);
    }

    #[test]
    fn artifacts_are_named_by_content() {
        let a = cache_artifact(std::path::Path::new("/c/appliance/0123abcd/initrd.img"));
        assert_eq!(a.name, "0123abcd-initrd.img");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("my initrd.img");
        std::fs::write(&p, b"one").unwrap();
        let one = file_artifact(&p);
        std::fs::write(&p, b"two").unwrap();
        let two = file_artifact(&p);
        assert_ne!(one.name, two.name);
        assert!(one.name.ends_with("-my initrd.img"), "{}", one.name);
        assert_eq!(one.name.len(), 32 + 1 + "my initrd.img".len());
        assert_eq!(
            crate::host::volume_name(&one.name),
            format!("nestlab-{}", one.name.replace(' ', "_"))
        );
        assert_eq!(file_artifact(&dir.path().join("none")).name, "none");
    }

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
