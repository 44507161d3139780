//! Command-line interface: clap derive, doc comments as help. The only
//! place that writes to the terminal.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use nestlab::front::parse::{load_profile_arg, SHIPPED};
use nestlab::model::Accel;
use nestlab::resolve;
use nestlab::xml::render::{self, BootSpec};

/// Exit code: success (all checks passed, or the command did what was asked).
pub const EXIT_OK: u8 = 0;
/// Exit code: a check failed.
pub const EXIT_FAIL: u8 = 1;
/// Exit code: invalid input (a profile, a capture file, an argument).
pub const EXIT_INVALID: u8 = 2;
/// Exit code: infrastructure (libvirt unreachable, boot failed, timeout).
pub const EXIT_INFRA: u8 = 3;

/// nestlab: declarative NUMA / PCIe / IOMMU virtual hosts on libvirt,
/// booted and verified from the inside.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the libvirt domain XML of a profile.
    Xml {
        /// Profile: a path to a TOML file, or the name of a shipped profile.
        profile: String,
        /// kvm (type='kvm', host-passthrough) or tcg (type='qemu', maximum).
        #[arg(long, default_value = "kvm")]
        accel: Accel,
        /// Kernel path to put in <os><kernel> (default: a placeholder).
        #[arg(long)]
        kernel: Option<String>,
        /// Initramfs path to put in <os><initrd> (default: a placeholder).
        #[arg(long)]
        initrd: Option<String>,
    },
    /// Check profiles; print nothing but errors.
    Validate {
        /// Profiles: paths or shipped names.
        #[arg(required = true)]
        profiles: Vec<String>,
    },
    /// List the shipped profiles.
    Profiles,
    /// Print what the guest of a profile must show (NUMA nodes, buses,
    /// devices, IOMMU), derived from the same topology as the XML.
    Expect {
        /// Profile: a path or a shipped name.
        profile: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Judge a capture directory (see `capture-script`) against a profile.
    /// Exit 0: at least one check ran and none failed; 1: a check failed;
    /// 2: the profile or a capture file cannot be read.
    Check {
        /// Profile: a path or a shipped name.
        profile: String,
        /// The capture directory.
        #[arg(long = "from", value_name = "DIR")]
        from: std::path::PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Count checks whose input was not captured as failures.
        #[arg(long)]
        require_all: bool,
        /// List passing and skipped checks too.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Print a POSIX sh script that writes the capture directory inside any
    /// Linux guest (`sh capture.sh DIR`), for `nestlab check --from DIR`.
    CaptureScript,
    /// Build (or find in the cache) the probe appliance: kernel + initramfs.
    Appliance {
        #[command(flatten)]
        kernel: KernelArgs,
        /// Then remove the cached appliances this one does not use and no
        /// run used in the last hour (other nestlab versions and kernels).
        #[arg(long)]
        prune: bool,
    },
    /// Boot each profile's virtual host through libvirt and verify what its
    /// guest shows. Exit 0: all passed; 1: a check failed; 2: invalid input;
    /// 3: infrastructure (libvirt unreachable, boot failed, timeout).
    Run {
        /// Profiles: paths or shipped names (default: reference).
        profiles: Vec<String>,
        #[command(flatten)]
        run: RunArgs,
        /// Keep, per profile, capture/, domain.xml, console.log and report.json here.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// Print the reports as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Write JUnit XML (one testcase per check, a suite per profile).
        #[arg(long, value_name = "FILE")]
        junit: Option<std::path::PathBuf>,
        /// Profiles to boot at once.
        #[arg(long, short = 'j', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: u32,
        /// List passing and skipped checks too.
        #[arg(short, long)]
        verbose: bool,
        /// Fail (exit 3) when a profile is skipped because this host's QEMU
        /// lacks a device it needs (igb needs QEMU >= 8.0).
        #[arg(long)]
        strict: bool,
    },
    /// Start a virtual host and leave it running with a shell on its serial
    /// console, for interactive work. Remove it with `nestlab down`.
    Up {
        /// Profile: a path or a shipped name.
        profile: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Destroy virtual hosts nestlab started (only domains carrying
    /// nestlab's metadata are ever touched).
    Down {
        /// Domain name (see `nestlab down --list`).
        name: Option<String>,
        /// Every nestlab domain.
        #[arg(long, conflicts_with = "name")]
        all: bool,
        /// Only list nestlab's domains.
        #[arg(long, conflicts_with_all = ["name", "all"])]
        list: bool,
        /// libvirt URI (default: qemu:///system as root, else qemu:///session).
        #[arg(long, short = 'c', env = "NESTLAB_CONNECT")]
        connect: Option<String>,
    },
    /// What this host can run, and what to do about what it cannot.
    Doctor {
        /// libvirt URI (default: qemu:///system as root, else qemu:///session).
        #[arg(long, short = 'c', env = "NESTLAB_CONNECT")]
        connect: Option<String>,
        #[command(flatten)]
        kernel: KernelArgs,
    },
}

/// Where the guest kernel comes from.
#[derive(clap::Args, Clone)]
pub(crate) struct KernelArgs {
    /// Guest kernel image (default: $NESTLAB_KERNEL, the host's
    /// /boot/vmlinuz-$(uname -r), else the one ./dev setup fetched).
    #[arg(long, value_name = "PATH")]
    pub(crate) kernel: Option<std::path::PathBuf>,
    /// The kernel's modules directory (/lib/modules/<version>).
    #[arg(long, value_name = "DIR")]
    pub(crate) modules: Option<std::path::PathBuf>,
}

/// Options shared by `run` and `up`.
#[derive(clap::Args, Clone)]
pub(crate) struct RunArgs {
    /// libvirt URI (default: qemu:///system as root, else qemu:///session).
    #[arg(long, short = 'c', env = "NESTLAB_CONNECT")]
    pub(crate) connect: Option<String>,
    /// auto (KVM when /dev/kvm is usable and the CPU has vmx/svm, else TCG), kvm or tcg.
    #[arg(long, default_value = "auto")]
    pub(crate) accel: String,
    /// Seconds to wait for the guest kernel to reach the probe.
    #[arg(long, default_value_t = 120)]
    pub(crate) boot_timeout: u64,
    /// Seconds to wait for the probe's captures once it started.
    #[arg(long, default_value_t = 180)]
    pub(crate) probe_timeout: u64,
    /// Boot again this many times when a phase times out or the virtual
    /// host's console goes quiet (TCG guests with many vCPUs occasionally
    /// hang: before /init, bringing CPUs online, during the nested step).
    #[arg(long, default_value_t = 1)]
    pub(crate) retries: u32,
    /// Leave out the nested step of profiles with [nested]: the topology
    /// is checked, no device is assigned, no nested guest is booted (under
    /// TCG the reference takes about 8 s instead of 25).
    #[arg(long)]
    pub(crate) skip_nested: bool,
    /// Boot this initramfs instead of the probe appliance's (advanced: it
    /// must print the probe's console protocol; used by the fault tests).
    #[arg(long, value_name = "PATH")]
    pub(crate) initrd: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) kernel: KernelArgs,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Xml {
            profile,
            accel,
            kernel,
            initrd,
        } => cmd_xml(&profile, accel, kernel, initrd),
        Command::Validate { profiles } => cmd_validate(&profiles),
        Command::Profiles => cmd_profiles(),
        Command::Expect { profile, json } => cmd_expect(&profile, json),
        Command::Check {
            profile,
            from,
            json,
            require_all,
            verbose,
        } => cmd_check(&profile, &from, json, require_all, verbose),
        Command::CaptureScript => {
            print!("{}", nestlab::guest::agent::capture_script());
            EXIT_OK
        }
        Command::Appliance { kernel, prune } => cmd_appliance(&kernel, prune),
        Command::Run {
            profiles,
            run,
            out,
            json,
            junit,
            jobs,
            verbose,
            strict,
        } => crate::run::cmd_run(profiles, &run, out, json, junit, jobs, verbose, strict),
        Command::Up { profile, run } => crate::run::cmd_up(&profile, &run),
        Command::Down {
            name,
            all,
            list,
            connect,
        } => crate::run::cmd_down(name, all, list, connect),
        Command::Doctor { connect, kernel } => crate::doctor::cmd_doctor(connect, &kernel),
    };
    ExitCode::from(code)
}

/// Prints an error with its whole source chain, once.
pub(crate) fn print_error(err: &dyn std::error::Error) {
    let mut msg = format!("error: {err}");
    let mut source = err.source();
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    eprintln!("{msg}");
}

fn cmd_xml(profile: &str, accel: Accel, kernel: Option<String>, initrd: Option<String>) -> u8 {
    let t = match load_topology(profile) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mut boot = BootSpec::placeholder();
    if let Some(k) = kernel {
        boot.kernel = k;
    }
    if let Some(i) = initrd {
        boot.initrd = i;
    }
    match render::render(&t, accel, &boot).to_xml() {
        Ok(xml) => {
            let _ = std::io::stdout().write_all(xml.as_bytes());
            EXIT_OK
        }
        Err(e) => {
            print_error(&e);
            EXIT_INVALID
        }
    }
}

fn cmd_validate(profiles: &[String]) -> u8 {
    let mut code = EXIT_OK;
    for p in profiles {
        if load_topology(p).is_err() {
            code = EXIT_INVALID;
        }
    }
    code
}

/// Loads a profile for `run` or `up`, without its nested step under
/// `--skip-nested` (saying so).
pub(crate) fn load_run_topology(
    profile: &str,
    args: &RunArgs,
) -> Result<nestlab::model::Topology, u8> {
    let mut t = load_topology(profile)?;
    if args.skip_nested && !t.profile.nested.is_empty() {
        eprintln!(
            "nestlab: {}: nested step left out (--skip-nested)",
            t.profile.name
        );
        t.profile.nested.clear();
    }
    Ok(t)
}

/// Loads, validates and resolves a profile; prints the error and returns
/// [`EXIT_INVALID`] when it cannot.
pub(crate) fn load_topology(profile: &str) -> Result<nestlab::model::Topology, u8> {
    let p = load_profile_arg(profile).map_err(|e| {
        print_error(&e);
        EXIT_INVALID
    })?;
    resolve::resolve(&p).map_err(|e| {
        print_error(&e);
        EXIT_INVALID
    })
}

fn cmd_profiles() -> u8 {
    for (name, text) in SHIPPED {
        let desc = load_profile_arg(name)
            .ok()
            .and_then(|p| p.description)
            .unwrap_or_default();
        let _ = text;
        println!("{name:<12} {desc}");
    }
    EXIT_OK
}

fn cmd_appliance(k: &KernelArgs, prune: bool) -> u8 {
    match build_appliance(k) {
        Ok(a) if prune => {
            let mut keep = vec![a.dir.as_path()];
            if let Some(n) = &a.nested {
                keep.push(n.dir.as_path());
            }
            let Some(cache) = a.dir.parent().and_then(|p| p.parent()) else {
                return EXIT_OK;
            };
            match nestlab::guest::appliance::prune(
                cache,
                &keep,
                nestlab::guest::appliance::PRUNE_MIN_AGE,
            ) {
                Ok(removed) => {
                    for r in &removed {
                        println!("removed {} ({} MiB)", r.dir.display(), r.bytes >> 20);
                    }
                    let total: u64 = removed.iter().map(|r| r.bytes).sum();
                    println!(
                        "pruned {} cache entries, {} MiB; kept {}",
                        removed.len(),
                        total >> 20,
                        keep.iter()
                            .map(|k| k.display().to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                    EXIT_OK
                }
                Err(e) => {
                    print_error(&e);
                    EXIT_INFRA
                }
            }
        }
        Ok(a) => {
            println!("kernel  {}", a.kernel.display());
            println!("initrd  {}", a.initrd.display());
            println!(
                "version {} ({} KiB initramfs, {})",
                a.kernel_version,
                a.initrd_size / 1024,
                if a.cached { "cached" } else { "built" }
            );
            println!("modules {}", a.modules.join(" "));
            if !a.missing_modules.is_empty() {
                println!(
                    "missing {} (this kernel does not ship them)",
                    a.missing_modules.join(" ")
                );
            }
            EXIT_OK
        }
        Err(code) => code,
    }
}

/// Builds or finds the probe appliance; prints the error and returns
/// [`EXIT_INFRA`] when it cannot.
pub(crate) fn build_appliance(k: &KernelArgs) -> Result<nestlab::guest::appliance::Appliance, u8> {
    let spec = nestlab::guest::appliance::ApplianceSpec {
        kernel: k.kernel.clone(),
        modules_dir: k.modules.clone(),
        ..Default::default()
    };
    nestlab::guest::appliance::build(&spec).map_err(|e| {
        print_error(&e);
        EXIT_INFRA
    })
}

fn cmd_expect(profile: &str, json: bool) -> u8 {
    let t = match load_topology(profile) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let e = nestlab::expect::expect(&t);
    if json {
        println!("{}", serde_json::to_string_pretty(&e).unwrap_or_default());
        return EXIT_OK;
    }
    println!("profile {}", e.profile);
    for (n, row) in e.nodes.iter().zip(&e.distances) {
        let d = row
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "  node {}: CPUs {:<8} memory {:<12} distances {d}",
            n.id,
            n.cpus.to_string(),
            n.memory.to_string()
        );
    }
    for x in &e.expanders {
        println!(
            "  expander: root bus [0000:{}] (busNr {}) on node {}, pxb-pcie [{}] at {}",
            x.bus,
            x.bus.0,
            x.node,
            x.pci_id,
            x.pxb.short()
        );
    }
    for d in &e.devices {
        let node = d
            .node
            .map(|n| format!("node {n}"))
            .unwrap_or_else(|| "no node".into());
        let kind = match d.kind {
            nestlab::expect::DeviceKind::RootPort => "root port".to_string(),
            nestlab::expect::DeviceKind::Nic(m) => format!("{} {m}", d.id),
            nestlab::expect::DeviceKind::Vf => format!("{} VF", d.id),
        };
        let vfs = if d.vfs > 0 {
            format!(", {} VFs", d.vfs)
        } else {
            String::new()
        };
        println!(
            "  {}  [{}]  {:<16} {node}{vfs}",
            d.bdf.short(),
            d.pci_id,
            kind
        );
    }
    println!(
        "  iommu: {}",
        if e.iommu {
            "active; every device behind a root port alone in its IOMMU group"
        } else {
            "none"
        }
    );
    println!(
        "  /dev/kvm: {}",
        if e.kvm { "present" } else { "not required" }
    );
    EXIT_OK
}

fn cmd_check(
    profile: &str,
    from: &std::path::Path,
    json: bool,
    require_all: bool,
    verbose: bool,
) -> u8 {
    let t = match load_topology(profile) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let observed = match nestlab::observe::Observed::from_dir(from) {
        Ok(o) => o,
        Err(e) => {
            print_error(&e);
            return EXIT_INVALID;
        }
    };
    let checks = nestlab::verify::verify(&nestlab::expect::expect(&t), &observed);
    let report = nestlab::report::Report::from_checks(&t.profile.name, checks, require_all);
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_human(verbose));
    }
    match report.verdict {
        nestlab::report::Verdict::Pass => EXIT_OK,
        _ => EXIT_FAIL,
    }
}
