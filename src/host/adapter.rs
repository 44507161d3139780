//! The libvirt adapter: the only module that imports `virt`.
//!
//! Implements [`Host`], [`Guest`] and [`ConsoleSource`] over a libvirt
//! connection. Every call here blocks; the runner calls them on blocking
//! threads. libvirt's error codes are kept in [`HostError::code`]: only
//! "no such domain" ever counts as "already gone".
//!
//! Boot files of a remote host go into a storage pool there
//! ([`ArtifactStore::Pool`]): each artifact is a volume
//! `nestlab-<hash>-<file>`, created with its size and filled through
//! `virStorageVolUpload`; an empty volume `<name>.complete` is created
//! after the upload finished, so a half-finished upload (its uploader died)
//! is never booted. A volume that exists without its marker is being
//! uploaded by another run (waited for) or was abandoned (its size stopped
//! growing for [`UPLOAD_STALL`]: deleted and uploaded again).
//!
//! About 970 lines: every libvirt call nestlab makes (domains, consoles,
//! facts, storage pools and uploads) is here, so that no other module
//! imports `virt`.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;

use super::{
    is_local_uri, volume_name, Artifact, ArtifactStore, ConsoleSource, Guest, Host, HostError,
    HostFacts, HostView, OwnedDomain, PruneOutcome, PrunedArtifact, Staged, StoreStatus, Transfer,
    Version, COMPLETE_SUFFIX, DEFAULT_POOL, DEFAULT_POOL_DIR, VIR_ERR_NO_DOMAIN,
    VIR_ERR_NO_STORAGE_POOL, VIR_ERR_NO_STORAGE_VOL, VIR_ERR_NO_SUPPORT, VIR_ERR_OPERATION_FAILED,
    VIR_ERR_OPERATION_INVALID, VIR_ERR_STORAGE_VOL_EXIST, VOLUME_PREFIX,
};
use crate::xml::domain::METADATA_NS;

/// A volume without its completion marker whose size has not grown for
/// this long was abandoned by its uploader: it is deleted and uploaded
/// again.
pub const UPLOAD_STALL: Duration = Duration::from_secs(20);

/// Bytes per stream message of an upload (libvirt's own tools send 64 KiB;
/// a message may carry up to 256 KiB).
const UPLOAD_CHUNK: usize = 256 * 1024;

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
pub struct LibvirtHost {
    conn: Connect,
    uri: String,
    facts: OnceLock<Arc<HostFacts>>,
    store: ArtifactStore,
    /// The pool, once found or created.
    pool: Mutex<Option<StoragePool>>,
    /// Per artifact name: its path on the host once staged by this
    /// connection (the lock makes runs of this process that need the same
    /// file wait for one upload).
    staged: Mutex<HashMap<String, Arc<Mutex<Option<String>>>>>,
}

impl LibvirtHost {
    /// Connects to `uri` (`qemu:///system`, `qemu:///session`, remote URIs),
    /// keeping boot files where [`ArtifactStore::for_uri`] says.
    ///
    /// # Errors
    /// When the daemon cannot be reached.
    pub fn connect(uri: &str) -> Result<LibvirtHost, HostError> {
        LibvirtHost::connect_with(uri, ArtifactStore::for_uri(uri, None))
    }

    /// Connects to `uri`, keeping boot files in `store`.
    ///
    /// # Errors
    /// When the daemon cannot be reached.
    pub fn connect_with(uri: &str, store: ArtifactStore) -> Result<LibvirtHost, HostError> {
        // libvirt prints every error to stderr by default; ours carry them.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(herr(format!("cannot connect to {uri}")))?;
        Ok(LibvirtHost {
            conn,
            uri: uri.to_string(),
            facts: OnceLock::new(),
            store,
            pool: Mutex::new(None),
            staged: Mutex::new(HashMap::new()),
        })
    }

