//! A scripted fake host for the runner's tests: each domain start plays the
//! next [`Script`] (what its console prints and when, whether it dies, how
//! destroy goes), and everything the runner asked for is logged, so tests
//! can check that every domain was destroyed. The console is played by a
//! tokio task with tokio's clock, so tests run with a paused clock: a
//! 120 s boot timeout takes no time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    Artifact, ArtifactStore, ConsoleSource, ConsoleStream, Guest, Host, HostError, HostFacts,
    HostView, OwnedDomain, PruneOutcome, Staged, StoreStatus, Transfer, Version, VIR_ERR_NO_DOMAIN,
};

/// One thing a fake console does.
#[derive(Debug, Clone)]
pub enum Say {
    /// Prints this text, `{nonce}` replaced by the boot's nonce.
    Text(String),
    /// Waits (tokio time).
    Wait(Duration),
    /// Ends the stream (the domain may still run: see [`Script::alive`]).
    End,
    /// The stream breaks with this error.
    Fail(HostError),
    /// Prints nothing more, ever.
    Hang,
    /// The host's daemon dies: this stream breaks, and every later call
    /// on the host (starts, looks, destroys) fails.
    KillHost,
}

/// What one domain start does.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// The start fails with this.
    pub start_error: Option<HostError>,
    /// One list per console opening, in order; an opening beyond them fails.
    pub consoles: Vec<Vec<Say>>,
    /// Whether the domain still runs when its console ended (until destroyed).
    pub alive: bool,
    /// `is_active` fails with this (the daemon went away).
    pub active_error: Option<HostError>,
    /// The destroy fails with this.
    pub destroy_error: Option<HostError>,
    /// The start blocks until this many milliseconds passed (real time),
    /// after telling [`FakeHost::starting`].
    pub start_block_ms: u64,
    /// What [`Guest::host_view`] answers; `None`: what a local libvirt
    /// would show for the started XML ([`honoured`]).
    pub host_view: Option<Result<HostView, HostError>>,
}

/// The host's view of a domain started from `xml` on a 2-CPU, 1-node host
/// that honours its `<cputune>` and `<numatune>`, as a local libvirt shows
/// it: the live XML is the XML, and QEMU's threads (two emulator threads,
/// one per vCPU, named as QEMU names them under TCG) are allowed where the
/// pins and the strict memory policy say.
pub fn honoured(xml: &str) -> HostView {
    let dom = crate::xml::domain::Domain::from_xml(xml).ok();
    let tune = dom.as_ref().and_then(|d| d.cputune.as_ref());
    let pin = |v: u32| {
        tune.and_then(|t| t.vcpupins.iter().find(|p| p.vcpu == v))
            .map(|p| p.cpuset.clone())
            .unwrap_or_else(|| "0-1".into())
    };
    let emulator = tune
        .and_then(|t| t.emulatorpin.as_ref())
        .map(|e| e.cpuset.clone())
        .unwrap_or_else(|| "0-1".into());
    let mems = dom
        .as_ref()
        .and_then(|d| d.numatune.as_ref())
        .and_then(|n| n.memory.as_ref())
        .map(|m| m.nodeset.clone())
        .unwrap_or_else(|| "0".into());
    let vcpus = dom.as_ref().map_or(1, |d| d.vcpu.count);
    let pid = 4242;
    let mut threads = vec![
        (pid, "qemu-system-x86".to_string(), emulator.clone()),
        (pid + 1, "call_rcu".to_string(), emulator),
    ];
    for v in 0..vcpus {
        threads.push((pid + 2 + v, format!("CPU {v}/TCG"), pin(v)));
    }
    let mut text = String::new();
    for (tid, name, cpus) in threads {
        for (field, value) in [
            ("Name", name.as_str()),
            ("Cpus_allowed_list", cpus.as_str()),
            ("Mems_allowed_list", mems.as_str()),
        ] {
            text.push_str(&format!(
                "/proc/{pid}/task/{tid}/status:{field}:\t{value}\n"
            ));
        }
    }
    HostView {
        domain_xml: xml.to_string(),
        threads: Some(text),
    }
}

/// A console that prints the given lines with the nonce filled in.
pub fn console(lines: impl IntoIterator<Item = Say>) -> Vec<Say> {
    lines.into_iter().collect()
}

struct State {
    scripts: VecDeque<Script>,
    log: Vec<String>,
    started: u32,
    /// The daemon died ([`Say::KillHost`]).
    dead: bool,
    /// Artifact names staged so far.
    staged: Vec<String>,
}

/// The fake host.
pub struct FakeHost {
    uri: String,
    facts: Arc<HostFacts>,
    state: Arc<Mutex<State>>,
    /// Told the domain's name when a start begins (cancellation tests).
    pub starting: tokio::sync::watch::Sender<Option<String>>,
}

fn dead_error(op: &str) -> HostError {
    HostError {
        op: op.to_string(),
        code: Some(38),
        message: "Cannot recv data: Connection reset by peer".into(),
    }
}

