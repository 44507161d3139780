//! Resolve stage: [`Profile`] -> [`Topology`], every number decided.
//!
//! The topology is the truth both the domain XML ([`crate::xml::render`]) and the
//! expected guest view ([`crate::expect`]) are derived from, so the two can
//! never disagree. It fixes libvirt controller indexes, pcie-root slots,
//! root-port chassis/port numbers, the XML address of every device, MACs,
//! and the bus:slot.function at which the guest will see each device.
//!
//! Guest addressing (see host-notes.md): an expander with busNr N is root
//! bus N in the guest; its k-th root port is N:k.0 and the device behind it
//! sits at (N+1+k):00.0. Root ports on pcie-root take buses 1, 2, ... in
//! slot order. igb VFs appear on the PF's bus at devfn 0x80 + 2*i.

use crate::model::{
    derive_mac, igb_vf_bdf, Bdf, BusNr, Device, Disk, DiskRole, ExpanderTopo, GuestKindId,
    IommuDevice, IommuModel, NodeId, Profile, RootPort, ShareDevice, ShareDriver, Topology, Vf,
};

/// First pcie-root slot handed out (slot 0 is the host bridge).
const FIRST_ROOT_SLOT: u8 = 1;

/// Why a validated profile could not be resolved. Validation rules out every
/// case a profile can cause; this is for a caller that builds a [`Profile`]
/// by hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Slots on pcie-root ran out.
    #[error("pcie-root has no free slot for {0}")]
    NoRootSlot(String),
    /// A NIC index in an expander does not exist.
    #[error("expander places nic index {0}, which does not exist")]
    NoSuchNic(usize),
    /// With HMAT on, a memory-only node that no interconnect targets.
    #[error("node {0} has memory only and no interconnect targets it")]
    NoInitiator(NodeId),
}

/// How folders are shared (see the README's measurements).
pub const SHARE_DRIVER: ShareDriver = ShareDriver::NineP;