    /// Connects to `uri` and reads its facts, giving up after `timeout`: a
    /// daemon that hangs accepts the TCP connection and never answers, and
    /// libvirt's client then waits forever (the attempt goes on on a
    /// thread of its own, left behind).
    ///
    /// # Errors
    /// When the daemon cannot be reached, does not answer in time, or its
    /// capabilities cannot be read.
    pub fn connect_within(
        uri: &str,
        store: ArtifactStore,
        timeout: Duration,
    ) -> Result<LibvirtHost, HostError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let u = uri.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("connect {uri}"))
            .spawn(move || {
                let r = LibvirtHost::connect_with(&u, store).and_then(|l| l.facts().map(|_| l));
                let _ = tx.send(r);
            });
        if let Err(e) = spawned {
            return Err(HostError::other(
                format!("cannot connect to {uri}"),
                e.to_string(),
            ));
        }
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(_) => Err(HostError::other(
                format!("cannot connect to {uri}"),
                format!(
                    "no answer within {} s (a hung daemon, or a host that drops the connection silently)",
                    timeout.as_secs()
                ),
            )),
        }
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
        Ok(dom) if LibvirtHost::owned_metadata(&dom).is_none() => Err(HostError::other(
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

impl Host for LibvirtHost {
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

    fn store(&self) -> ArtifactStore {
        self.store.clone()
    }

    fn stage(
        &self,
        artifact: &Artifact,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Staged, HostError> {
        let ArtifactStore::Pool(name) = &self.store else {
            return Ok(Staged {
                path: artifact.path.display().to_string(),
                transfer: Transfer::Local,
            });
        };
        let slot = {
            let mut m = self
                .staged
                .lock()
                .map_err(|_| HostError::other("stage", "poisoned lock"))?;
            m.entry(artifact.name.clone()).or_default().clone()
        };
        let mut done = slot
            .lock()
            .map_err(|_| HostError::other("stage", "poisoned lock"))?;
        if let Some(path) = done.as_ref() {
            return Ok(Staged {
                path: path.clone(),
                transfer: Transfer::Present,
            });
        }
        let pool = self.pool(name)?;
        let staged = self.put(&pool, name, artifact, progress)?;
        *done = Some(staged.path.clone());
        Ok(staged)
    }

    fn store_status(&self) -> Result<StoreStatus, HostError> {
        let ArtifactStore::Pool(name) = &self.store else {
            return Ok(StoreStatus::Local);
        };
        let pool = match StoragePool::lookup_by_name(&self.conn, name) {
            Ok(p) => p,
            Err(e) => {
                return match code_of(&e) {
                    Some(VIR_ERR_NO_STORAGE_POOL) => Ok(StoreStatus::Missing {
                        name: name.clone(),
                        will_create: (name == DEFAULT_POOL).then(|| DEFAULT_POOL_DIR.to_string()),
                    }),
                    Some(VIR_ERR_NO_SUPPORT) => Ok(StoreStatus::Unusable {
                        name: name.clone(),
                        why: no_storage_driver(&self.uri).to_string(),
                    }),
                    _ => Err(herr(format!("cannot look up pool {name} on {}", self.uri))(
                        e,
                    )),
                }
            }
        };
        let (kind, path) = pool_kind_and_path(&pool, &self.uri, name)?;
        if !FILE_POOLS.contains(&kind.as_str()) {
            return Ok(StoreStatus::Unusable {
                name: name.clone(),
                why: not_a_file_pool(name, &kind),
            });
        }
        let active = pool.is_active().unwrap_or(false);
        let (mut volumes, mut bytes) = (0, 0);
        if active {
            let _ = pool.refresh(0);
            for v in pool
                .list_all_volumes(0)
                .map_err(herr(format!("cannot list the volumes of pool {name}")))?
            {
                let Ok(n) = v.get_name() else { continue };
                if n.starts_with(VOLUME_PREFIX) && !n.ends_with(COMPLETE_SUFFIX) {
                    volumes += 1;
                    bytes += v.get_info().map(|i| i.capacity).unwrap_or(0);
                }
            }
        }
        Ok(StoreStatus::Pool {
            name: name.clone(),
            kind,
            path,
            active,
            volumes,
            bytes,
        })
    }

    fn prune_artifacts(&self, keep: &[String]) -> Result<PruneOutcome, HostError> {
        let ArtifactStore::Pool(name) = &self.store else {
            return Ok(PruneOutcome::default());
        };
        let pool = match StoragePool::lookup_by_name(&self.conn, name) {
            Ok(p) => p,
            Err(e) if code_of(&e) == Some(VIR_ERR_NO_STORAGE_POOL) => {
                return Ok(PruneOutcome::default())
            }
            Err(e) => {
                return Err(herr(format!("cannot look up pool {name} on {}", self.uri))(
                    e,
                ))
            }
        };
        if !pool.is_active().unwrap_or(false) {
            return Ok(PruneOutcome::default());
        }
        let _ = pool.refresh(0);
        let keep: Vec<String> = keep.iter().map(|k| volume_name(k)).collect();
        // Paths every domain there boots from (running or defined).
        let domains = self
            .conn
            .list_all_domains(0)
            .map_err(herr("cannot list domains"))?;
        let xmls: Vec<String> = domains
            .iter()
            .filter_map(|d| d.get_xml_desc(0).ok())
            .collect();
        let vols = pool
            .list_all_volumes(0)
            .map_err(herr(format!("cannot list the volumes of pool {name}")))?;
        let mut named: HashMap<String, StorageVol> = HashMap::new();
        for v in vols {
            if let Ok(n) = v.get_name() {
                if n.starts_with(VOLUME_PREFIX) {
                    named.insert(n, v);
                }
            }
        }
        let mut out = PruneOutcome::default();
        let mut data: Vec<&String> = named
            .keys()
            .filter(|n| !n.ends_with(COMPLETE_SUFFIX))
            .collect();
        data.sort();
        for n in data {
            let vol = &named[n];
            if keep.contains(n) {
                out.kept.push(n.clone());
                continue;
            }
            let path = vol.get_path().unwrap_or_default();
            if !path.is_empty() && xmls.iter().any(|x| x.contains(&path)) {
                out.in_use.push(n.clone());
                continue;
            }
            let bytes = vol.get_info().map(|i| i.capacity).unwrap_or(0);
            // The marker first: a run looking meanwhile sees an unfinished
            // upload, not a complete volume about to vanish.
            if let Some(m) = named.get(&format!("{n}{COMPLETE_SUFFIX}")) {
                delete_volume(m, &format!("{n}{COMPLETE_SUFFIX}"))?;
            }
            delete_volume(vol, n)?;
            out.removed.push(PrunedArtifact {
                name: n.clone(),
                bytes,
            });
        }
        // Markers whose volume is gone.
        for (n, v) in &named {
            if let Some(data) = n.strip_suffix(COMPLETE_SUFFIX) {
                if !named.contains_key(data) {
                    delete_volume(v, n)?;
                }
            }
        }
        Ok(out)
    }

    fn is_alive(&self) -> bool {
        self.conn.is_alive().unwrap_or(false)
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

/// Pool types whose volumes are files QEMU can open as a kernel or an
/// initramfs.
const FILE_POOLS: &[&str] = &["dir", "fs", "netfs"];

fn no_storage_driver(uri: &str) -> HostError {
    HostError {
        op: format!("the libvirt daemon at {uri} has no storage driver"),
        code: Some(VIR_ERR_NO_SUPPORT),
        message: "install libvirt-daemon-driver-storage on that host (Debian 12: from bookworm-backports, with libvirt 11) and restart libvirtd; nestlab uploads the boot files into a storage pool there".into(),
    }
}

fn not_a_file_pool(name: &str, kind: &str) -> String {
    format!(
        "pool {name} is of type {kind}; nestlab needs a pool of type {} (its volumes are the files QEMU opens as kernel and initramfs): name another with --pool",
        FILE_POOLS.join(", ")
    )
}

/// The text between `open` and `close`, first occurrence.
fn between<'a>(xml: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = xml.find(open)? + open.len();
    let len = xml[start..].find(close)?;
    Some(&xml[start..start + len])
}

/// A pool's type (`<pool type='dir'>`) and target path.
fn pool_kind_and_path(
    pool: &StoragePool,
    uri: &str,
    name: &str,
) -> Result<(String, String), HostError> {
    let xml = pool
        .get_xml_desc(0)
        .map_err(herr(format!("cannot read pool {name} on {uri}")))?;
    let root = between(&xml, "<pool", ">").unwrap_or("");
    let kind = between(root, "type='", "'")
        .or_else(|| between(root, "type=\"", "\""))
        .unwrap_or("")
        .to_string();
    let path = between(&xml, "<path>", "</path>").unwrap_or("").to_string();
    Ok((kind, path))
}

fn vol_xml(name: &str, bytes: u64) -> String {
    format!(
        "<volume><name>{}</name><capacity unit='bytes'>{bytes}</capacity>\
         <allocation unit='bytes'>0</allocation><target><format type='raw'/>\
         <permissions><mode>0644</mode></permissions></target></volume>",
        quick_xml::escape::escape(name)
    )
}

fn delete_volume(vol: &StorageVol, name: &str) -> Result<(), HostError> {
    match vol.delete(0) {
        Ok(()) => Ok(()),
        Err(e) if code_of(&e) == Some(VIR_ERR_NO_STORAGE_VOL) => Ok(()),
        Err(e) => Err(herr(format!("cannot delete volume {name}"))(e)),
    }
}

/// How waiting for another run's upload ended.
enum Wait {
    /// Its marker appeared.
    Complete,
    /// The volume went away (its uploader failed and deleted it).
    Gone,
    /// Its size stopped growing: abandoned.
    Stalled(StorageVol),
}

impl LibvirtHost {
    /// The pool `name`, found (and started if need be) or, for the default
    /// pool, created: a `dir` pool at [`DEFAULT_POOL_DIR`], started and set
    /// to autostart.
    fn pool(&self, name: &str) -> Result<StoragePool, HostError> {
        let mut memo = self
            .pool
            .lock()
            .map_err(|_| HostError::other("pool", "poisoned lock"))?;
        if let Some(p) = memo.as_ref() {
            return Ok(p.clone());
        }
        let uri = &self.uri;
        let pool = match StoragePool::lookup_by_name(&self.conn, name) {
            Ok(p) => p,
            Err(e) => match code_of(&e) {
                Some(VIR_ERR_NO_STORAGE_POOL) if name == DEFAULT_POOL => self.define_pool(name)?,
                Some(VIR_ERR_NO_STORAGE_POOL) => {
                    return Err(HostError {
                        op: format!("no storage pool '{name}' on {uri}"),
                        code: Some(VIR_ERR_NO_STORAGE_POOL),
                        message: format!(
                            "define it there (virsh -c {uri} pool-define-as {name} dir --target DIR; pool-build {name}; pool-start {name}), or leave out --pool to use nestlab's own pool '{DEFAULT_POOL}' (created at {DEFAULT_POOL_DIR})"
                        ),
                    })
                }
                Some(VIR_ERR_NO_SUPPORT) => return Err(no_storage_driver(uri)),
                _ => return Err(herr(format!("cannot look up pool {name} on {uri}"))(e)),
            },
        };
        let (kind, _) = pool_kind_and_path(&pool, uri, name)?;
        if !FILE_POOLS.contains(&kind.as_str()) {
            return Err(HostError::other(
                format!("cannot use pool {name} on {uri}"),
                not_a_file_pool(name, &kind),
            ));
        }
        if !pool.is_active().unwrap_or(false) {
            // Its directory may be missing: build (mkdir) first.
            let _ = pool.build(0);
            if let Err(e) = pool.create(0) {
                // Another run may have started it meanwhile.
                if !pool.is_active().unwrap_or(false) {
                    return Err(herr(format!(
                        "cannot start pool {name} on {uri} (virsh -c {uri} pool-start {name} says why)"
                    ))(e));
                }
            }
        }
        // Volumes deleted behind libvirt's back must not be found.
        let _ = pool.refresh(0);
        *memo = Some(pool.clone());
        Ok(pool)
    }

    fn define_pool(&self, name: &str) -> Result<StoragePool, HostError> {
        let uri = &self.uri;
        let xml = format!(
            "<pool type='dir'><name>{name}</name><target><path>{DEFAULT_POOL_DIR}</path>\
             <permissions><mode>0755</mode></permissions></target></pool>"
        );
        let pool = match StoragePool::define_xml(&self.conn, &xml, 0) {
            Ok(p) => p,
            Err(e) => match code_of(&e) {
                // Defined meanwhile by another run.
                Some(VIR_ERR_OPERATION_FAILED) => StoragePool::lookup_by_name(&self.conn, name)
                    .map_err(herr(format!("cannot define pool {name} on {uri}")))?,
                Some(VIR_ERR_NO_SUPPORT) => return Err(no_storage_driver(uri)),
                _ => {
                    return Err(herr(format!(
                        "cannot define pool {name} at {DEFAULT_POOL_DIR} on {uri} (define one yourself and name it with --pool)"
                    ))(e))
                }
            },
        };
        let _ = pool.build(0);
        if !pool.is_active().unwrap_or(false) {
            if let Err(e) = pool.create(0) {
                if !pool.is_active().unwrap_or(false) {
                    return Err(herr(format!(
                        "pool {name} was defined at {DEFAULT_POOL_DIR} on {uri} but cannot be started"
                    ))(e));
                }
            }
        }
        let _ = pool.set_autostart(true);
        Ok(pool)
    }

    fn lookup_vol(&self, pool: &StoragePool, name: &str) -> Result<Option<StorageVol>, HostError> {
        match StorageVol::lookup_by_name(pool, name) {
            Ok(v) => Ok(Some(v)),
            Err(e) if code_of(&e) == Some(VIR_ERR_NO_STORAGE_VOL) => Ok(None),
            Err(e) => Err(herr(format!(
                "cannot look up volume {name} on {}",
                self.uri
            ))(e)),
        }
    }

    /// Makes `a` a complete volume of `pool` (see the module's docs).
    fn put(
        &self,
        pool: &StoragePool,
        pool_name: &str,
        a: &Artifact,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Staged, HostError> {
        let uri = &self.uri;
        let vol_name = volume_name(&a.name);
        let marker = format!("{vol_name}{COMPLETE_SUFFIX}");
        let size = std::fs::metadata(&a.path)
            .map_err(|e| {
                HostError::other(format!("cannot read {}", a.path.display()), e.to_string())
            })?
            .len();
        let t0 = Instant::now();
        let mut waited = false;
        for _ in 0..5 {
            if let Some(vol) = self.lookup_vol(pool, &vol_name)? {
                let complete = self.lookup_vol(pool, &marker)?;
                let capacity = vol
                    .get_info()
                    .map_err(herr(format!("cannot look at volume {vol_name} on {uri}")))?
                    .capacity;
                match complete {
                    Some(_) if capacity == size => {
                        let path = vol
                            .get_path()
                            .map_err(herr(format!("cannot read the path of {vol_name}")))?;
                        let transfer = if waited {
                            Transfer::Waited {
                                secs: t0.elapsed().as_secs_f64(),
                            }
                        } else {
                            Transfer::Present
                        };
                        return Ok(Staged { path, transfer });
                    }
                    Some(m) => {
                        // Complete, but not this file's size: upload again.
                        delete_volume(&m, &marker)?;
                        delete_volume(&vol, &vol_name)?;
                    }
                    None => match self.wait_for_upload(pool, &vol_name, &marker)? {
                        Wait::Complete => waited = true,
                        Wait::Gone => {}
                        Wait::Stalled(v) => delete_volume(&v, &vol_name)?,
                    },
                }
                continue;
            }
            let vol = match StorageVol::create_xml(pool, &vol_xml(&vol_name, size), 0) {
                Ok(v) => v,
                // Another run created it first: wait for its upload.
                Err(e) if code_of(&e) == Some(VIR_ERR_STORAGE_VOL_EXIST) => continue,
                Err(e) => {
                    return Err(herr(format!(
                    "cannot create volume {vol_name} ({size} bytes) in pool {pool_name} on {uri}"
                ))(e))
                }
            };
            let t = Instant::now();
            if let Err(e) = self.upload(&vol, &vol_name, &a.path, size, progress) {
                let _ = vol.delete(0);
                return Err(e);
            }
            let secs = t.elapsed().as_secs_f64();
            match StorageVol::create_xml(pool, &vol_xml(&marker, 0), 0) {
                Ok(_) => {}
                Err(e) if code_of(&e) == Some(VIR_ERR_STORAGE_VOL_EXIST) => {}
                Err(e) => {
                    let _ = vol.delete(0);
                    return Err(herr(format!("cannot create volume {marker} on {uri}"))(e));
                }
            }
            let path = vol
                .get_path()
                .map_err(herr(format!("cannot read the path of {vol_name}")))?;
            return Ok(Staged {
                path,
                transfer: Transfer::Uploaded { bytes: size, secs },
            });
        }
        Err(HostError::other(
            format!("cannot upload {} to pool {pool_name} on {uri}", a.name),
            "its volume kept appearing and vanishing (other nestlab runs uploading and pruning it?)",
        ))
    }

    /// Waits while another run uploads `vol_name`.
    fn wait_for_upload(
        &self,
        pool: &StoragePool,
        vol_name: &str,
        marker: &str,
    ) -> Result<Wait, HostError> {
        let mut last = None;
        let mut since = Instant::now();
        loop {
            if self.lookup_vol(pool, marker)?.is_some() {
                return Ok(Wait::Complete);
            }
            let Some(vol) = self.lookup_vol(pool, vol_name)? else {
                return Ok(Wait::Gone);
            };
            let now = vol.get_info().map(|i| i.allocation).ok();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= UPLOAD_STALL {
                return Ok(Wait::Stalled(vol));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends the file at `path` into `vol` through a stream.
    fn upload(
        &self,
        vol: &StorageVol,
        vol_name: &str,
        path: &std::path::Path,
        size: u64,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(), HostError> {
        let op = || {
            format!(
                "cannot upload {} to {vol_name} on {}",
                path.display(),
                self.uri
            )
        };
        let mut file =
            std::fs::File::open(path).map_err(|e| HostError::other(op(), e.to_string()))?;
        let stream = Stream::new(&self.conn, 0).map_err(herr(op()))?;
        vol.upload(&stream, 0, size, 0).map_err(herr(op()))?;
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        let mut sent = 0u64;
        let result = (|| {
            loop {
                let n = file
                    .read(&mut buf)
                    .map_err(|e| HostError::other(op(), e.to_string()))?;
                if n == 0 {
                    break;
                }
                let mut off = 0;
                while off < n {
                    let k = stream.send(&buf[off..n]).map_err(herr(op()))?;
                    if k == 0 {
                        return Err(HostError::other(op(), "the stream took no data"));
                    }
                    off += k;
                }
                sent += n as u64;
                progress(sent, size);
            }
            if sent != size {
                return Err(HostError::other(
                    op(),
                    format!("the file changed while it was sent ({sent} of {size} bytes)"),
                ));
            }
            Ok(())
        })();
        match result {
            Ok(()) => stream.finish().map_err(herr(op())),
            Err(e) => {
                let _ = stream.abort();
                Err(e)
            }
        }
    }
}
