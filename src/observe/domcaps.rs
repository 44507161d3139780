//! `virsh domcapabilities` (virConnectGetDomainCapabilities): what one
//! hypervisor type (kvm, qemu) can give a domain. Read for the host's facts
//! (does KVM run nested guests there: the host-model CPU carries vmx/svm)
//! and, captured inside a virtual host, to check that libvirt there offers
//! KVM.

use serde::{Deserialize, Serialize};

use super::xml_error;
use crate::observe::ParseError;

/// What a domain capabilities document says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainCaps {
    /// `kvm` or `qemu`.
    pub domain: String,
    /// The emulator binary.
    pub path: Option<String>,
    /// The machine type (`pc-q35-10.0`).
    pub machine: Option<String>,
    /// Whether `host-passthrough` CPU mode is supported.
    pub host_passthrough: bool,
    /// The host-model CPU's vendor, when given.
    pub host_model_vendor: Option<String>,
    /// Features the host-model CPU requires (`vmx`, `svm`, ...).
    pub host_model_features: Vec<String>,
    /// Whether PCI host devices can be assigned (`<hostdev supported>`).
    pub hostdev: bool,
    /// Filesystem driver types (`path`, `handle`, `virtiofs`).
    pub filesystem_drivers: Vec<String>,
    /// Memory backing source types (`file`, `anonymous`, `memfd`).
    pub memory_backing: Vec<String>,
}

impl DomainCaps {
    /// Whether a guest of this hypervisor type gets vmx or svm, so KVM
    /// inside it works (nested virtualisation on): `vmx` or `svm`.
    pub fn nested_flag(&self) -> Option<&'static str> {
        ["vmx", "svm"]
            .into_iter()
            .find(|f| self.host_model_features.iter().any(|x| x == f))
    }
}

mod wire {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Doc {
        pub path: Option<String>,
        pub domain: String,
        pub machine: Option<String>,
        pub cpu: Option<Cpu>,
        pub devices: Option<Devices>,
        #[serde(rename = "memoryBacking")]
        pub memory_backing: Option<Supported>,
    }

    #[derive(Deserialize)]
    pub struct Cpu {
        #[serde(rename = "mode", default)]
        pub modes: Vec<Mode>,
    }

    #[derive(Deserialize)]
    pub struct Mode {
        #[serde(rename = "@name")]
        pub name: String,
        #[serde(rename = "@supported")]
        pub supported: Option<String>,
        pub vendor: Option<String>,
        #[serde(rename = "feature", default)]
        pub features: Vec<Feature>,
    }

    #[derive(Deserialize)]
    pub struct Feature {
        #[serde(rename = "@policy")]
        pub policy: Option<String>,
        #[serde(rename = "@name")]
        pub name: String,
    }

    #[derive(Deserialize)]
    pub struct Devices {
        pub hostdev: Option<Supported>,
        pub filesystem: Option<Supported>,
    }

    #[derive(Deserialize)]
    pub struct Supported {
        #[serde(rename = "@supported")]
        pub supported: Option<String>,
        #[serde(rename = "enum", default)]
        pub enums: Vec<Enum>,
    }

    #[derive(Deserialize)]
    pub struct Enum {
        #[serde(rename = "value", default)]
        pub values: Vec<String>,
    }
}

fn yes(s: &Option<String>) -> bool {
    s.as_deref() == Some("yes")
}

/// Parses a domain capabilities document.
///
/// # Errors
/// A [`ParseError`] for a document that is not domain capabilities XML.
pub fn parse(text: &str) -> Result<DomainCaps, ParseError> {
    let doc: wire::Doc = quick_xml::de::from_str(text).map_err(|e| xml_error(text, e))?;
    let modes = doc.cpu.map(|c| c.modes).unwrap_or_default();
    let host_model = modes.iter().find(|m| m.name == "host-model");
    let values = |s: &Option<wire::Supported>| -> Vec<String> {
        s.as_ref()
            .filter(|s| yes(&s.supported))
            .map(|s| s.enums.iter().flat_map(|e| e.values.clone()).collect())
            .unwrap_or_default()
    };
    let devices = doc.devices;
    Ok(DomainCaps {
        domain: doc.domain,
        path: doc.path,
        machine: doc.machine,
        host_passthrough: modes
            .iter()
            .any(|m| m.name == "host-passthrough" && yes(&m.supported)),
        host_model_vendor: host_model.and_then(|m| m.vendor.clone()),
        host_model_features: host_model
            .map(|m| {
                m.features
                    .iter()
                    .filter(|f| f.policy.as_deref() != Some("disable"))
                    .map(|f| f.name.clone())
                    .collect()
            })
            .unwrap_or_default(),
        hostdev: devices
            .as_ref()
            .and_then(|d| d.hostdev.as_ref())
            .is_some_and(|h| yes(&h.supported)),
        filesystem_drivers: values(&devices.and_then(|d| d.filesystem)),
        memory_backing: values(&doc.memory_backing),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_host_tcg() {
        let d = parse(include_str!(
            "../../tests/fixtures/observe/domcaps/ci-host-qemu.xml"
        ))
        .unwrap();
        assert_eq!(d.domain, "qemu");
        assert!(!d.host_passthrough);
        assert_eq!(d.host_model_vendor.as_deref(), Some("AMD"));
        assert!(d.hostdev);
        assert!(d.filesystem_drivers.contains(&"virtiofs".to_string()));
        assert!(d.memory_backing.contains(&"memfd".to_string()));
    }

    #[test]
    fn nested_flag_from_host_model() {
        let xml = "<domainCapabilities><domain>kvm</domain><cpu><mode name='host-model' supported='yes'><vendor>Intel</vendor><feature policy='require' name='vmx'/><feature policy='disable' name='svm'/></mode></cpu></domainCapabilities>";
        let d = parse(xml).unwrap();
        assert_eq!(d.nested_flag(), Some("vmx"));
        assert!(parse("<domainCapabilities/>").is_err());
        assert!(parse("<x").is_err());
    }
}