/// Resolves a validated profile into a topology.
///
/// # Errors
/// Only for hand-built profiles that validation would have refused.
pub fn resolve(profile: &Profile) -> Result<Topology, ResolveError> {
    let mut next_index = 1u32;
    let mut next_slot = FIRST_ROOT_SLOT;
    let mut take_slot = |what: String| -> Result<u8, ResolveError> {
        if next_slot > 30 {
            return Err(ResolveError::NoRootSlot(what));
        }
        next_slot += 1;
        Ok(next_slot - 1)
    };

    let mut expanders = Vec::new();
    for x in &profile.expanders {
        let index = next_index;
        next_index += 1;
        let root_slot = take_slot(format!("the expander on node {}", x.node))?;
        expanders.push(ExpanderTopo {
            index,
            node: x.node,
            bus: BusNr(x.bus),
            root_slot,
            root_ports: vec![],
        });
    }

    let mut root_ports = Vec::new();
    let mut device_port: Vec<Option<usize>> = vec![None; profile.nics.len()];
    for (e, x) in profile.expanders.iter().enumerate() {
        for k in 0..x.root_ports {
            let index = next_index;
            next_index += 1;
            let device = x.nics.get(k as usize).copied();
            if let Some(d) = device {
                *device_port.get_mut(d).ok_or(ResolveError::NoSuchNic(d))? = Some(root_ports.len());
            }
            expanders[e].root_ports.push(root_ports.len());
            root_ports.push(RootPort {
                index,
                parent_index: expanders[e].index,
                slot: k as u8,
                chassis: index,
                port: k * 8,
                expander: Some(e),
                node: Some(x.node),
                guest_bdf: Bdf::new(x.bus, k as u8, 0),
                secondary_bus: BusNr(x.bus + 1 + k as u8),
                device,
            });
        }
    }
    // NICs without a node: a root port each on pcie-root, buses 1, 2, ...
    let mut root_bus = 1u8;
    for (d, nic) in profile.nics.iter().enumerate() {
        if nic.node.is_some() {
            continue;
        }
        let index = next_index;
        next_index += 1;
        let slot = take_slot(format!("the root port of {}", nic.id))?;
        device_port[d] = Some(root_ports.len());
        root_ports.push(RootPort {
            index,
            parent_index: 0,
            slot,
            chassis: index,
            port: u32::from(slot) * 8,
            expander: None,
            node: None,
            guest_bdf: Bdf::new(0, slot, 0),
            secondary_bus: BusNr(root_bus),
            device: Some(d),
        });
        root_bus += 1;
    }
    // The devices a guest kind or a workload adds: a root port each on
    // pcie-root, after the NICs' (the system disk, then the shares).
    let mut take_port = |what: &str| -> Result<(usize, u32, Bdf), ResolveError> {
        let index = next_index;
        next_index += 1;
        let slot = take_slot(what.to_string())?;
        let rp = root_ports.len();
        root_ports.push(RootPort {
            index,
            parent_index: 0,
            slot,
            chassis: index,
            port: u32::from(slot) * 8,
            expander: None,
            node: None,
            guest_bdf: Bdf::new(0, slot, 0),
            secondary_bus: BusNr(root_bus),
            device: None,
        });
        let bdf = Bdf::new(root_bus, 0, 0);
        root_bus += 1;
        Ok((rp, index, bdf))
    };
    let mut disks = Vec::new();
    if profile.guest == GuestKindId::Debian {
        let (root_port, xml_bus, guest_bdf) = take_port("the root port of the system disk")?;
        disks.push(Disk {
            id: "disk0".into(),
            role: DiskRole::System,
            root_port,
            xml_bus,
            guest_bdf,
            target: "vda".into(),
        });
    }
    let mut shares = Vec::new();
    for (source, guest, mode) in
        crate::model::workload::shares_of(profile.guest, &profile.workloads)
    {
        let n = shares.len();
        let (root_port, xml_bus, guest_bdf) = take_port(&format!("the root port of share{n}"))?;
        shares.push(ShareDevice {
            id: format!("share{n}"),
            tag: format!("nestlab{n}"),
            source,
            guest,
            mode,
            driver: SHARE_DRIVER,
            root_port,
            xml_bus,
            guest_bdf,
        });
    }

    // A virtio IOMMU: a PCI device in the next free slot of pcie-root.
    let iommu_device = match profile.iommu {
        Some(i) if i.model == IommuModel::Virtio => {
            let slot = take_slot("the virtio IOMMU".to_string())?;
            Some(IommuDevice {
                slot,
                guest_bdf: Bdf::new(0, slot, 0),
            })
        }
        _ => None,
    };
    let initiators = if profile.interconnects.is_empty() {
        Vec::new()
    } else {
        profile
            .nodes
            .iter()
            .map(|n| {
                if n.memory_only() {
                    profile
                        .interconnects
                        .iter()
                        .find(|c| c.target == n.id)
                        .map(|c| c.initiator)
                        .ok_or(ResolveError::NoInitiator(n.id))
                } else {
                    Ok(n.id)
                }
            })
            .collect::<Result<Vec<NodeId>, _>>()?
    };

    let mut macs = Vec::new();
    let mut devices = Vec::new();
    for (d, nic) in profile.nics.iter().enumerate() {
        let rp = device_port[d].ok_or(ResolveError::NoSuchNic(d))?;
        let port = &root_ports[rp];
        let guest_bdf = Bdf {
            domain: 0,
            bus: port.secondary_bus,
            slot: 0,
            function: 0,
        };
        let mut salt = 0;
        let mut mac = derive_mac(&profile.name, &nic.id, salt);
        while macs.contains(&mac) {
            salt += 1;
            mac = derive_mac(&profile.name, &nic.id, salt);
        }
        macs.push(mac);
        let vfs = (0..nic.vfs)
            .map(|i| Vf {
                id: format!("{}.vf{i}", nic.id),
                guest_bdf: igb_vf_bdf(guest_bdf, i),
            })
            .collect();
        devices.push(Device {
            id: nic.id.clone(),
            model: nic.model,
            node: nic.node,
            mac,
            root_port: rp,
            xml_bus: port.index,
            guest_bdf,
            vfs,
        });
    }
    Ok(Topology {
        profile: profile.clone(),
        expanders,
        root_ports,
        disks,
        shares,
        devices,
        iommu_device,
        initiators,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeId;

    fn reference() -> Topology {
        let p = crate::front::parse::load_profile_arg("reference").unwrap();
        resolve(&p).unwrap()
    }

    #[test]
    fn reference_guest_addresses() {
        let t = reference();
        let buses: Vec<String> = t.devices.iter().map(|d| d.guest_bdf.short()).collect();
        assert_eq!(
            buses,
            [
                "b5:00.0", "b6:00.0", "b7:00.0", "c9:00.0", "ca:00.0", "cb:00.0", "dd:00.0",
                "de:00.0", "df:00.0"
            ]
        );
        assert_eq!(
            t.expanders
                .iter()
                .map(|x| x.bus.to_string())
                .collect::<Vec<_>>(),
            ["b4", "c8", "dc"]
        );
        assert_eq!(t.root_ports[4].guest_bdf.short(), "c8:01.0");
        assert_eq!(t.devices[8].node, Some(NodeId(2)));
    }

    #[test]
    fn indexes_are_unique_and_parents_exist() {
        let t = reference();
        let mut idx: Vec<u32> = t
            .expanders
            .iter()
            .map(|x| x.index)
            .chain(t.root_ports.iter().map(|r| r.index))
            .collect();
        let n = idx.len();
        idx.sort();
        idx.dedup();
        assert_eq!(idx.len(), n);
        for r in &t.root_ports {
            assert!(r.parent_index == 0 || t.expanders.iter().any(|x| x.index == r.parent_index));
        }
    }

    #[test]
    fn macs_are_stable_and_local() {
        let a = reference();
        let b = reference();
        for (x, y) in a.devices.iter().zip(&b.devices) {
            assert_eq!(x.mac, y.mac);
            assert!(x.mac.is_local_unicast());
        }
    }

    #[test]
    fn vf_addresses() {
        let pf = Bdf::new(0xc9, 0, 0);
        let v: Vec<String> = (0..4).map(|i| igb_vf_bdf(pf, i).short()).collect();
        assert_eq!(v, ["c9:10.0", "c9:10.2", "c9:10.4", "c9:10.6"]);
    }
}
