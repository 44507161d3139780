//! What several commands share: printing errors, loading profiles,
//! connecting to libvirt, the tokio runtime and signals.

use std::sync::Arc;
use std::time::Duration;

use nestlab::front::wire::{CommandFile, ProfileFile, WorkloadFile};
use nestlab::guest::appliance::{Appliance, ApplianceSpec};
use nestlab::host::{check_uris, parse_uri_list, ArtifactStore, Host, LibvirtHost};
use nestlab::model::Command;
use nestlab::model::{Accel, Topology};
use nestlab::resolve;

use crate::args::{HostArgs, KernelArgs, RunArgs};
use crate::exit;

/// How long connecting to a host (and reading its capabilities) may take:
/// a daemon that hangs accepts the connection and never answers.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Prints an error with its whole source chain, once.
pub fn print_error(err: &dyn std::error::Error) {
    let mut msg = format!("error: {err}");
    let mut source = err.source();
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    eprintln!("{msg}");
}

/// Loads, validates and resolves a profile; prints the error and returns
/// [`exit::INVALID`] when it cannot.
pub fn load_topology(profile: &str) -> Result<Topology, u8> {
    load_topology_as(profile, None)
}

/// [`load_topology`] with `guest` (`--guest`) in place of the profile's
/// `[guest] kind`: what that guest kind adds (a disk) is part of the topology.
pub fn load_topology_as(
    profile: &str,
    guest: Option<nestlab::model::GuestKindId>,
) -> Result<Topology, u8> {
    let edit = |f: &mut ProfileFile| {
        if let Some(kind) = guest {
            f.guest.get_or_insert_with(Default::default).kind = Some(kind.name().to_string());
        }
    };
    let p = nestlab::front::parse::load_profile_arg_edited(profile, &edit).map_err(|e| {
        print_error(&e);
        exit::INVALID
    })?;
    resolve::resolve(&p).map_err(|e| {
        print_error(&e);
        exit::INVALID
    })
}

/// The command line's own workload: `--share`s and `-- CMD`.
pub struct CliWork<'a> {
    /// CMD and its arguments.
    pub argv: &'a [String],
    /// `--share` arguments.
    pub shares: &'a [String],
    /// `--workload-timeout`.
    pub timeout: Option<u32>,
}

/// Loads a profile for `run` or `up` with the command line's changes
/// applied before validation (so that what they add is placed like the
/// rest): `--guest`, `--skip-nested` (saying so), the `-- CMD` workload;
/// then resolves it. Errors are printed; the exit code comes back.
pub fn load_run_topology(
    profile: &str,
    args: &RunArgs,
    work: Option<&CliWork>,
) -> Result<Topology, u8> {
    let invalid = |e: &dyn std::error::Error| {
        print_error(e);
        exit::INVALID
    };
    // The command's workload is validated first on its own, so that its
    // errors name the arguments (--share ..., CMD).
    let cli = match work {
        None => None,
        Some(w) => {
            let cwd = std::env::current_dir().map_err(|e| invalid(&e))?;
            let mut c = nestlab::front::validate::cli_workload(w.argv, w.shares, &cwd, &[])
                .map_err(|e| invalid(&e))?;
            if let Some(t) = w.timeout {
                c.timeout_secs = t;
            }
            Some(c)
        }
    };
    let skipped_nested = std::cell::Cell::new(false);
    let edit = |f: &mut ProfileFile| {
        if let Some(kind) = args.guest {
            f.guest.get_or_insert_with(Default::default).kind = Some(kind.name().to_string());
        }
        if args.skip_nested && f.nested.take().is_some() {
            skipped_nested.set(true);
        }
        if let Some(c) = &cli {
            f.workload.push(WorkloadFile {
                name: c.name.clone(),
                command: match &c.command {
                    Command::Shell(s) => CommandFile::Shell(s.clone()),
                    Command::Argv(v) => CommandFile::Argv(v.clone()),
                },
                shares: c
                    .shares
                    .iter()
                    .map(|s| format!("{}:{}:{}", s.host.display(), s.guest, s.mode))
                    .collect(),
                timeout: Some(c.timeout_secs),
                environment: Default::default(),
                cpunodebind: None,
                membind: None,
                workdir: c.workdir.clone(),
            });
        }
    };
    let p =
        nestlab::front::parse::load_profile_arg_edited(profile, &edit).map_err(|e| invalid(&e))?;
    if skipped_nested.get() {
        eprintln!("nestlab: {}: nested step left out (--skip-nested)", p.name);
    }
    resolve::resolve(&p).map_err(|e| invalid(&e))
}

/// The default URI: the system daemon for root, the session one otherwise.
pub fn default_uri() -> String {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        "qemu:///system".into()
    } else {
        "qemu:///session".into()
    }
}

/// The hosts the arguments name: every `--connect`, else
/// `$NESTLAB_CONNECT` (a list), else the default URI. Prints what is wrong
/// and returns [`exit::INVALID`] for a malformed list or a URI given twice.
pub fn uris(hosts: &HostArgs) -> Result<Vec<String>, u8> {
    if !hosts.connect.is_empty() {
        return check_uris(&hosts.connect)
            .map(|_| hosts.connect.clone())
            .map_err(|e| {
                eprintln!("error: --connect: {e}");
                exit::INVALID
            });
    }
    match std::env::var("NESTLAB_CONNECT") {
        Ok(v) if !v.trim().is_empty() => parse_uri_list(&v).map_err(|e| {
            eprintln!("error: $NESTLAB_CONNECT: {e}");
            exit::INVALID
        }),
        _ => Ok(vec![default_uri()]),
    }
}

