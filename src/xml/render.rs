//! Render stage: [`Topology`] -> [`Domain`] (then XML via
//! [`Domain::to_xml`]). Nothing here decides a number: every index, bus and
//! address comes from the topology.

use std::collections::BTreeMap;

use crate::model::{
    Accel, CpuSet, HugePageSize, IommuModel, ShareDriver, ShareMode, ShareSource, Topology,
};
use crate::xml::domain::*;

/// What the guest boots: direct kernel boot, and the images of the
/// topology's disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSpec {
    /// Kernel image path.
    pub kernel: String,
    /// Initramfs path.
    pub initrd: String,
    /// Kernel command line before nestlab's and the profile's additions.
    pub cmdline: String,
    /// The image of each of the topology's disks, in order.
    pub disks: Vec<DiskImage>,
    /// The host folder of each of the topology's shares, in order (a
    /// folder share's own path when missing).
    pub shares: Vec<String>,
}

/// The host folder [`BootSpec::placeholder`] gives the run folder.
pub const PLACEHOLDER_RUN_FOLDER: &str = "/tmp/nestlab-run-RUN/PROFILE/share";

/// A disk image on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskImage {
    /// Its path for QEMU.
    pub path: String,
    /// `raw` or `qcow2`.
    pub format: String,
}

/// The image path [`BootSpec::placeholder`] gives a disk.
pub const PLACEHOLDER_DISK: &str = "/var/cache/nestlab/debian/IMAGE/root.img";

impl BootSpec {
    /// Fixed placeholder paths, for XML that is only looked at, snapshotted
    /// or schema-checked (`nestlab xml` without an appliance).
    pub fn placeholder() -> Self {
        BootSpec {
            kernel: "/var/cache/nestlab/appliance/KERNEL/vmlinuz".into(),
            initrd: "/var/cache/nestlab/appliance/KERNEL/initrd.img".into(),
            cmdline: "console=ttyS0".into(),
            disks: Vec::new(),
            shares: Vec::new(),
        }
    }
}

/// The guest kernel command line: the boot spec's, then `intel_iommu=on`
/// with an Intel IOMMU, the nodes' huge pages ([`hugepage_args`]),
/// `vfio_iommu_type1.allow_unsafe_interrupts=1` when a virtio IOMMU (which
/// does no interrupt remapping) carries a nested guest's devices, then the
/// profile's `cmdline_extra` (last, so it can override).
pub fn cmdline(topology: &Topology, boot: &BootSpec) -> String {
    let p = &topology.profile;
    let mut parts = vec![boot.cmdline.clone()];
    match p.iommu.map(|i| i.model) {
        Some(IommuModel::Intel) => parts.push("intel_iommu=on".into()),
        Some(IommuModel::Virtio) if !p.nested.is_empty() => {
            parts.push("vfio_iommu_type1.allow_unsafe_interrupts=1".into())
        }
        _ => {}
    }
    parts.extend(hugepage_args(topology));
    if let Some(extra) = &topology.profile.cmdline_extra {
        parts.push(extra.clone());
    }
    parts.retain(|p| !p.trim().is_empty());
    parts.join(" ")
}

/// The kernel arguments that reserve the nodes' huge pages at boot, per
/// node: `hugepagesz=2M hugepages=0:64,1:64 hugepagesz=1G hugepages=1:1`
/// (Linux >= 5.18 takes `node:count` lists). At boot, because 1 GiB pages
/// need whole free GiBs, which only memory nothing has used yet reliably
/// has, and because the kernel command line needs no step in the guest.
pub fn hugepage_args(topology: &Topology) -> Vec<String> {
    let mut out = Vec::new();
    for size in HugePageSize::ALL {
        let per_node: Vec<String> = topology
            .profile
            .nodes
            .iter()
            .filter_map(|n| {
                let count = n.hugepages.get(&size).copied().unwrap_or(0);
                (count > 0).then(|| format!("{}:{count}", n.id))
            })
            .collect();
        if !per_node.is_empty() {
            out.push(format!("hugepagesz={size}"));
            out.push(format!("hugepages={}", per_node.join(",")));
        }
    }
    out
}

fn on_off(b: bool) -> String {
    if b { "on" } else { "off" }.to_string()
}

