//! The in-guest agent: the sh that runs the captures of
//! [`crate::capture::CAPTURES`] (and, with devices assigned, the nested
//! step) and prints them in the console protocol of
//! [`crate::guest::protocol`]; and the PID-1 wrapper that runs it as the
//! appliance's `/init`.
//!
//! The agent reads its parameters ([`AgentParams`]) from the kernel command
//! line, so the same agent runs as the busybox appliance's `/init` and
//! under systemd in a disk-image guest.

mod script;

use std::fmt;
use std::str::FromStr;

use crate::capture::Scope;
use crate::guest::protocol::Nonce;
use crate::host::HostFacts;
use crate::model::{Accel, Bdf, IommuModel, NicModel, Topology};

pub use script::*;

/// Why agent parameters could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// A mode other than `probe` and `shell`.
    #[error("mode '{0}': must be 'probe' or 'shell'")]
    BadMode(String),
    /// A module name that cannot go on the kernel command line.
    #[error("module name '{0}': only letters, digits, '_' and '-' are allowed")]
    BadModuleName(String),
    /// An assigned device id that is not `nic<N>` or `nic<N>.vf<M>`.
    #[error("assigned device id '{0}': must be nic<N> or nic<N>.vf<M>")]
    BadAssignId(String),
    /// A share that cannot go on the kernel command line.
    #[error("share '{0}': the tag and path may not hold blanks, ',' or ':'")]
    BadShare(String),
    /// A device named in `[nested] assign` that the topology does not have.
    #[error("nested.assign: {0} is not in the topology")]
    NotInTopology(String),
    /// An assigned device address out of the PCI ranges.
    #[error("assigned device {id}: address {bdf} is not a valid PCI address (slot 0..=31, function 0..=7)")]
    BadAssignAddress {
        /// The device id.
        id: String,
        /// The address as given.
        bdf: String,
    },
}

/// Where the appliance keeps the module load chains /init reads.
///
/// One line per module that `nestlab.modules=` may name:
/// `<name> <dep>=<path> ... <name>=<path>`, names with `_` (not `-`), the
/// files in load order (dependencies first, the module itself last). A
/// module built into the kernel has a line with its name alone.
pub const MODULES_FILE: &str = "/etc/nestlab/modules";

/// A sh fragment /init sources before anything else when it exists (the
/// appliance puts `export LD_LIBRARY_PATH=...` there).
pub const ENV_FILE: &str = "/etc/nestlab/env";

/// Where the appliance carries [`capture_script`], for use from the shell.
pub const CAPTURE_SCRIPT_PATH: &str = "/bin/nestlab-capture";

/// The busybox applets [`init_script`], the [`CAPTURES`] commands and the
/// shell mode use; the appliance links each to busybox.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "[",
    "awk",
    "base64",
    "basename",
    "cat",
    "chmod",
    "cp",
    "cttyhack",
    "cut",
    "date",
    "dd",
    "dirname",
    "dmesg",
    "echo",
    "env",
    "false",
    "find",
    "free",
    "grep",
    "gzip",
    "head",
    "hexdump",
    "insmod",
    "ip",
    "kill",
    "less",
    "ln",
    "ls",
    "lsmod",
    "mkdir",
    "mknod",
    "mount",
    "mv",
    "nproc",
    "poweroff",
    "printf",
    "ps",
    "readlink",
    "reboot",
    "rm",
    "rmmod",
    "sed",
    "setsid",
    "sh",
    "sleep",
    "sort",
    "stat",
    "switch_root",
    "sync",
    "tail",
    "taskset",
    "tee",
    "test",
    "timeout",
    "tr",
    "true",
    "umount",
    "uname",
    "uniq",
    "vi",
    "wc",
    "xargs",
];

/// What the appliance does after the captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Power off.
    #[default]
    Probe,
    /// Give the console an interactive shell; power off when it exits.
    Shell,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Probe => "probe",
            Mode::Shell => "shell",
        })
    }
}

impl FromStr for Mode {
    type Err = AgentError;
    fn from_str(s: &str) -> Result<Self, AgentError> {
        match s {
            "probe" => Ok(Mode::Probe),
            "shell" => Ok(Mode::Shell),
            _ => Err(AgentError::BadMode(s.to_string())),
        }
    }
}

/// Create `num_vfs` virtual functions on the SR-IOV physical function `pf`
/// (after the modules are loaded, so the PF's driver must be among them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SriovRequest {
    /// The physical function as the guest sees it.
    pub pf: Bdf,
    /// How many VFs to create.
    pub num_vfs: u16,
}

/// A device the probe hands to vfio-pci and assigns to the nested guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The profile's id for it: `nic8`, `nic9.vf0`.
    pub id: String,
    /// Its address in the virtual host.
    pub bdf: Bdf,
}