/// Connects to one host, giving up after [`CONNECT_TIMEOUT`]; boot files
/// go to `pool` when it is remote.
///
/// # Errors
/// What libvirt said.
pub fn open(uri: &str, pool: &str) -> Result<Arc<dyn Host>, nestlab::host::HostError> {
    LibvirtHost::connect_within(
        uri,
        ArtifactStore::for_uri(uri, Some(pool)),
        CONNECT_TIMEOUT,
    )
    .map(|l| Arc::new(l) as Arc<dyn Host>)
}

/// The hint printed under a connection error.
pub fn connect_hint(uri: &str) {
    if nestlab::host::is_local_uri(uri) {
        eprintln!(
            "hint: is libvirtd running? (./dev setup starts it; `nestlab doctor` checks the host)"
        );
    } else {
        eprintln!("hint: is libvirtd there reachable, and may this user talk to it? (`nestlab doctor --connect {uri}` checks the host; README: \"Hosts for a pool\")");
    }
}

/// Connects to libvirt at `uri`; prints what went wrong.
pub fn connect(uri: &str, pool: &str) -> Result<Arc<dyn Host>, u8> {
    open(uri, pool).map_err(|e| {
        print_error(&e);
        connect_hint(uri);
        exit::INFRA
    })
}

/// Builds or finds the probe appliance; prints the error and returns
/// [`exit::INFRA`] when it cannot.
pub fn build_appliance(k: &KernelArgs) -> Result<Appliance, u8> {
    let spec = ApplianceSpec {
        kernel: k.kernel.clone(),
        modules_dir: k.modules.clone(),
        ..Default::default()
    };
    nestlab::guest::appliance::build(&spec).map_err(|e| {
        print_error(&e);
        exit::INFRA
    })
}

/// What `run` and `up` need before booting anything.
pub struct Prepared {
    pub accel: Accel,
    pub uri: String,
    pub appliance: Appliance,
    pub host: Arc<dyn Host>,
}

/// The appliance the arguments ask for (`--initrd` replacing its
/// initramfs); prints what went wrong and returns its exit code.
pub fn run_appliance(args: &RunArgs) -> Result<Appliance, u8> {
    let mut appliance = build_appliance(&args.kernel)?;
    if let Some(initrd) = &args.initrd {
        if let Err(e) = std::fs::File::open(initrd) {
            eprintln!("error: --initrd {}: {e}", initrd.display());
            return Err(exit::INFRA);
        }
        appliance.initrd = initrd.clone();
    }
    Ok(appliance)
}

/// The guest kinds the topologies need: the appliance, and the Debian
/// image (built now, minutes the first time, with its progress on stderr)
/// when a profile asks for it.
pub fn guest_kinds(
    args: &RunArgs,
    topologies: &[Topology],
) -> Result<nestlab::guest::GuestKinds, u8> {
    let appliance = run_appliance(args)?;
    let wants_debian = topologies
        .iter()
        .any(|t| t.profile.guest == nestlab::model::GuestKindId::Debian);
    let debian = if wants_debian {
        let image = debian_image(&appliance)?;
        Some(nestlab::guest::debian::DebianGuest {
            image,
            appliance: appliance.clone(),
        })
    } else {
        None
    };
    Ok(nestlab::guest::GuestKinds { appliance, debian })
}

/// The Debian image for the appliance's kernel: found in the cache, or
/// built with its progress on stderr. Prints what went wrong (exit 3).
pub fn debian_image(appliance: &Appliance) -> Result<nestlab::guest::debian::DebianImage, u8> {
    let cache = appliance
        .dir
        .parent()
        .and_then(|p| p.parent())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from("/var/cache/nestlab"));
    let t0 = std::time::Instant::now();
    let tell = |line: &str| eprintln!("image: [{:>5.0} s] {line}", t0.elapsed().as_secs_f64());
    nestlab::guest::debian::image::build(&cache, &appliance.kernel_version, &tell).map_err(|e| {
        print_error(&e);
        eprintln!("hint: `nestlab doctor` says what the Debian guest needs; `nestlab image` builds it alone");
        exit::INFRA
    })
}

/// Connects to the one host `up` boots on, asks it for the host's facts,
/// decides the accelerator from them, and builds the appliance; prints what
/// went wrong and returns its exit code.
pub fn prepare(args: &RunArgs) -> Result<Prepared, u8> {
    let uris = uris(&args.hosts)?;
    let [uri] = uris.as_slice() else {
        eprintln!(
            "error: --connect: `up` starts one virtual host, on one host; {} were given",
            uris.len()
        );
        return Err(exit::INVALID);
    };
    let uri = uri.clone();
    let host = connect(&uri, &args.hosts.pool)?;
    let facts = host.facts().map_err(|e| {
        print_error(&e);
        exit::INFRA
    })?;
    let (accel, why) = facts.choose_accel(args.accel);
    eprintln!(
        "nestlab: accelerator {accel} ({why}); libvirt {} at {uri}, QEMU {}",
        facts.libvirt, facts.qemu
    );
    let appliance = run_appliance(args)?;
    Ok(Prepared {
        accel,
        uri,
        appliance,
        host,
    })
}

/// The multi-threaded runtime the runs use.
pub fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            print_error(&e);
            exit::INFRA
        })
}

/// Waits for SIGINT or SIGTERM; returns the exit code for it.
pub async fn signalled() -> u8 {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => exit::SIGINT,
        _ = term.recv() => exit::SIGTERM,
    }
}
