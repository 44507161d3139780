//! The libvirt adapter: the only module that imports `virt`.
//!
//! The runner talks to the [`Hypervisor`] trait, so it can be tested
//! without a daemon. Every call here blocks; the runner calls them on
//! blocking threads.

use std::sync::Arc;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::stream::Stream;

use crate::xml::domain::METADATA_NS;

/// A libvirt call that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {message}")]
pub struct LibvirtError {
    /// What was being done.
    pub what: String,
    /// libvirt's message.
    pub message: String,
}

fn lerr(what: impl Into<String>) -> impl FnOnce(virt::error::Error) -> LibvirtError {
    let what = what.into();
    move |e| LibvirtError {
        what,
        message: e.message().to_string(),
    }
}

/// A domain nestlab created (it carries nestlab's metadata namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedDomain {
    /// Domain name.
    pub name: String,
    /// The `<nestlab:profile .../>` element, as libvirt returns it.
    pub metadata: String,
    /// Whether it runs.
    pub active: bool,
}

/// A source of console bytes; `Ok(0)` is the end of the stream.
pub trait ConsoleSource: Send {
    /// Reads console bytes, blocking until some arrive or the stream ends.
    ///
    /// # Errors
    /// When the stream breaks (the domain or the daemon went away).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, LibvirtError>;
}

/// A started domain.
pub trait Guest: Send + Sync {
    /// Its name.
    fn name(&self) -> &str;
    /// Opens its serial console (do it while paused, so nothing is missed).
    ///
    /// # Errors
    /// When libvirt refuses.
    fn open_console(&self) -> Result<Box<dyn ConsoleSource>, LibvirtError>;
    /// Lets a paused domain run.
    ///
    /// # Errors
    /// When libvirt refuses.
    fn resume(&self) -> Result<(), LibvirtError>;
    /// Whether it still runs.
    fn is_active(&self) -> bool;
    /// Destroys it; succeeds when it is already gone.
    ///
    /// # Errors
    /// When it may still exist afterwards.
    fn destroy(&self) -> Result<(), LibvirtError>;
}

/// What the runner needs from a hypervisor connection.
pub trait Hypervisor: Send + Sync {
    /// Creates a transient domain from XML, paused.
    ///
    /// # Errors
    /// When libvirt refuses the XML or cannot start QEMU.
    fn start_paused(&self, xml: &str) -> Result<Arc<dyn Guest>, LibvirtError>;
    /// The domains carrying nestlab's metadata namespace.
    ///
    /// # Errors
    /// When listing fails.
    fn owned_domains(&self) -> Result<Vec<OwnedDomain>, LibvirtError>;
    /// Destroys (and undefines, if persistent) a domain, only if it carries
    /// nestlab's metadata. Returns false when it is not nestlab's.
    ///
    /// # Errors
    /// When it does not exist or libvirt refuses.
    fn remove_owned(&self, name: &str) -> Result<bool, LibvirtError>;
    /// (libvirt version, hypervisor version), as `major.minor.micro`.
    ///
    /// # Errors
    /// When the daemon does not answer.
    fn versions(&self) -> Result<(String, String), LibvirtError>;
}

/// A live connection to libvirtd.
pub struct Libvirt {
    conn: Connect,
    uri: String,
}

fn version_string(v: u32) -> String {
    format!("{}.{}.{}", v / 1_000_000, (v / 1000) % 1000, v % 1000)
}

impl Libvirt {
    /// Connects to `uri` (`qemu:///system`, `qemu:///session`, remote URIs).
    ///
    /// # Errors
    /// When the daemon cannot be reached.
    pub fn connect(uri: &str) -> Result<Libvirt, LibvirtError> {
        // libvirt prints every error to stderr by default; ours carry them.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(lerr(format!("cannot connect to {uri}")))?;
        Ok(Libvirt {
            conn,
            uri: uri.to_string(),
        })
    }

    /// The URI connected to.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn is_owned(dom: &Domain) -> Option<String> {
        // VIR_DOMAIN_METADATA_ELEMENT = 2; flags 0 = current state.
        dom.get_metadata(2, Some(METADATA_NS), 0).ok()
    }
}

struct LibvirtGuest {
    conn: Connect,
    dom: Domain,
    name: String,
    uri: String,
}

impl LibvirtGuest {
    /// Destroys the domain through a fresh connection: the first one may be
    /// dead (libvirtd restarted) while QEMU still runs.
    fn destroy_reconnecting(&self) -> Result<(), LibvirtError> {
        destroy_reconnecting(&self.uri, &self.name)
    }
}