/// Whether `id` is `nic<N>` or `nic<N>.vf<M>` (decimal, no leading zeros,
/// at most 3 digits each): the ids [`crate::model::DeviceRef`] prints.
pub fn is_valid_assign_id(id: &str) -> bool {
    fn number(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 3
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'))
    }
    let Some(rest) = id.strip_prefix("nic") else {
        return false;
    };
    match rest.split_once(".vf") {
        Some((nic, vf)) => number(nic) && number(vf),
        None => number(rest),
    }
}

/// The kernel modules the agent loads for a run of `t` under `accel` on a
/// host with `facts`: with a virtio IOMMU first virtio_pci and
/// virtio_iommu, then a driver for every NIC model (igbvf for VFs):
/// virtio-iommu gives a device its IOMMU group only when a driver probes
/// it (the Intel IOMMU groups every device at boot); without one, igb when
/// a NIC has VFs (not igbvf: VFs stay unbound, free for vfio-pci); kvm with
/// the module for the virtual host's CPU ([`HostFacts::guest_kvm_module`]:
/// kvm_amd under TCG, whose `-cpu max` offers svm), and vfio,
/// vfio_iommu_type1, vfio_pci when the profile assigns devices to a nested
/// guest; the shares' file systems (9p, virtiofs) when it shares folders.
pub fn modules_for(t: &Topology, facts: &HostFacts, accel: Accel) -> Vec<String> {
    let mut m = Vec::new();
    let has_vfs = t.devices.iter().any(|d| !d.vfs.is_empty());
    if t.profile
        .iommu
        .is_some_and(|i| i.model == IommuModel::Virtio)
    {
        m.push("virtio_pci".to_string());
        m.push("virtio_iommu".to_string());
        for model in NicModel::ALL {
            if t.devices.iter().any(|d| d.model == model) {
                m.push(
                    match model {
                        NicModel::E1000e => "e1000e",
                        NicModel::Igb => "igb",
                        NicModel::Virtio => "virtio_net",
                    }
                    .to_string(),
                );
            }
        }
        if has_vfs {
            m.push("igbvf".to_string());
        }
    } else if has_vfs {
        m.push("igb".to_string());
    }
    m.push("kvm".to_string());
    if let Some(k) = facts.guest_kvm_module(accel) {
        m.push(k.to_string());
    }
    if !t.profile.nested.is_empty() {
        for v in ["vfio", "vfio_iommu_type1", "vfio_pci"] {
            m.push(v.to_string());
        }
    }
    use crate::model::ShareDriver;
    if !t.shares.is_empty() && !m.iter().any(|x| x == "virtio_pci") {
        // Debian's kernel builds the virtio PCI transport as a module.
        m.push("virtio_pci".to_string());
    }
    if t.shares.iter().any(|s| s.driver == ShareDriver::NineP) {
        m.push("9pnet_virtio".to_string());
        m.push("9p".to_string());
    }
    if t.shares.iter().any(|s| s.driver == ShareDriver::Virtiofs) {
        m.push("virtiofs".to_string());
    }
    m
}

/// Seconds the nested step waits for one run of the nested guest unless
/// told otherwise (`nestlab.nested_timeout=`); a run that times out is
/// tried once more. It takes 10 to 12 s under TCG on the project's 2-core
/// machines.
pub const DEFAULT_NESTED_TIMEOUT_SECS: u32 = 45;

/// Seconds between the `alive` markers the appliance prints while its
/// nested step runs.
pub const NESTED_HEARTBEAT_SECS: u32 = 5;

/// The agent's parameters, as they go on the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentParams {
    /// Marks this boot's markers.
    pub nonce: Nonce,
    /// Modules to load, in order (each after its dependencies).
    pub modules: Vec<String>,
    /// VFs to create.
    pub sriov: Vec<SriovRequest>,
    /// Devices to bind to vfio-pci and assign to one nested guest, started
    /// after the captures (empty: no nested step).
    pub assign: Vec<Assignment>,
    /// How long one run of the nested guest may take, from its QEMU's start
    /// to its power-off, before the probe kills it (and tries once more).
    pub nested_timeout_secs: u32,
    /// Power off or drop to a shell after the captures.
    pub mode: Mode,
    /// Host folders to mount, before anything else runs.
    pub shares: Vec<AgentShare>,
    /// Whether there is a workload step (the run folder is among the
    /// shares): after the captures the agent prints `gate`, waits for the
    /// host's word in the run folder, and runs the workloads listed there.
    pub workloads: bool,
    /// Whether libvirt runs in the guest: the agent captures its view
    /// ([`Scope::Libvirt`]) and assigns devices to the nested guest through
    /// it.
    pub libvirt: bool,
}

