//! The libvirt adapter: the only module that imports `virt`.
//!
//! Implements [`Host`], [`Guest`] and [`ConsoleSource`] over a libvirt
//! connection. Every call here blocks; the runner calls them on blocking
//! threads. libvirt's error codes are kept in [`HostError::code`]: only
//! "no such domain" ever counts as "already gone".

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;
use virt::stream::Stream;

use super::{
    is_local_uri, Artifact, ConsoleSource, Guest, Host, HostError, HostFacts, HostView,
    OwnedDomain, Version, VIR_ERR_NO_DOMAIN, VIR_ERR_OPERATION_INVALID,
};
use crate::xml::domain::METADATA_NS;

/// libvirt's number for the error kinds nestlab tells apart (the values of
/// `virErrorNumber`, stable across libvirt versions).
fn code_of(e: &virt::error::Error) -> Option<i32> {
    Some(match e.code() {
        ErrorNumber::NoDomain => VIR_ERR_NO_DOMAIN,
        ErrorNumber::OperationInvalid => VIR_ERR_OPERATION_INVALID,
        ErrorNumber::InternalError => 1,
        ErrorNumber::NoSupport => 3,
        ErrorNumber::NoConnect => 5,
        ErrorNumber::InvalidConn => 6,
        ErrorNumber::OperationFailed => 9,
        ErrorNumber::XmlError => 27,
        ErrorNumber::SystemError => 38,
        ErrorNumber::Rpc => 39,
        ErrorNumber::NoStoragePool => 49,
        ErrorNumber::NoStorageVolume => 50,
        ErrorNumber::StorageVolExist => 90,
        ErrorNumber::ConfigUnsupported => 67,
        ErrorNumber::OperationTimeout => 68,
        ErrorNumber::AuthFailed => 45,
        _ => return None,
    })
}

fn herr(op: impl Into<String>) -> impl FnOnce(virt::error::Error) -> HostError {
    let op = op.into();
    move |e| HostError {
        op,
        code: code_of(&e),
        message: e.message().to_string(),
    }
}

/// A live connection to libvirtd.
pub struct Libvirt {
    conn: Connect,
    uri: String,
    facts: OnceLock<Arc<HostFacts>>,
}

impl Libvirt {
    /// Connects to `uri` (`qemu:///system`, `qemu:///session`, remote URIs).
    ///
    /// # Errors
    /// When the daemon cannot be reached.
    pub fn connect(uri: &str) -> Result<Libvirt, HostError> {
        // libvirt prints every error to stderr by default; ours carry them.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(herr(format!("cannot connect to {uri}")))?;
        Ok(Libvirt {
            conn,
            uri: uri.to_string(),
            facts: OnceLock::new(),
        })
    }

    fn owned_metadata(dom: &Domain) -> Option<String> {
        // VIR_DOMAIN_METADATA_ELEMENT = 2; flags 0 = current state.
        dom.get_metadata(2, Some(METADATA_NS), 0).ok()
    }

    fn read_facts(&self) -> Result<HostFacts, HostError> {
        let lib = self
            .conn
            .get_lib_version()
            .map_err(herr("cannot read the libvirt version"))?;
        let hyp = self
            .conn
            .get_hyp_version()
            .map_err(herr("cannot read the hypervisor version"))?;
        let caps = self.conn.get_capabilities().map_err(herr(format!(
            "cannot read the capabilities of {}",
            self.uri
        )))?;
        HostFacts::from_capabilities(
            &self.uri,
            Version::from_packed(u64::from(lib)),
            Version::from_packed(u64::from(hyp)),
            &caps,
        )
    }
}

struct LibvirtGuest {
    conn: Connect,
    dom: Domain,
    name: String,
    uri: String,
}