/// Destroys `name` through a fresh connection to `uri`, if it exists and
/// carries nestlab's metadata: for when the first connection died with
/// libvirtd while QEMU may still run.
fn destroy_reconnecting(uri: &str, name: &str) -> Result<(), LibvirtError> {
    // libvirtd may be restarting: keep trying for a while.
    let mut tries = 0;
    let conn = loop {
        match Connect::open(Some(uri)) {
            Ok(c) => break c,
            Err(e) if tries >= 30 => {
                return Err(lerr(format!(
                    "cannot reconnect to {} to destroy {}",
                    uri, name
                ))(e))
            }
            Err(_) => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    };
    // A restarted libvirtd answers before it has re-attached to the
    // domains still running: "no such domain" is believed only after
    // several looks.
    let mut found = Domain::lookup_by_name(&conn, name);
    for _ in 0..10 {
        if found.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        found = Domain::lookup_by_name(&conn, name);
    }
    let result = match found {
        // Gone already.
        Err(_) => Ok(()),
        Ok(dom) if Libvirt::is_owned(&dom).is_none() => Err(LibvirtError {
            what: format!("not destroying {}", name),
            message: "it does not carry nestlab's metadata".into(),
        }),
        Ok(dom) => match dom.destroy() {
            Ok(()) => Ok(()),
            Err(_) if !dom.is_active().unwrap_or(false) => Ok(()),
            Err(e) => Err(lerr(format!("cannot destroy {}", name))(e)),
        },
    };
    let mut conn = conn;
    let _ = conn.close();
    result
}

struct LibvirtConsole {
    stream: Stream,
}

impl ConsoleSource for LibvirtConsole {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, LibvirtError> {
        self.stream.recv(buf).map_err(lerr("console stream"))
    }
}

impl Guest for LibvirtGuest {
    fn name(&self) -> &str {
        &self.name
    }
    fn open_console(&self) -> Result<Box<dyn ConsoleSource>, LibvirtError> {
        let stream = Stream::new(&self.conn, 0).map_err(lerr("cannot create a stream"))?;
        // VIR_DOMAIN_CONSOLE_FORCE = 1: take the console even if a stale
        // client holds it.
        self.dom
            .open_console(None, &stream, 1)
            .map_err(lerr(format!("cannot open the console of {}", self.name)))?;
        Ok(Box::new(LibvirtConsole { stream }))
    }
    fn resume(&self) -> Result<(), LibvirtError> {
        self.dom
            .resume()
            .map(|_| ())
            .map_err(lerr(format!("cannot resume {}", self.name)))
    }
    fn is_active(&self) -> bool {
        self.dom.is_active().unwrap_or(false)
    }
    fn destroy(&self) -> Result<(), LibvirtError> {
        match self.dom.destroy() {
            Ok(()) => Ok(()),
            // The connection died with libvirtd: try a new one.
            Err(_) if self.conn.is_alive().ok() != Some(true) => self.destroy_reconnecting(),
            // Transient domains vanish when QEMU exits: gone is done.
            Err(_) if self.dom.is_active().unwrap_or(false) => self
                .dom
                .destroy()
                .map_err(lerr(format!("cannot destroy {}", self.name))),
            Err(_) => Ok(()),
        }
    }
}

impl Hypervisor for Libvirt {
    fn start_paused(&self, xml: &str) -> Result<Arc<dyn Guest>, LibvirtError> {
        // VIR_DOMAIN_START_PAUSED = 1
        let dom = match Domain::create_xml(&self.conn, xml, 1) {
            Ok(d) => d,
            Err(e) => {
                let err = lerr("libvirt cannot start the domain")(e);
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
        let name = dom.get_name().unwrap_or_else(|_| "?".into());
        Ok(Arc::new(LibvirtGuest {
            conn: self.conn.clone(),
            dom,
            name,
            uri: self.uri.clone(),
        }))
    }

    fn owned_domains(&self) -> Result<Vec<OwnedDomain>, LibvirtError> {
        let doms = self
            .conn
            .list_all_domains(0)
            .map_err(lerr("cannot list domains"))?;
        Ok(doms
            .iter()
            .filter_map(|d| {
                let metadata = Self::is_owned(d)?;
                Some(OwnedDomain {
                    name: d.get_name().ok()?,
                    metadata,
                    active: d.is_active().unwrap_or(false),
                })
            })
            .collect())
    }

    fn remove_owned(&self, name: &str) -> Result<bool, LibvirtError> {
        let dom = Domain::lookup_by_name(&self.conn, name)
            .map_err(lerr(format!("no domain '{name}'")))?;
        if Self::is_owned(&dom).is_none() {
            return Ok(false);
        }
        if dom.is_active().unwrap_or(false) {
            dom.destroy()
                .map_err(lerr(format!("cannot destroy {name}")))?;
        }
        // A persistent definition (nestlab never makes one, but a user may
        // have defined our XML): remove it too.
        if dom.is_persistent().unwrap_or(false) {
            dom.undefine()
                .map_err(lerr(format!("cannot undefine {name}")))?;
        }
        Ok(true)
    }

    fn versions(&self) -> Result<(String, String), LibvirtError> {
        let lib = self
            .conn
            .get_lib_version()
            .map_err(lerr("cannot read the libvirt version"))?;
        let hyp = self
            .conn
            .get_hyp_version()
            .map_err(lerr("cannot read the hypervisor version"))?;
        Ok((version_string(lib), version_string(hyp)))
    }
}