/// A host folder the agent mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentShare {
    /// The mount tag.
    pub tag: String,
    /// `9p` or `virtiofs`.
    pub driver: crate::model::ShareDriver,
    /// Read-only or writable.
    pub mode: crate::model::ShareMode,
    /// Where it is mounted (no blanks, `,` or `:`: see
    /// [`crate::model::workload::guest_path_problem`]).
    pub path: String,
    /// Mounted just before the workloads rather than at the start.
    pub at_gate: bool,
}

impl AgentParams {
    /// Probe mode, nothing to load, no VFs, no nested guest.
    pub fn new(nonce: Nonce) -> Self {
        AgentParams {
            nonce,
            modules: Vec::new(),
            sriov: Vec::new(),
            assign: Vec::new(),
            nested_timeout_secs: DEFAULT_NESTED_TIMEOUT_SECS,
            mode: Mode::Probe,
            shares: Vec::new(),
            workloads: false,
            libvirt: false,
        }
    }

    /// The parameters of a run of `t`: the kernel modules ([`modules_for`]),
    /// the VFs to create, the devices to assign (with `nested_timeout_secs`
    /// for one nested run) and the mode.
    ///
    /// # Errors
    /// [`AgentError::NotInTopology`] when `[nested] assign` names a device
    /// the topology does not have.
    pub fn for_topology(
        t: &Topology,
        nonce: Nonce,
        modules: Vec<String>,
        mode: Mode,
        nested_timeout_secs: u32,
    ) -> Result<AgentParams, AgentError> {
        let mut p = AgentParams::new(nonce);
        p.mode = mode;
        p.modules = modules;
        p.nested_timeout_secs = nested_timeout_secs;
        p.sriov = t
            .devices
            .iter()
            .filter(|d| !d.vfs.is_empty())
            .map(|d| SriovRequest {
                pf: d.guest_bdf,
                num_vfs: d.vfs.len() as u16,
            })
            .collect();
        p.shares = t
            .shares
            .iter()
            .map(|s| AgentShare {
                tag: s.tag.clone(),
                driver: s.driver,
                mode: s.mode,
                path: s.guest.clone(),
                at_gate: s.source == crate::model::ShareSource::HostUsr,
            })
            .collect();
        p.workloads = !t.profile.workloads.is_empty();
        p.libvirt = t.profile.guest.has_libvirt();
        for r in &t.profile.nested {
            let missing = || AgentError::NotInTopology(r.to_string());
            let d = t.devices.get(r.nic).ok_or_else(missing)?;
            let bdf = match r.vf {
                Some(i) => d.vfs.get(i as usize).ok_or_else(missing)?.guest_bdf,
                None => d.guest_bdf,
            };
            p.assign.push(Assignment {
                id: r.to_string(),
                bdf,
            });
        }
        Ok(p)
    }