/// Destroys `name` through a fresh connection to `uri`, if it exists and
/// carries nestlab's metadata: for when the first connection died with
/// libvirtd while QEMU may still run.
fn destroy_reconnecting(uri: &str, name: &str) -> Result<(), HostError> {
    // libvirtd may be restarting: keep trying for a while.
    let mut tries = 0;
    let conn = loop {
        match Connect::open(Some(uri)) {
            Ok(c) => break c,
            Err(e) if tries >= 30 => {
                return Err(herr(format!("cannot reconnect to {uri} to destroy {name}"))(e))
            }
            Err(_) => {
                tries += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    // A restarted libvirtd answers before it has re-attached to the
    // domains still running: "no such domain" is believed only after
    // several looks; any other error is not "gone".
    let mut found = Domain::lookup_by_name(&conn, name).map_err(herr(format!("no domain {name}")));
    for _ in 0..10 {
        match &found {
            Err(e) if e.is_no_domain() => {
                std::thread::sleep(Duration::from_millis(500));
                found =
                    Domain::lookup_by_name(&conn, name).map_err(herr(format!("no domain {name}")));
            }
            _ => break,
        }
    }
    let result = match found {
        Err(e) if e.is_no_domain() => Ok(()),
        Err(e) => Err(e),
        Ok(dom) if Libvirt::owned_metadata(&dom).is_none() => Err(HostError::other(
            format!("not destroying {name}"),
            "it does not carry nestlab's metadata",
        )),
        Ok(dom) => destroy_domain(&dom, name),
    };
    let mut conn = conn;
    let _ = conn.close();
    result
}

/// Destroys a domain; "not running" and "no such domain" after a failed
/// destroy count as done, anything else is an error.
fn destroy_domain(dom: &Domain, name: &str) -> Result<(), HostError> {
    match dom
        .destroy()
        .map_err(herr(format!("cannot destroy {name}")))
    {
        Ok(()) => Ok(()),
        Err(e) if e.is_no_domain() || e.code == Some(VIR_ERR_OPERATION_INVALID) => {
            match dom
                .is_active()
                .map_err(herr(format!("cannot look at {name}")))
            {
                Ok(false) => Ok(()),
                Err(gone) if gone.is_no_domain() => Ok(()),
                Ok(true) => Err(e),
                Err(other) => Err(other),
            }
        }
        Err(e) => Err(e),
    }
}

struct LibvirtConsole {
    stream: Stream,
}

impl ConsoleSource for LibvirtConsole {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, HostError> {
        self.stream.recv(buf).map_err(herr("console stream"))
    }

    fn into_stream(self: Box<Self>) -> super::ConsoleStream {
        super::pump_thread(self)
    }
}

impl Guest for LibvirtGuest {
    fn name(&self) -> &str {
        &self.name
    }

    fn open_console(&self) -> Result<Box<dyn ConsoleSource>, HostError> {
        let stream = Stream::new(&self.conn, 0).map_err(herr("cannot create a stream"))?;
        // VIR_DOMAIN_CONSOLE_FORCE = 1: take the console even if a stale
        // client holds it.
        self.dom
            .open_console(None, &stream, 1)
            .map_err(herr(format!("cannot open the console of {}", self.name)))?;
        Ok(Box::new(LibvirtConsole { stream }))
    }

    fn resume(&self) -> Result<(), HostError> {
        self.dom
            .resume()
            .map(|_| ())
            .map_err(herr(format!("cannot resume {}", self.name)))
    }

    fn is_active(&self) -> Result<bool, HostError> {
        match self
            .dom
            .is_active()
            .map_err(herr(format!("cannot look at {}", self.name)))
        {
            // Transient domains vanish when QEMU exits.
            Err(e) if e.is_no_domain() => Ok(false),
            other => other,
        }
    }

    fn host_view(&self) -> Result<HostView, HostError> {
        // flags 0: the running domain's definition, with what libvirt filled in.
        let domain_xml = self
            .dom
            .get_xml_desc(0)
            .map_err(herr(format!("cannot read the live XML of {}", self.name)))?;
        // QEMU's /proc is on this machine only through a local connection.
        let threads = if is_local_uri(&self.uri) {
            Some(super::proc::qemu_threads_in(
                std::path::Path::new("/proc"),
                &self.name,
            )?)
        } else {
            None
        };
        Ok(HostView {
            domain_xml,
            threads,
        })
    }

    fn destroy(&self) -> Result<(), HostError> {
        match destroy_domain(&self.dom, &self.name) {
            Ok(()) => Ok(()),
            // The connection died with libvirtd: try a new one.
            Err(_) if self.conn.is_alive().ok() != Some(true) => {
                destroy_reconnecting(&self.uri, &self.name)
            }
            Err(e) => Err(e),
        }
    }
}

impl Host for Libvirt {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn facts(&self) -> Result<Arc<HostFacts>, HostError> {
        if let Some(f) = self.facts.get() {
            return Ok(f.clone());
        }
        let f = Arc::new(self.read_facts()?);
        Ok(self.facts.get_or_init(|| f).clone())
    }

    fn domain_caps(
        &self,
        virttype: &str,
    ) -> Result<crate::observe::domcaps::DomainCaps, HostError> {
        let op = || {
            format!(
                "cannot read the {virttype} domain capabilities of {}",
                self.uri
            )
        };
        let xml = self
            .conn
            .get_domain_capabilities(None, Some("x86_64"), Some("q35"), Some(virttype), 0)
            .map_err(herr(op()))?;
        crate::observe::domcaps::parse(&xml).map_err(|e| HostError::other(op(), e.to_string()))
    }

    fn stage(&self, artifact: &Artifact) -> Result<String, HostError> {
        Ok(artifact.path.display().to_string())
    }

    fn start_paused(&self, xml: &str) -> Result<Arc<dyn Guest>, HostError> {
        // VIR_DOMAIN_START_PAUSED = 1
        let dom = match Domain::create_xml(&self.conn, xml, 1) {
            Ok(d) => d,
            Err(e) => {
                let err = herr("libvirt cannot start the domain")(e);
                // The daemon may have died after creating it: then the
                // domain exists without our handle. Remove it by name.
                if self.conn.is_alive().ok() != Some(true) {
                    if let Ok(d) = crate::xml::domain::Domain::from_xml(xml) {
                        let _ = destroy_reconnecting(&self.uri, &d.name);
                    }
                }
                return Err(err);
            }
        };
        let name = match dom.get_name() {
            Ok(n) => n,
            Err(e) => {
                let _ = dom.destroy();
                return Err(herr("cannot read the new domain's name")(e));
            }
        };
        Ok(Arc::new(LibvirtGuest {
            conn: self.conn.clone(),
            dom,
            name,
            uri: self.uri.clone(),
        }))
    }

    fn owned_domains(&self) -> Result<Vec<OwnedDomain>, HostError> {
        let doms = self
            .conn
            .list_all_domains(0)
            .map_err(herr("cannot list domains"))?;
        let mut out = Vec::new();
        for d in &doms {
            let Some(metadata) = Self::owned_metadata(d) else {
                continue;
            };
            let name = d.get_name().map_err(herr("cannot read a domain's name"))?;
            let active = match d.is_active() {
                Ok(a) => a,
                // Gone between the listing and now.
                Err(e) if code_of(&e) == Some(VIR_ERR_NO_DOMAIN) => continue,
                Err(e) => return Err(herr(format!("cannot look at {name}"))(e)),
            };
            out.push(OwnedDomain {
                name,
                metadata,
                active,
            });
        }
        Ok(out)
    }

    fn remove_owned(&self, name: &str) -> Result<bool, HostError> {
        let dom = Domain::lookup_by_name(&self.conn, name)
            .map_err(herr(format!("no domain '{name}'")))?;
        if Self::owned_metadata(&dom).is_none() {
            return Ok(false);
        }
        if dom
            .is_active()
            .map_err(herr(format!("cannot look at {name}")))?
        {
            destroy_domain(&dom, name)?;
        }
        // A persistent definition (nestlab never makes one, but a user may
        // have defined our XML): remove it too.
        if dom.is_persistent().unwrap_or(false) {
            dom.undefine()
                .map_err(herr(format!("cannot undefine {name}")))?;
        }
        Ok(true)
    }
}
