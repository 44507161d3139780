//! `nested.txt`: what the probe did to start the nested guest. One line per
//! assigned device, then one line on the nested boot:
//!
//! ```text
//! device nic8 0000:df:00.0 driver=vfio-pci group=12 vfio_dev=yes
//! device nic9.vf0 0000:c9:10.0 driver=igbvf group=9 vfio_dev=no
//! boot ok
//! boot failed: no /dev/kvm in the virtual host
//! ```
//!
//! Through libvirt (a guest with libvirt inside), each device's driver is
//! also recorded before the assignment and after the nested domain is gone
//! (libvirt's `managed='yes'` gives it back):
//!
//! ```text
//! before nic8 0000:df:00.0 driver=e1000e
//! released nic8 0000:df:00.0 driver=e1000e
//! ```
//!
//! The nested guest's own `lspci -nn` is `nested-lspci.txt`, read by
//! [`super::lspci`].

use serde::{Deserialize, Serialize};

use super::text;
use super::ParseError;
use crate::model::Bdf;

/// One assigned device as the probe left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedDevice {
    /// `nic8`, `nic9.vf0`.
    pub id: String,
    /// Its address in the virtual host.
    pub bdf: Bdf,
    /// The driver bound (`vfio-pci` when assignment worked), if any.
    pub driver: Option<String>,
    /// Its IOMMU group, if any.
    pub group: Option<u32>,
    /// Whether /dev/vfio/<group> exists.
    pub vfio_dev: bool,
}

/// Everything in `nested.txt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NestedFacts {
    /// Assigned devices, in file order.
    pub devices: Vec<AssignedDevice>,
    /// `Ok(())` when the nested guest booted, `Err(reason)` when not,
    /// `None` when the file says nothing about it.
    pub boot: Option<Result<(), String>>,
    /// Each device's driver before the assignment (libvirt's step).
    #[serde(default)]
    pub before: Vec<(String, Option<String>)>,
    /// Each device's driver after the nested domain was destroyed.
    #[serde(default)]
    pub released: Vec<(String, Option<String>)>,
}

/// Parses `nested.txt`.
///
/// # Errors
/// A [`ParseError`] naming the line for a line that is neither a `device`
/// nor a `boot` line.
pub fn parse(input: &str) -> Result<NestedFacts, ParseError> {
    let mut facts = NestedFacts::default();
    for (n, line) in text::lines(input) {
        let t = line.trim();
        if t.is_empty() || text::is_kernel_line(line) {
            continue;
        }
        let fail = |what: &str| ParseError::at(n, format!("{what} in '{}'", text::snippet(t)));
        if let Some(rest) = t.strip_prefix("boot ") {
            let rest = rest.trim();
            facts.boot = Some(if rest == "ok" {
                Ok(())
            } else if let Some(why) = rest.strip_prefix("failed") {
                Err(why.trim_start_matches(':').trim().to_string())
            } else {
                return Err(fail("expected 'boot ok' or 'boot failed: <why>'"));
            });
            continue;
        }
        let driver_line = t
            .strip_prefix("before ")
            .map(|r| (true, r))
            .or_else(|| t.strip_prefix("released ").map(|r| (false, r)));
        if let Some((before, rest)) = driver_line {
            let mut w = rest.split_whitespace();
            let id = w.next().ok_or_else(|| fail("no device id"))?.to_string();
            w.next()
                .and_then(|b| b.parse::<Bdf>().ok())
                .ok_or_else(|| fail("no PCI address"))?;
            let driver = match w.next().and_then(|d| d.strip_prefix("driver=")) {
                Some(d) => (!d.is_empty() && d != "none").then(|| d.to_string()),
                None => return Err(fail("no driver=")),
            };
            if before {
                facts.before.push((id, driver));
            } else {
                facts.released.push((id, driver));
            }
            continue;
        }
        let Some(rest) = t.strip_prefix("device ") else {
            return Err(fail(
                "expected a 'device', 'before', 'released' or 'boot' line",
            ));
        };
        let mut words = rest.split_whitespace();
        let id = words
            .next()
            .ok_or_else(|| fail("no device id"))?
            .to_string();
        let bdf: Bdf = words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| fail("no PCI address"))?;
        let mut dev = AssignedDevice {
            id,
            bdf,
            driver: None,
            group: None,
            vfio_dev: false,
        };
        for w in words {
            match w.split_once('=') {
                Some(("driver", v)) => {
                    dev.driver = (!v.is_empty() && v != "none").then(|| v.to_string())
                }
                Some(("group", v)) => dev.group = text::decimal::<u32>(v),
                Some(("vfio_dev", v)) => dev.vfio_dev = v == "yes",
                _ => return Err(fail("unknown field")),
            }
        }
        facts.devices.push(dev);
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_lines() {
        let f = parse("before nic8 0000:df:00.0 driver=e1000e\ndevice nic8 0000:df:00.0 driver=vfio-pci group=12 vfio_dev=yes\nreleased nic8 0000:df:00.0 driver=\nboot ok\n").unwrap();
        assert_eq!(
            f.before,
            vec![("nic8".to_string(), Some("e1000e".to_string()))]
        );
        assert_eq!(f.released, vec![("nic8".to_string(), None)]);
        assert!(parse("released nic8 0000:df:00.0\n").is_err());
    }

    #[test]
    fn lines() {
        let f =
            parse("device nic8 0000:df:00.0 driver=vfio-pci group=12 vfio_dev=yes\r\nboot ok\n")
                .unwrap();
        assert_eq!(f.devices[0].driver.as_deref(), Some("vfio-pci"));
        assert_eq!(f.devices[0].group, Some(12));
        assert!(f.devices[0].vfio_dev);
        assert_eq!(f.boot, Some(Ok(())));
        let f = parse(
            "device nic0 0000:b5:00.0 driver=none group= vfio_dev=no\nboot failed: no /dev/kvm\n",
        )
        .unwrap();
        assert_eq!(f.devices[0].driver, None);
        assert_eq!(f.boot, Some(Err("no /dev/kvm".into())));
        assert_eq!(parse("x\n").unwrap_err().line, 1);
    }
}