impl FakeHost {
    /// A host like this project's CI machines (TCG, QEMU `qemu`), playing
    /// `scripts` in order.
    pub fn new(qemu: Version, scripts: impl IntoIterator<Item = Script>) -> Arc<FakeHost> {
        FakeHost::at("fake:///", qemu, scripts)
    }

    /// The same at `uri` (a URI with a host part uploads its boot files:
    /// [`ArtifactStore::for_uri`]).
    pub fn at(
        uri: &str,
        qemu: Version,
        scripts: impl IntoIterator<Item = Script>,
    ) -> Arc<FakeHost> {
        let xml = include_str!("../../tests/fixtures/observe/capabilities/ci-host.xml");
        let facts = HostFacts::from_capabilities(uri, Version(11, 3, 0), qemu, xml)
            .expect("the fixture parses");
        Arc::new(FakeHost {
            uri: uri.to_string(),
            facts: Arc::new(facts),
            state: Arc::new(Mutex::new(State {
                scripts: scripts.into_iter().collect(),
                log: Vec::new(),
                started: 0,
                dead: false,
                staged: Vec::new(),
            })),
            starting: tokio::sync::watch::channel(None).0,
        })
    }

    fn dead(&self) -> bool {
        self.state.lock().map(|s| s.dead).unwrap_or(true)
    }

    /// Everything asked for, in order: `start NAME`, `console NAME`,
    /// `resume NAME`, `destroy NAME`, ...
    pub fn log(&self) -> Vec<String> {
        self.state.lock().map(|s| s.log.clone()).unwrap_or_default()
    }

    /// The log entries starting with `what`.
    pub fn count(&self, what: &str) -> usize {
        self.log().iter().filter(|l| l.starts_with(what)).count()
    }

    /// Domains started and not destroyed.
    pub fn leaked(&self) -> Vec<String> {
        let log = self.log();
        log.iter()
            .filter_map(|l| l.strip_prefix("start "))
            .filter(|n| !log.contains(&format!("destroy {n}")))
            .map(str::to_string)
            .collect()
    }
}

fn push(state: &Arc<Mutex<State>>, line: String) {
    if let Ok(mut s) = state.lock() {
        s.log.push(line);
    }
}

struct FakeGuest {
    name: String,
    xml: String,
    nonce: String,
    script: Mutex<Script>,
    destroyed: Mutex<bool>,
    state: Arc<Mutex<State>>,
}

struct FakeConsole {
    says: Vec<Say>,
    nonce: String,
    state: Arc<Mutex<State>>,
}

impl ConsoleSource for FakeConsole {
    fn read(&mut self, _buf: &mut [u8]) -> Result<usize, HostError> {
        Err(HostError::other("fake console", "read through into_stream"))
    }

    fn into_stream(self: Box<Self>) -> ConsoleStream {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            for say in self.says {
                match say {
                    Say::Text(t) => {
                        let t = t.replace("{nonce}", &self.nonce);
                        if tx.send(Ok(t.into_bytes())).await.is_err() {
                            return;
                        }
                    }
                    Say::Wait(d) => tokio::time::sleep(d).await,
                    Say::End => return,
                    Say::Fail(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Say::Hang => {
                        tx.closed().await;
                        return;
                    }
                    Say::KillHost => {
                        if let Ok(mut s) = self.state.lock() {
                            s.dead = true;
                            s.log.push("host-died".into());
                        }
                        let _ = tx.send(Err(dead_error("console stream"))).await;
                        return;
                    }
                }
            }
            // Out of script: hang like a guest that prints nothing more.
            tx.closed().await;
        });
        rx
    }
}

impl Guest for FakeGuest {
    fn name(&self) -> &str {
        &self.name
    }

    fn open_console(&self) -> Result<Box<dyn ConsoleSource>, HostError> {
        push(&self.state, format!("console {}", self.name));
        let mut s = self
            .script
            .lock()
            .map_err(|_| HostError::other("fake", "poisoned"))?;
        if s.consoles.is_empty() {
            return Err(HostError::other(
                format!("cannot open the console of {}", self.name),
                "no console left in the script",
            ));
        }
        Ok(Box::new(FakeConsole {
            says: s.consoles.remove(0),
            nonce: self.nonce.clone(),
            state: self.state.clone(),
        }))
    }

    fn resume(&self) -> Result<(), HostError> {
        push(&self.state, format!("resume {}", self.name));
        Ok(())
    }

    fn is_active(&self) -> Result<bool, HostError> {
        if self.state.lock().map(|s| s.dead).unwrap_or(true) {
            return Err(dead_error(&format!("cannot look at {}", self.name)));
        }
        if *self
            .destroyed
            .lock()
            .map_err(|_| HostError::other("fake", "poisoned"))?
        {
            return Ok(false);
        }
        let s = self
            .script
            .lock()
            .map_err(|_| HostError::other("fake", "poisoned"))?;
        match &s.active_error {
            Some(e) => Err(e.clone()),
            None => Ok(s.alive),
        }
    }

    fn host_view(&self) -> Result<HostView, HostError> {
        push(&self.state, format!("host-view {}", self.name));
        let s = self
            .script
            .lock()
            .map_err(|_| HostError::other("fake", "poisoned"))?;
        match &s.host_view {
            Some(v) => v.clone(),
            None => Ok(honoured(&self.xml)),
        }
    }