    /// The files the appliance prints with these parameters: [`CAPTURES`],
    /// then [`NESTED_FILES`] when devices are assigned.
    pub fn expected_files(&self) -> Vec<&'static str> {
        let nested = !self.assign.is_empty();
        crate::capture::CAPTURES
            .iter()
            .filter(|c| match c.scope {
                Scope::Topology => true,
                Scope::Nested => nested,
                Scope::Workload => self.workloads,
                Scope::Libvirt => self.libvirt,
                // Read on the host by the runner, never printed by the agent.
                Scope::Host => false,
            })
            .map(|c| c.file)
            .collect()
    }

    /// The `nestlab.*` kernel parameters, space separated, e.g.
    /// `nestlab.nonce=1f2e nestlab.modules=igb nestlab.sriov=0000:b5:00.0:3
    /// nestlab.assign=nic0@0000:b5:00.0,nic1.vf0@0000:c9:10.0
    /// nestlab.nested_timeout=120 nestlab.mode=probe` (`assign` and
    /// `nested_timeout` only when devices are assigned).
    ///
    /// # Errors
    /// [`AgentError::BadModuleName`] for a module name with other characters
    /// than letters, digits, `_` and `-`; [`AgentError::BadAssignId`] for an
    /// assigned id that is not `nic<N>[.vf<M>]`;
    /// [`AgentError::BadAssignAddress`] for a slot above 31 or a function
    /// above 7.
    pub fn to_cmdline(&self) -> Result<String, AgentError> {
        let mut out = format!("nestlab.nonce={}", self.nonce);
        if !self.modules.is_empty() {
            for m in &self.modules {
                if m.is_empty()
                    || !m
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(AgentError::BadModuleName(m.clone()));
                }
            }
            out.push_str(" nestlab.modules=");
            out.push_str(&self.modules.join(","));
        }
        if !self.sriov.is_empty() {
            let list: Vec<String> = self
                .sriov
                .iter()
                .map(|r| format!("{}:{}", r.pf, r.num_vfs))
                .collect();
            out.push_str(" nestlab.sriov=");
            out.push_str(&list.join(","));
        }
        if !self.assign.is_empty() {
            let mut list = Vec::new();
            for a in &self.assign {
                if !is_valid_assign_id(&a.id) {
                    return Err(AgentError::BadAssignId(a.id.clone()));
                }
                if a.bdf.slot > 31 || a.bdf.function > 7 {
                    return Err(AgentError::BadAssignAddress {
                        id: a.id.clone(),
                        bdf: a.bdf.to_string(),
                    });
                }
                list.push(format!("{}@{}", a.id, a.bdf));
            }
            out.push_str(" nestlab.assign=");
            out.push_str(&list.join(","));
            out.push_str(&format!(
                " nestlab.nested_timeout={}",
                self.nested_timeout_secs.max(1)
            ));
        }
        if !self.shares.is_empty() {
            let mut list = Vec::new();
            for sh in &self.shares {
                let ok = |x: &str| {
                    !x.is_empty()
                        && !x.contains(|c: char| c.is_whitespace() || c == ',' || c == ':')
                };
                if !ok(&sh.tag) || !ok(&sh.path) || !sh.path.starts_with('/') {
                    return Err(AgentError::BadShare(format!("{}:{}", sh.tag, sh.path)));
                }
                let driver = match sh.driver {
                    crate::model::ShareDriver::NineP => "9p",
                    crate::model::ShareDriver::Virtiofs => "virtiofs",
                };
                let when = if sh.at_gate { "gate" } else { "boot" };
                list.push(format!(
                    "{}:{driver}:{}:{when}:{}",
                    sh.tag, sh.mode, sh.path
                ));
            }
            out.push_str(" nestlab.shares=");
            out.push_str(&list.join(","));
        }
        if self.workloads {
            out.push_str(" nestlab.workloads=1");
        }
        if self.libvirt {
            out.push_str(" nestlab.libvirt=1");
        }
        out.push_str(&format!(" nestlab.mode={}", self.mode));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::NESTED_FILES;

    #[test]
    fn params_to_cmdline() {
        let mut p = AgentParams::new("abc".parse().unwrap());
        assert_eq!(
            p.to_cmdline().unwrap(),
            "nestlab.nonce=abc nestlab.mode=probe"
        );
        p.modules = vec!["igb".into(), "kvm-amd".into()];
        p.sriov = vec![SriovRequest {
            pf: Bdf::new(0xb5, 0, 0),
            num_vfs: 3,
        }];
        p.mode = Mode::Shell;
        assert_eq!(
            p.to_cmdline().unwrap(),
            "nestlab.nonce=abc nestlab.modules=igb,kvm-amd nestlab.sriov=0000:b5:00.0:3 nestlab.mode=shell"
        );
        p.modules.push("a b".into());
        assert!(matches!(p.to_cmdline(), Err(AgentError::BadModuleName(m)) if m == "a b"));
        p.modules.pop();
        p.mode = Mode::Probe;
        p.assign = vec![
            Assignment {
                id: "nic8".into(),
                bdf: Bdf::new(0xdf, 0, 0),
            },
            Assignment {
                id: "nic9.vf0".into(),
                bdf: Bdf::new(0xc9, 0x10, 0),
            },
        ];
        p.nested_timeout_secs = 90;
        assert_eq!(
            p.to_cmdline().unwrap(),
            "nestlab.nonce=abc nestlab.modules=igb,kvm-amd nestlab.sriov=0000:b5:00.0:3 \
             nestlab.assign=nic8@0000:df:00.0,nic9.vf0@0000:c9:10.0 nestlab.nested_timeout=90 nestlab.mode=probe"
        );
        assert_eq!(
            p.expected_files().len(),
            crate::capture::in_scope(Scope::Topology).count() + NESTED_FILES.len()
        );
        for bad in [
            "nic",
            "nic8 x",
            "nic08",
            "nic8.vf",
            "nic8.vf0.vf1",
            "NIC8",
            "nic8@x",
            "nic1234",
            "eth0",
            "",
        ] {
            p.assign[0].id = bad.into();
            assert!(
                matches!(p.to_cmdline(), Err(AgentError::BadAssignId(ref m)) if m == bad),
                "{bad}"
            );
        }
        p.assign[0].id = "nic0".into();
        p.assign[1].bdf.slot = 32;
        assert!(matches!(
            p.to_cmdline(),
            Err(AgentError::BadAssignAddress { ref id, .. }) if id == "nic9.vf0"
        ));
        p.assign[1].bdf = Bdf::new(0xc9, 0x10, 8);
        assert!(p.to_cmdline().is_err());
        p.assign.clear();
        assert!(!p.to_cmdline().unwrap().contains("nested"));
        assert_eq!(
            p.expected_files().len(),
            crate::capture::in_scope(Scope::Topology).count()
        );
        assert_eq!("shell".parse::<Mode>().unwrap(), Mode::Shell);
        assert!("x".parse::<Mode>().is_err());
    }
}
