//! `virsh dumpxml DOMAIN` (virDomainGetXMLDesc of the running domain), read
//! on the host: where libvirt placed the domain (`<cputune>`, `<numatune>`,
//! `<memoryBacking>`). Everything else in the document is ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{xml_error, ParseError};
use crate::model::{CpuSet, NodeSet};

/// What libvirt says of a running domain's placement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveDomain {
    /// Domain name.
    pub name: String,
    /// vCPU -> its host CPUs (`<vcpupin>`); a vCPU without one floats.
    pub vcpupin: BTreeMap<u32, CpuSet>,
    /// `<emulatorpin cpuset>`.
    pub emulatorpin: Option<CpuSet>,
    /// `<numatune><memory mode nodeset>`.
    pub numatune: Option<LivePolicy>,
    /// `<numatune><memnode>` by guest cell.
    pub memnodes: BTreeMap<u32, LivePolicy>,
    /// `<memoryBacking><hugepages><page>`: size in KiB and the guest cells
    /// it backs (none = all).
    pub hugepages: Vec<(u64, Option<CpuSet>)>,
}

/// A memory mode and host nodes, as libvirt reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivePolicy {
    /// `strict`, `preferred`, ...
    pub mode: String,
    /// Host nodes, when given.
    pub nodeset: Option<NodeSet>,
}

mod wire {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Domain {
        pub name: String,
        pub cputune: Option<Cputune>,
        pub numatune: Option<Numatune>,
        #[serde(rename = "memoryBacking")]
        pub memory_backing: Option<MemoryBacking>,
    }

    #[derive(Deserialize)]
    pub struct Cputune {
        #[serde(rename = "vcpupin", default)]
        pub vcpupins: Vec<Vcpupin>,
        pub emulatorpin: Option<Cpuset>,
    }

    #[derive(Deserialize)]
    pub struct Vcpupin {
        #[serde(rename = "@vcpu")]
        pub vcpu: u32,
        #[serde(rename = "@cpuset")]
        pub cpuset: String,
    }

    #[derive(Deserialize)]
    pub struct Cpuset {
        #[serde(rename = "@cpuset")]
        pub cpuset: String,
    }

    #[derive(Deserialize)]
    pub struct Numatune {
        pub memory: Option<Policy>,
        #[serde(rename = "memnode", default)]
        pub memnodes: Vec<Memnode>,
    }

    #[derive(Deserialize)]
    pub struct Policy {
        #[serde(rename = "@mode", default)]
        pub mode: Option<String>,
        #[serde(rename = "@nodeset", default)]
        pub nodeset: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct Memnode {
        #[serde(rename = "@cellid")]
        pub cellid: u32,
        #[serde(rename = "@mode", default)]
        pub mode: Option<String>,
        #[serde(rename = "@nodeset", default)]
        pub nodeset: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct MemoryBacking {
        pub hugepages: Option<Hugepages>,
    }

    #[derive(Deserialize)]
    pub struct Hugepages {
        #[serde(rename = "page", default)]
        pub pages: Vec<Page>,
    }

    #[derive(Deserialize)]
    pub struct Page {
        #[serde(rename = "@size")]
        pub size: u64,
        #[serde(rename = "@unit", default)]
        pub unit: Option<String>,
        #[serde(rename = "@nodeset", default)]
        pub nodeset: Option<String>,
    }
}

/// Parses a live domain XML.
///
/// # Errors
/// A [`ParseError`] when the text is not a domain document, or a cpuset or
/// nodeset in it cannot be read.
pub fn parse(input: &str) -> Result<LiveDomain, ParseError> {
    let doc: wire::Domain = quick_xml::de::from_str(input).map_err(|e| xml_error(input, e))?;
    let bad =
        |what: &str, e: crate::model::TypeError| ParseError::at(1, format!("{what}: {}", e.0));
    let mut out = LiveDomain {
        name: doc.name,
        ..LiveDomain::default()
    };
    if let Some(c) = doc.cputune {
        for p in c.vcpupins {
            let set = p
                .cpuset
                .parse()
                .map_err(|e| bad(&format!("vcpupin of vCPU {}", p.vcpu), e))?;
            out.vcpupin.insert(p.vcpu, set);
        }
        if let Some(e) = c.emulatorpin {
            out.emulatorpin = Some(e.cpuset.parse().map_err(|e| bad("emulatorpin", e))?);
        }
    }
    let policy = |mode: Option<String>, nodeset: Option<String>, what: &str| {
        Ok::<_, ParseError>(LivePolicy {
            mode: mode.unwrap_or_else(|| "strict".into()),
            nodeset: nodeset
                .map(|n| n.parse().map_err(|e| bad(what, e)))
                .transpose()?,
        })
    };
    if let Some(n) = doc.numatune {
        if let Some(m) = n.memory {
            out.numatune = Some(policy(m.mode, m.nodeset, "numatune memory")?);
        }
        for m in n.memnodes {
            let p = policy(m.mode, m.nodeset, &format!("memnode {}", m.cellid))?;
            out.memnodes.insert(m.cellid, p);
        }
    }
    if let Some(h) = doc.memory_backing.and_then(|m| m.hugepages) {
        for p in h.pages {
            let kib = match p.unit.as_deref().unwrap_or("KiB") {
                "KiB" | "k" | "K" => p.size,
                "MiB" | "M" => p.size.saturating_mul(1024),
                "GiB" | "G" => p.size.saturating_mul(1024 * 1024),
                "b" | "bytes" => p.size / 1024,
                other => return Err(ParseError::at(1, format!("page unit '{other}' is unknown"))),
            };
            let cells = p
                .nodeset
                .map(|n| n.parse().map_err(|e| bad("hugepages page nodeset", e)))
                .transpose()?;
            out.hugepages.push((kib, cells));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_domain_from_libvirt_11_3() {
        let d = parse(include_str!(
            "../../tests/fixtures/observe/host_domain/pinned-libvirt-11.3.xml"
        ))
        .unwrap();
        assert!(d.name.starts_with("nestlab-pinned-"));
        assert_eq!(d.vcpupin[&1].to_string(), "1");
        assert_eq!(d.emulatorpin.unwrap().to_string(), "0-1");
        let n = d.numatune.unwrap();
        assert_eq!(
            (n.mode.as_str(), n.nodeset.unwrap().to_string()),
            ("strict", "0".to_string())
        );
        assert_eq!(d.memnodes[&0].mode, "strict");
    }

    #[test]
    fn unpinned_and_broken() {
        let d = parse("<domain type='qemu'><name>x</name><vcpu>2</vcpu></domain>").unwrap();
        assert!(d.vcpupin.is_empty() && d.emulatorpin.is_none());
        assert!(parse(
            "<domain><name>x</name><cputune><vcpupin vcpu='0' cpuset='z'/></cputune></domain>"
        )
        .is_err());
        assert!(parse("<domain><name>x</name>").is_err());
        let d = parse("<domain><name>x</name><memoryBacking><hugepages><page size='2' unit='MiB' nodeset='0-1'/></hugepages></memoryBacking></domain>").unwrap();
        assert_eq!(d.hugepages[0].0, 2048);
    }
}