    fn destroy(&self) -> Result<(), HostError> {
        let s = self
            .script
            .lock()
            .map_err(|_| HostError::other("fake", "poisoned"))?;
        if let Some(e) = &s.destroy_error {
            push(&self.state, format!("destroy-failed {}", self.name));
            return Err(e.clone());
        }
        if self.state.lock().map(|s| s.dead).unwrap_or(true) {
            push(&self.state, format!("destroy-failed {}", self.name));
            return Err(dead_error(&format!(
                "cannot reconnect to destroy {}",
                self.name
            )));
        }
        push(&self.state, format!("destroy {}", self.name));
        if let Ok(mut d) = self.destroyed.lock() {
            *d = true;
        }
        Ok(())
    }
}

impl Host for FakeHost {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn facts(&self) -> Result<Arc<HostFacts>, HostError> {
        Ok(self.facts.clone())
    }

    fn domain_caps(
        &self,
        virttype: &str,
    ) -> Result<crate::observe::domcaps::DomainCaps, HostError> {
        let xml = match virttype {
            "kvm" => include_str!("../../tests/fixtures/observe/domcaps/ci-host-kvm.xml"),
            _ => include_str!("../../tests/fixtures/observe/domcaps/ci-host-qemu.xml"),
        };
        crate::observe::domcaps::parse(xml).map_err(|e| HostError::other("fake", e.to_string()))
    }

    fn store(&self) -> ArtifactStore {
        ArtifactStore::for_uri(&self.uri, None)
    }

    /// The first staging of a name on a remote-looking URI "uploads" 1000
    /// bytes (telling `progress` twice); later ones find it present.
    fn stage(
        &self,
        artifact: &Artifact,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Staged, HostError> {
        if self.dead() {
            return Err(dead_error("cannot stage"));
        }
        let path = format!("/staged/{}", artifact.name);
        if self.store() == ArtifactStore::Local {
            return Ok(Staged {
                path,
                transfer: Transfer::Local,
            });
        }
        let mut s = self
            .state
            .lock()
            .map_err(|_| HostError::other("fake", "poisoned"))?;
        if s.staged.contains(&artifact.name) {
            return Ok(Staged {
                path,
                transfer: Transfer::Present,
            });
        }
        s.staged.push(artifact.name.clone());
        s.log.push(format!("upload {}", artifact.name));
        progress(500, 1000);
        progress(1000, 1000);
        Ok(Staged {
            path,
            transfer: Transfer::Uploaded {
                bytes: 1000,
                secs: 0.01,
            },
        })
    }

    fn store_status(&self) -> Result<StoreStatus, HostError> {
        Ok(StoreStatus::Local)
    }

    fn prune_artifacts(&self, _keep: &[String]) -> Result<PruneOutcome, HostError> {
        Ok(PruneOutcome::default())
    }

    fn is_alive(&self) -> bool {
        !self.dead()
    }

    fn start_paused(&self, xml: &str) -> Result<Arc<dyn Guest>, HostError> {
        if self.dead() {
            return Err(dead_error("libvirt cannot start the domain"));
        }
        let dom = crate::xml::domain::Domain::from_xml(xml)
            .map_err(|e| HostError::other("fake: the XML does not parse", e.to_string()))?;
        let nonce = dom
            .os
            .cmdline
            .split_whitespace()
            .find_map(|a| a.strip_prefix("nestlab.nonce="))
            .unwrap_or("")
            .to_string();
        let script = {
            let mut s = self
                .state
                .lock()
                .map_err(|_| HostError::other("fake", "poisoned"))?;
            s.started += 1;
            s.scripts.pop_front().unwrap_or_default()
        };
        if let Some(e) = script.start_error.clone() {
            push(&self.state, format!("start-failed {}", dom.name));
            return Err(e);
        }
        let _ = self.starting.send(Some(dom.name.clone()));
        if script.start_block_ms > 0 {
            std::thread::sleep(Duration::from_millis(script.start_block_ms));
        }
        push(&self.state, format!("start {}", dom.name));
        Ok(Arc::new(FakeGuest {
            name: dom.name,
            xml: xml.to_string(),
            nonce,
            script: Mutex::new(script),
            destroyed: Mutex::new(false),
            state: self.state.clone(),
        }))
    }

    fn owned_domains(&self) -> Result<Vec<OwnedDomain>, HostError> {
        Ok(self
            .leaked()
            .into_iter()
            .map(|name| OwnedDomain {
                name,
                metadata: String::new(),
                active: true,
            })
            .collect())
    }

    fn remove_owned(&self, name: &str) -> Result<bool, HostError> {
        if self.leaked().iter().any(|n| n == name) {
            push(&self.state, format!("destroy {name}"));
            Ok(true)
        } else {
            Err(HostError {
                op: format!("no domain '{name}'"),
                code: Some(VIR_ERR_NO_DOMAIN),
                message: "Domain not found".into(),
            })
        }
    }
}