/// Renders the domain model of a topology.
pub fn render(topology: &Topology, accel: Accel, boot: &BootSpec) -> Domain {
    let p = &topology.profile;
    let cells = p
        .nodes
        .iter()
        .map(|n| Cell {
            id: n.id.0,
            cpus: (!n.memory_only()).then(|| n.cpus.to_string()),
            memory: n.memory.kib(),
            unit: "KiB".into(),
            distances: n.distances.as_ref().map(|row| Distances {
                siblings: row
                    .iter()
                    .enumerate()
                    .map(|(j, &value)| Sibling {
                        id: j as u32,
                        value,
                    })
                    .collect(),
            }),
        })
        .collect();

    let mut controllers = vec![
        Controller {
            kind: "usb".into(),
            index: None,
            model: "none".into(),
            model_name: None,
            target: None,
            address: None,
        },
        Controller {
            kind: "pci".into(),
            index: Some(0),
            model: "pcie-root".into(),
            model_name: None,
            target: None,
            address: None,
        },
    ];
    for x in &topology.expanders {
        controllers.push(Controller {
            kind: "pci".into(),
            index: Some(x.index),
            model: "pcie-expander-bus".into(),
            model_name: Some(ModelName {
                name: "pxb-pcie".into(),
            }),
            target: Some(ControllerTarget {
                chassis: None,
                port: None,
                bus_nr: Some(x.bus.0.into()),
                node: Some(x.node.0),
            }),
            address: Some(PciAddress::new(0, x.root_slot, 0)),
        });
    }
    for r in &topology.root_ports {
        controllers.push(Controller {
            kind: "pci".into(),
            index: Some(r.index),
            model: "pcie-root-port".into(),
            model_name: Some(ModelName {
                name: "pcie-root-port".into(),
            }),
            target: Some(ControllerTarget {
                chassis: Some(r.chassis),
                port: Some(format!("0x{:x}", r.port)),
                bus_nr: None,
                node: None,
            }),
            address: Some(PciAddress::new(r.parent_index, r.slot, 0)),
        });
    }
    let interfaces = topology
        .devices
        .iter()
        .map(|d| Interface {
            kind: "user".into(),
            mac: Mac {
                address: d.mac.to_string(),
            },
            model: InterfaceModel {
                kind: d.model.name().into(),
            },
            rom: Some(Rom {
                enabled: "no".into(),
            }),
            address: PciAddress::new(d.xml_bus, 0, 0),
        })
        .collect();

    let interconnects = (!p.interconnects.is_empty()).then(|| Interconnects {
        entries: p
            .interconnects
            .iter()
            .flat_map(|c| {
                let latency = c.latency_ns.map(|v| {
                    InterconnectEntry::Latency(Latency {
                        initiator: c.initiator.0,
                        target: c.target.0,
                        kind: "access".into(),
                        value: v.into(),
                    })
                });
                let bandwidth = c.bandwidth_mib_s.map(|v| {
                    InterconnectEntry::Bandwidth(Bandwidth {
                        initiator: c.initiator.0,
                        target: c.target.0,
                        kind: "access".into(),
                        value: u64::from(v) * 1024,
                        unit: "KiB".into(),
                    })
                });
                latency.into_iter().chain(bandwidth)
            })
            .collect(),
    });
    let tuning = p.tuning.as_ref();
    let cputune = tuning
        .filter(|t| !t.vcpupin.is_empty() || t.emulatorpin.is_some())
        .map(|t| Cputune {
            vcpupins: t
                .vcpupin
                .iter()
                .map(|(vcpu, set)| Vcpupin {
                    vcpu: *vcpu,
                    cpuset: set.to_string(),
                })
                .collect(),
            emulatorpin: t.emulatorpin.as_ref().map(|c| Emulatorpin {
                cpuset: c.to_string(),
            }),
        });
    let numatune = tuning
        .filter(|t| t.numatune.is_some() || !t.memnodes.is_empty())
        .map(|t| Numatune {
            memory: t.numatune.as_ref().map(|n| NumatuneMemory {
                mode: n.mode.name().into(),
                nodeset: n.nodeset.to_string(),
            }),
            memnodes: t
                .memnodes
                .iter()
                .map(|(cell, n)| Memnode {
                    cellid: cell.0,
                    mode: n.mode.name().into(),
                    nodeset: n.nodeset.to_string(),
                })
                .collect(),
        });
    let memory_backing = tuning.filter(|t| !t.hugepages.is_empty()).map(|t| {
        let mut by_size: BTreeMap<HugePageSize, Vec<u32>> = BTreeMap::new();
        for (cell, size) in &t.hugepages {
            by_size.entry(*size).or_default().push(cell.0);
        }
        MemoryBacking {
            hugepages: Hugepages {
                pages: by_size
                    .into_iter()
                    .map(|(size, cells)| HugePage {
                        size: size.kib(),
                        unit: "KiB".into(),
                        nodeset: CpuSet::from_cpus(cells).to_string(),
                    })
                    .collect(),
            },
        }
    });

    let intremap = p.iommu.is_some_and(|i| i.intremap);
    let (kind, mode) = match accel {
        Accel::Kvm => ("kvm", "host-passthrough"),
        Accel::Tcg => ("qemu", "maximum"),
    };
    Domain {
        kind: kind.into(),
        name: format!("nestlab-{}", p.name),
        metadata: Some(Metadata {
            nestlab: NestlabMetadata {
                xmlns: METADATA_NS.into(),
                profile: p.name.clone(),
                hash: p.content_hash.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
                run: None,
            },
        }),
        memory: Memory {
            unit: "KiB".into(),
            value: p.memory.kib(),
        },
        memory_backing,
        vcpu: Vcpu {
            placement: "static".into(),
            count: p.vcpus,
        },
        cputune,
        numatune,
        os: Os {
            os_type: OsType {
                arch: "x86_64".into(),
                machine: "q35".into(),
                value: "hvm".into(),
            },
            kernel: boot.kernel.clone(),
            initrd: boot.initrd.clone(),
            cmdline: cmdline(topology, boot),
        },
        features: Features {
            acpi: Some(Empty {}),
            apic: Some(Empty {}),
            ioapic: intremap.then(|| Ioapic {
                driver: "qemu".into(),
            }),
        },
        cpu: Cpu {
            mode: mode.into(),
            check: "none".into(),
            topology: p.cpu.map(|c| CpuTopology {
                sockets: c.sockets,
                dies: c.dies,
                cores: c.cores,
                threads: c.threads,
            }),
            numa: Numa {
                cells,
                interconnects,
            },
        },
        clock: Clock {
            offset: "utc".into(),
        },
        on_poweroff: "destroy".into(),
        on_reboot: "destroy".into(),
        on_crash: "destroy".into(),
        devices: Devices {
            disks: topology
                .disks
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let image = boot.disks.get(i).cloned().unwrap_or(DiskImage {
                        path: PLACEHOLDER_DISK.into(),
                        format: "raw".into(),
                    });
                    Disk {
                        kind: "file".into(),
                        device: "disk".into(),
                        driver: DiskDriver {
                            name: "qemu".into(),
                            format: image.format,
                        },
                        source: DiskSource { file: image.path },
                        target: DiskTarget {
                            dev: d.target.clone(),
                            bus: "virtio".into(),
                        },
                        readonly: None,
                        transient: Some(Transient {
                            share_backing: Some("yes".into()),
                        }),
                        address: PciAddress::new(d.xml_bus, 0, 0),
                    }
                })
                .collect(),
            controllers,
            filesystems: topology
                .shares
                .iter()
                .enumerate()
                .map(|(i, sh)| {
                    let dir = boot
                        .shares
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| match &sh.source {
                            ShareSource::Folder(p) => p.display().to_string(),
                            ShareSource::RunFolder => PLACEHOLDER_RUN_FOLDER.into(),
                            ShareSource::HostUsr => "/usr".into(),
                        });
                    let (driver, accessmode) = match sh.driver {
                        ShareDriver::NineP => ("path", "squash"),
                        ShareDriver::Virtiofs => ("virtiofs", "passthrough"),
                    };
                    Filesystem {
                        kind: "mount".into(),
                        accessmode: accessmode.into(),
                        driver: FsDriver {
                            kind: driver.into(),
                        },
                        binary: None,
                        source: FsSource { dir },
                        target: FsTarget {
                            dir: sh.tag.clone(),
                        },
                        readonly: (sh.mode == ShareMode::Ro).then_some(Empty {}),
                        address: PciAddress::new(sh.xml_bus, 0, 0),
                    }
                })
                .collect(),
            interfaces,
            serials: vec![Serial {
                kind: "pty".into(),
                target: SerialTarget {
                    kind: "isa-serial".into(),
                    port: 0,
                    model: ModelName {
                        name: "isa-serial".into(),
                    },
                },
            }],
            consoles: vec![Console {
                kind: "pty".into(),
                target: ConsoleTarget {
                    kind: "serial".into(),
                    port: 0,
                },
            }],
            memballoon: Some(Memballoon {
                model: "none".into(),
            }),
            iommu: p.iommu.map(|i| Iommu {
                model: i.model.name().into(),
                driver: (i.model == IommuModel::Intel).then(|| IommuDriver {
                    intremap: on_off(i.intremap),
                    caching_mode: on_off(i.caching_mode),
                    eim: on_off(i.eim),
                    iotlb: on_off(i.iotlb),
                }),
                address: topology.iommu_device.map(|d| PciAddress::new(0, d.slot, 0)),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(name: &str, accel: Accel) -> Domain {
        let p = crate::front::parse::load_profile_arg(name).unwrap();
        let t = crate::resolve::resolve(&p).unwrap();
        render(&t, accel, &BootSpec::placeholder())
    }

    #[test]
    fn round_trip_every_shipped_profile() {
        for (name, _) in crate::front::parse::SHIPPED {
            for accel in [Accel::Kvm, Accel::Tcg] {
                let d = domain(name, accel);
                let xml = d.to_xml().unwrap();
                let back =
                    Domain::from_xml(&xml).unwrap_or_else(|e| panic!("{name}: {e:?}\n{xml}"));
                assert_eq!(back, d, "{name} {accel}");
            }
        }
    }

    #[test]
    fn deterministic() {
        let a = domain("reference", Accel::Tcg).to_xml().unwrap();
        let b = domain("reference", Accel::Tcg).to_xml().unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn iommu_brings_split_ioapic_and_cmdline() {
        let d = domain("reference", Accel::Kvm);
        assert_eq!(d.kind, "kvm");
        assert_eq!(d.cpu.mode, "host-passthrough");
        assert!(d.features.ioapic.is_some());
        assert!(d.os.cmdline.contains("intel_iommu=on"));
        let m = domain("minimal", Accel::Tcg);
        assert_eq!(m.kind, "qemu");
        assert_eq!(m.cpu.mode, "maximum");
        assert!(m.features.ioapic.is_none());
        assert!(!m.os.cmdline.contains("intel_iommu"));
    }
}
