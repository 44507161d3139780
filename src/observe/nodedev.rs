//! `virsh nodedev-dumpxml` of PCI devices, several documents one after
//! the other (the agent dumps every PCI device but those on bus 0): what
//! libvirt, and so OpenStack Nova, knows of each device: its NUMA node, its
//! IOMMU group and the group's members, its SR-IOV functions, its driver.

use serde::{Deserialize, Serialize};

use super::xml_error;
use crate::model::{Bdf, PciId};
use crate::observe::ParseError;

/// One PCI device as libvirt describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDev {
    /// libvirt's name (`pci_0000_b5_00_0`).
    pub name: String,
    /// Its address.
    pub bdf: Bdf,
    /// vendor:device.
    pub id: Option<PciId>,
    /// The bound driver, if any.
    pub driver: Option<String>,
    /// `<numa node>`, when given (`None`: libvirt shows no NUMA node).
    pub numa_node: Option<i32>,
    /// `<iommuGroup number>` and its members.
    pub iommu_group: Option<(u32, Vec<Bdf>)>,
    /// A PF's virtual functions (`<capability type='virt_functions'>`).
    pub virt_functions: Vec<Bdf>,
    /// The most VFs a PF can have (`maxCount`).
    pub max_vfs: Option<u32>,
    /// A VF's physical function (`<capability type='phys_function'>`).
    pub phys_function: Option<Bdf>,
}

mod wire {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Device {
        pub name: String,
        pub driver: Option<Driver>,
        #[serde(rename = "capability", default)]
        pub caps: Vec<Cap>,
    }

    #[derive(Deserialize)]
    pub struct Driver {
        pub name: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct Cap {
        #[serde(rename = "@type")]
        pub kind: String,
        pub domain: Option<String>,
        pub bus: Option<String>,
        pub slot: Option<String>,
        pub function: Option<String>,
        pub product: Option<Id>,
        pub vendor: Option<Id>,
        #[serde(rename = "capability", default)]
        pub caps: Vec<SubCap>,
        #[serde(rename = "iommuGroup")]
        pub iommu_group: Option<Group>,
        pub numa: Option<Numa>,
    }

    #[derive(Deserialize)]
    pub struct Id {
        #[serde(rename = "@id")]
        pub id: String,
    }

    #[derive(Deserialize)]
    pub struct SubCap {
        #[serde(rename = "@type")]
        pub kind: String,
        #[serde(rename = "@maxCount")]
        pub max_count: Option<u32>,
        #[serde(rename = "address", default)]
        pub addresses: Vec<Address>,
    }

    #[derive(Deserialize)]
    pub struct Group {
        #[serde(rename = "@number")]
        pub number: u32,
        #[serde(rename = "address", default)]
        pub addresses: Vec<Address>,
    }

    #[derive(Deserialize)]
    pub struct Numa {
        #[serde(rename = "@node")]
        pub node: i32,
    }

