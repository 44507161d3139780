//! One boot: start the domain paused, open its console, resume it, read
//! until the agent is done, and destroy it on every path.
//!
//! The phase logic (what the console's output means, when a phase times
//! out) is [`Watch`]'s; this module only moves bytes and calls the host.
//! The domain is destroyed on every path: success (in the background, the
//! verdict does not wait for it), failure, timeout, an error of ours, a
//! panic (a drop guard), and cancellation (the run's future dropped on
//! Ctrl-C / SIGTERM, also while libvirt is still starting the domain).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::phase::{Step, Watch};
use super::{BootError, Progress, RunOptions};
use crate::capture::CaptureSet;
use crate::guest::agent::Mode;
use crate::guest::protocol::{ConsoleEvent, ConsoleReader, Nonce};
use crate::host::{ConsoleStream, Guest, Host, HostError, HostView};

/// How often a console stream that ended while the domain still runs is
/// reopened before the guest is called dead (libvirt was seen to drop one
/// under load, 8 guests on 2 cores).
pub const MAX_CONSOLE_REOPENS: u32 = 5;

/// When one boot's phases ended.
#[derive(Debug, Clone)]
pub(crate) struct BootTimes {
    /// When the domain's start was asked for.
    pub create: Instant,
    pub start: f64,
    pub boot: f64,
    pub probe: f64,
    /// When the end marker came.
    pub done: Instant,
}

/// A boot that reached the end of its agent.
pub(crate) struct Booted {
    pub captured: CaptureSet,
    /// The host's view of the domain, read after the agent's end and before
    /// the destroy, when it was asked for.
    pub host: Option<HostView>,
    pub teardown: Teardown,
    pub times: BootTimes,
}

/// A destroy in flight: the verdict is printed while libvirt tears the
/// domain down (at least 200 ms: it polls for QEMU's exit every 200 ms).
pub struct Teardown(Option<tokio::task::JoinHandle<Result<(), HostError>>>);

impl Teardown {
    /// Nothing to tear down (shell mode leaves the domain running).
    pub fn none() -> Teardown {
        Teardown(None)
    }

    /// Waits for the destroy to finish.
    ///
    /// # Errors
    /// When the domain may still exist.
    pub async fn finish(self) -> Result<(), HostError> {
        match self.0 {
            Some(h) => h
                .await
                .unwrap_or_else(|e| Err(HostError::other("destroy", e.to_string()))),
            None => Ok(()),
        }
    }
}

/// Destroys the domain when dropped, unless [`DomainGuard::destroy`] or
/// [`DomainGuard::disarm`] ran.
pub(crate) struct DomainGuard {
    guest: Option<Arc<dyn Guest>>,
}

impl DomainGuard {
    /// Starts the destroy on a blocking thread; it runs to its end even if
    /// the returned [`Teardown`] is dropped (cancellation).
    fn start_destroy(&mut self) -> Teardown {
        Teardown(
            self.guest
                .take()
                .map(|g| tokio::task::spawn_blocking(move || g.destroy())),
        )
    }

    async fn destroy(&mut self) -> Result<(), HostError> {
        self.start_destroy().finish().await
    }

    /// Leaves the domain running (shell mode).
    fn disarm(&mut self) {
        self.guest = None;
    }
}

impl Drop for DomainGuard {
    fn drop(&mut self) {
        if let Some(g) = self.guest.take() {
            let _ = g.destroy();
        }
    }
}

/// Runs a blocking host call off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HostError> + Send + 'static,
) -> Result<T, BootError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BootError::Internal(e.to_string()))?
        .map_err(BootError::Host)
}

fn tail_text(reader: &ConsoleReader) -> String {
    let lines = reader.tail(15);
    if lines.is_empty() {
        return "\n  (the console printed nothing)".into();
    }
    let mut s = String::from("\n  last console lines:");
    for l in lines {
        s.push_str("\n  | ");
        s.push_str(&l);
    }
    s
}