    #[derive(Deserialize)]
    pub struct Address {
        #[serde(rename = "@domain")]
        pub domain: String,
        #[serde(rename = "@bus")]
        pub bus: String,
        #[serde(rename = "@slot")]
        pub slot: String,
        #[serde(rename = "@function")]
        pub function: String,
    }
}

/// A number libvirt writes in decimal or `0x` hex.
fn num(s: &str) -> Option<u32> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn bdf(domain: &str, bus: &str, slot: &str, function: &str) -> Option<Bdf> {
    let b = Bdf {
        domain: u16::try_from(num(domain)?).ok()?,
        bus: crate::model::BusNr(u8::try_from(num(bus)?).ok()?),
        slot: u8::try_from(num(slot)?).ok().filter(|s| *s < 32)?,
        function: u8::try_from(num(function)?).ok().filter(|f| *f < 8)?,
    };
    Some(b)
}

fn addr(a: &wire::Address) -> Option<Bdf> {
    bdf(&a.domain, &a.bus, &a.slot, &a.function)
}

/// Parses the concatenated documents (one `<device>` each; text between
/// them, such as a failed virsh call's message, is skipped).
///
/// # Errors
/// A [`ParseError`] at the line where a `<device>` that cannot be read
/// starts.
pub fn parse(input: &str) -> Result<Vec<NodeDev>, ParseError> {
    let mut out = Vec::new();
    let mut rest = input;
    let mut line = 1;
    while let Some(start) = rest.find("<device>") {
        line += rest[..start].matches('\n').count();
        let tail = &rest[start..];
        let Some(end) = tail.find("</device>") else {
            return Err(ParseError::at(line, "a <device> without its </device>"));
        };
        let doc = &tail[..end + "</device>".len()];
        let here = line;
        let dev: wire::Device = quick_xml::de::from_str(doc).map_err(|e| {
            let e = xml_error(doc, e);
            ParseError::at(here + e.line - 1, e.message)
        })?;
        let bad = |what: &str| ParseError::at(here, format!("{}: {what}", dev.name));
        let pci = dev
            .caps
            .iter()
            .find(|c| c.kind == "pci")
            .ok_or_else(|| bad("no pci capability"))?;
        let field = |f: &Option<String>| f.clone().unwrap_or_default();
        let bdf = bdf(
            &field(&pci.domain),
            &field(&pci.bus),
            &field(&pci.slot),
            &field(&pci.function),
        )
        .ok_or_else(|| bad("no valid PCI address"))?;
        let id = match (&pci.vendor, &pci.product) {
            (Some(v), Some(p)) => Some(PciId::new(
                u16::try_from(num(&v.id).ok_or_else(|| bad("vendor id"))?)
                    .map_err(|_| bad("vendor id"))?,
                u16::try_from(num(&p.id).ok_or_else(|| bad("product id"))?)
                    .map_err(|_| bad("product id"))?,
            )),
            _ => None,
        };
        let sub = |kind: &str| pci.caps.iter().find(|c| c.kind == kind);
        out.push(NodeDev {
            name: dev.name.clone(),
            bdf,
            id,
            driver: dev.driver.as_ref().and_then(|d| d.name.clone()),
            numa_node: pci.numa.as_ref().map(|n| n.node),
            iommu_group: pci
                .iommu_group
                .as_ref()
                .map(|g| (g.number, g.addresses.iter().filter_map(addr).collect())),
            virt_functions: sub("virt_functions")
                .map(|c| c.addresses.iter().filter_map(addr).collect())
                .unwrap_or_default(),
            max_vfs: sub("virt_functions").and_then(|c| c.max_count),
            phys_function: sub("phys_function").and_then(|c| c.addresses.first().and_then(addr)),
        });
        line += doc.matches('\n').count();
        rest = &tail[doc.len()..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PF: &str = "<device>
  <name>pci_0000_c9_00_0</name>
  <path>/sys/devices/pci0000:c8/0000:c8:00.0/0000:c9:00.0</path>
  <parent>pci_0000_c8_00_0</parent>
  <driver>
    <name>igb</name>
  </driver>
  <capability type='pci'>
    <class>0x020000</class>
    <domain>0</domain>
    <bus>201</bus>
    <slot>0</slot>
    <function>0</function>
    <product id='0x10c9'>82576 Gigabit Network Connection</product>
    <vendor id='0x8086'>Intel Corporation</vendor>
    <capability type='virt_functions' maxCount='7'>
      <address domain='0x0000' bus='0xc9' slot='0x10' function='0x0'/>
      <address domain='0x0000' bus='0xc9' slot='0x10' function='0x2'/>
    </capability>
    <iommuGroup number='14'>
      <address domain='0x0000' bus='0xc9' slot='0x00' function='0x0'/>
    </iommuGroup>
    <numa node='1'/>
  </capability>
</device>
";

    #[test]
    fn a_pf_with_its_vfs() {
        let d = parse(&format!(
            "{PF}error: failed to get node device\n{}",
            PF.replace("0x10c9", "0x10ca")
        ))
        .unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].bdf.short(), "c9:00.0");
        assert_eq!(d[0].id.map(|i| i.to_string()).as_deref(), Some("8086:10c9"));
        assert_eq!(d[0].driver.as_deref(), Some("igb"));
        assert_eq!(d[0].numa_node, Some(1));
        assert_eq!(
            d[0].iommu_group.as_ref().map(|(n, m)| (*n, m.len())),
            Some((14, 1))
        );
        assert_eq!(
            d[0].virt_functions
                .iter()
                .map(|b| b.short())
                .collect::<Vec<_>>(),
            ["c9:10.0", "c9:10.2"]
        );
        assert_eq!(d[0].max_vfs, Some(7));
    }

    #[test]
    fn broken_documents_name_their_line() {
        let e = parse("x\n\n<device><name>a</name>\n<capability type='pci'><bus>zz</bus></capability></device>").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse("\n<device>").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(parse("no devices at all").unwrap(), vec![]);
    }
}