pub(crate) fn write_file(path: &Path, data: &[u8]) -> Result<(), BootError> {
    fs::write(path, data).map_err(|source| BootError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// What ended the reading loop.
enum Ended {
    Finished,
    Failed(BootError),
}

/// Called at the agent's `gate` with what it printed so far; says whether
/// the workloads run (and writes the word where the agent reads it).
pub(crate) type GateKeeper<'a> = &'a (dyn Fn(&CaptureSet) -> Result<(), BootError> + Sync);

/// Boots the domain `xml` once and reads its console until the agent is
/// done; writes `domain.xml` and `console.log` into `opts.dir`. With
/// `host_view`, reads where the host placed the domain (libvirt's live XML,
/// QEMU's threads) while it still runs: after the agent's end marker, before
/// the destroy (the appliance lingers until then).
pub(crate) async fn boot_once(
    host: Arc<dyn Host>,
    xml: String,
    nonce: &Nonce,
    opts: &RunOptions,
    host_view: bool,
    progress: &(dyn Fn(Progress) + Sync),
    gate: Option<GateKeeper<'_>>,
) -> Result<Booted, BootError> {
    let create = Instant::now();
    write_file(&opts.dir.join("domain.xml"), xml.as_bytes())?;
    let log_path = opts.dir.join("console.log");
    let mut log = fs::File::create(&log_path).map_err(|source| BootError::Io {
        path: log_path.clone(),
        source,
    })?;

    // The guard is made on the blocking thread: if this future is dropped
    // (Ctrl-C) while libvirt is still starting the domain, the guard is
    // dropped when the start returns, and destroys it.
    let h = host.clone();
    let mut guard = tokio::task::spawn_blocking(move || {
        h.start_paused(&xml).map(|g| DomainGuard { guest: Some(g) })
    })
    .await
    .map_err(|e| BootError::Internal(e.to_string()))?
    .map_err(BootError::Host)?;
    let Some(guest) = guard.guest.clone() else {
        return Err(BootError::Internal("the domain guard is empty".into()));
    };
    progress(Progress::Started {
        domain: guest.name().to_string(),
    });

    let result = read_console(&guest, nonce, opts, progress, &mut log, create, gate).await;
    let _ = log.flush();
    let (reader, times) = match result {
        Ok(r) => r,
        Err(e) => {
            // Both matter: why the run ended, and that its domain may
            // still run (the daemon died and did not come back in time).
            if let Err(d) = guard.destroy().await {
                return Err(BootError::Abandoned {
                    cause: Box::new(e),
                    destroy: d,
                });
            }
            return Err(e);
        }
    };
    let view = if host_view && opts.mode == Mode::Probe {
        let g = guest.clone();
        match blocking(move || g.host_view()).await {
            Ok(v) => Some(v),
            Err(e) => {
                guard.destroy().await?;
                return Err(e);
            }
        }
    } else {
        None
    };
    let teardown = if opts.mode == Mode::Shell {
        guard.disarm();
        Teardown::none()
    } else {
        guard.start_destroy()
    };
    let mut reader = reader;
    match reader.finish() {
        Ok(captured) => Ok(Booted {
            captured,
            host: view,
            teardown,
            times,
        }),
        Err(e) => {
            teardown.finish().await?;
            Err(e.into())
        }
    }
}

async fn open_stream(guest: &Arc<dyn Guest>) -> Result<ConsoleStream, BootError> {
    let g = guest.clone();
    let src = blocking(move || g.open_console()).await?;
    Ok(src.into_stream())
}

/// Opens the console, resumes the domain and reads until the agent is done.
async fn read_console(
    guest: &Arc<dyn Guest>,
    nonce: &Nonce,
    opts: &RunOptions,
    progress: &(dyn Fn(Progress) + Sync),
    log: &mut fs::File,
    create: Instant,
    gate: Option<GateKeeper<'_>>,
) -> Result<(ConsoleReader, BootTimes), BootError> {
    let mut rx = open_stream(guest).await?;
    let g = guest.clone();
    blocking(move || g.resume()).await?;
    let resumed = Instant::now();
    let mut init_at: Option<Instant> = None;
    let mut reader = ConsoleReader::new(nonce);
    let mut watch = Watch::start(opts.timeouts, opts.mode, tokio::time::Instant::now());
    let mut reopened = 0;
    let ended = loop {
        let chunk = tokio::time::timeout_at(watch.deadline(), rx.recv()).await;
        let bytes = match chunk {
            Err(_) => {
                let x = watch.expired();
                break Ended::Failed(BootError::Timeout {
                    phase: x.phase,
                    secs: x.secs,
                    what: x.what,
                    tail: tail_text(&reader),
                });
            }
            Ok(Some(Ok(b))) => b,
            Ok(Some(Err(e))) => {
                break Ended::Failed(BootError::Died {
                    why: e.to_string(),
                    tail: tail_text(&reader),
                })
            }
            // The stream ended. With the domain still running, libvirt
            // dropped it: reopen it rather than call the guest dead.
            Ok(None) => {
                let g = guest.clone();
                let why = match blocking(move || g.is_active()).await {
                    Ok(true) if reopened < MAX_CONSOLE_REOPENS => match open_stream(guest).await {
                        Ok(s) => {
                            rx = s;
                            reopened += 1;
                            continue;
                        }
                        Err(e) => {
                            // Gone meanwhile: the stream's end is the guest's end.
                            let g = guest.clone();
                            match blocking(move || g.is_active()).await {
                                Ok(false) => "QEMU exited or the domain was destroyed".to_string(),
                                _ => format!("the console could not be reopened: {e}"),
                            }
                        }
                    },
                    Ok(true) => format!(
                        "the console stream closed {} times while the domain kept running",
                        reopened + 1
                    ),
                    Ok(false) => "QEMU exited or the domain was destroyed".to_string(),
                    Err(e) => {
                        format!("the console stream closed and the domain cannot be looked at: {e}")
                    }
                };
                break Ended::Failed(BootError::Died {
                    why,
                    tail: tail_text(&reader),
                });
            }
        };
        let _ = log.write_all(&bytes);
        let now = tokio::time::Instant::now();
        watch.heard(now);
        let mut finished = false;
        for ev in reader.feed(&bytes) {
            match watch.event(&ev, now) {
                Step::Finished => finished = true,
                Step::Panicked(line) => {
                    return Err(BootError::Panic {
                        line,
                        tail: tail_text(&reader),
                    })
                }
                Step::Continue => {}
            }
            match ev {
                ConsoleEvent::InitStarted => {
                    init_at = Some(Instant::now());
                    progress(Progress::KernelUp {
                        secs: create.elapsed().as_secs_f64(),
                    });
                }
                ConsoleEvent::FileDone(f) => progress(Progress::Captured { file: f }),
                ConsoleEvent::Gate => match gate {
                    Some(g) => g(reader.captured())?,
                    None => {
                        return Err(BootError::Internal(
                            "the agent waits at the gate, but this run has no workloads".into(),
                        ))
                    }
                },
                ConsoleEvent::Output { workload, line } => {
                    progress(Progress::Output { workload, line })
                }
                ConsoleEvent::ShellReady if opts.mode == Mode::Shell => {
                    progress(Progress::ShellReady {
                        domain: guest.name().to_string(),
                    })
                }
                _ => {}
            }
        }
        if finished {
            break Ended::Finished;
        }
    };
    match ended {
        Ended::Failed(e) => Err(e),
        Ended::Finished => {
            let done = Instant::now();
            let init_at = init_at.unwrap_or(resumed);
            Ok((
                reader,
                BootTimes {
                    create,
                    start: resumed.duration_since(create).as_secs_f64(),
                    boot: init_at.duration_since(resumed).as_secs_f64(),
                    probe: done.duration_since(init_at).as_secs_f64(),
                    done,
                },
            ))
        }
    }
}
