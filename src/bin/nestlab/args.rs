//! The command line, as clap derives it; doc comments are the help.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use nestlab::model::{Accel, AccelChoice};

/// nestlab: declarative NUMA / PCIe / IOMMU virtual hosts on libvirt,
/// booted and verified from the inside.
#[derive(Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print the libvirt domain XML of a profile.
    Xml(XmlArgs),
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
        /// The guest kind (appliance or debian; default: the profile's
        /// `[guest] kind`): a Debian guest adds its disk and libvirt's view.
        #[arg(long, value_name = "KIND")]
        guest: Option<nestlab::model::GuestKindId>,
    },
    /// Judge a capture directory (see `capture-script`) against a profile.
    /// Exit 0: at least one check ran and none failed; 1: a check failed;
    /// 2: the profile or a capture file cannot be read.
    Check(CheckArgs),
    /// Print a POSIX sh script that writes the capture directory inside any
    /// Linux guest (`sh capture.sh DIR`), for `nestlab check --from DIR`.
    CaptureScript,
    /// Build (or find in the cache) the probe appliance: kernel + initramfs.
    Appliance(ApplianceArgs),
    /// Build (or find in the cache) the Debian image of the `debian` guest
    /// kind: a Debian system with libvirt and QEMU, for the appliance's
    /// kernel. Minutes the first time (mmdebstrap); cached by a hash of
    /// what goes in.
    Image {
        #[command(flatten)]
        kernel: KernelArgs,
        /// Then remove the cached images this one is not and no run used
        /// in the last hour.
        #[arg(long)]
        prune: bool,
    },
    /// Boot each profile's virtual host through libvirt and verify what its
    /// guest shows. Exit 0: all passed; 1: a check failed; 2: invalid input;
    /// 3: infrastructure (libvirt unreachable, boot failed, timeout).
    Run(RunCmd),
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
    Down(DownArgs),
    /// What a host can run, and what to do about what it cannot.
    Doctor {
        #[command(flatten)]
        hosts: HostArgs,
        #[command(flatten)]
        kernel: KernelArgs,
    },
}

/// Which libvirt hosts, and the pool boot files go to on remote ones.
#[derive(clap::Args, Clone)]
pub struct HostArgs {
    /// libvirt URI of a host (qemu:///system, qemu+ssh://user@host/system,
    /// qemu+tls://host/system, ...); give it several times for a pool.
    /// Default: $NESTLAB_CONNECT (one URI, or several separated by spaces or
    /// commas), else qemu:///system as root and qemu:///session otherwise.
    #[arg(long = "connect", short = 'c', value_name = "URI", value_parser = parse_uri)]
    pub connect: Vec<String>,
    /// The storage pool remote hosts keep the boot files in (a local
    /// connection reads this machine's cache). The default pool is created
    /// when missing, as a dir pool at /var/lib/libvirt/images/nestlab;
    /// another must exist.
    #[arg(long, env = "NESTLAB_POOL", value_name = "NAME", default_value = nestlab::host::DEFAULT_POOL, value_parser = parse_pool)]
    pub pool: String,
}

fn parse_uri(s: &str) -> Result<String, String> {
    nestlab::host::check_uri(s).map(|_| s.to_string())
}

fn parse_pool(s: &str) -> Result<String, String> {
    nestlab::host::check_pool_name(s).map(|_| s.to_string())
}

#[derive(clap::Args)]
pub struct ApplianceArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Then remove the cached appliances this one does not use and no
    /// run used in the last hour (other nestlab versions and kernels);
    /// with --connect, also the volumes of the hosts' pools that it does
    /// not use and no domain there boots from.
    #[arg(long)]
    pub prune: bool,
    /// With --prune: hosts whose pool to prune too (give it several times;
    /// $NESTLAB_CONNECT is not read here).
    #[arg(long = "connect", short = 'c', value_name = "URI", value_parser = parse_uri, requires = "prune")]
    pub connect: Vec<String>,
    /// The storage pool on those hosts.
    #[arg(long, env = "NESTLAB_POOL", value_name = "NAME", default_value = nestlab::host::DEFAULT_POOL, value_parser = parse_pool)]
    pub pool: String,
}

#[derive(clap::Args)]
pub struct XmlArgs {
    /// Profile: a path to a TOML file, or the name of a shipped profile.
    pub profile: String,
    /// kvm (type='kvm', host-passthrough) or tcg (type='qemu', maximum).
    #[arg(long, default_value = "kvm")]
    pub accel: Accel,
    /// Kernel path to put in <os><kernel> (default: a placeholder).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Initramfs path to put in <os><initrd> (default: a placeholder).
    #[arg(long)]
    pub initrd: Option<String>,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Profile: a path or a shipped name.
    pub profile: String,
    /// The capture directory.
    #[arg(long = "from", value_name = "DIR")]
    pub from: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Count checks whose input was not captured as failures.
    #[arg(long)]
    pub require_all: bool,
    /// List passing and skipped checks too.
    #[arg(short, long)]
    pub verbose: bool,
    /// The guest kind the capture came from (appliance or debian; default:
    /// the profile's `[guest] kind`, else appliance): a Debian guest adds
    /// its disk and libvirt's view.
    #[arg(long, value_name = "KIND")]
    pub guest: Option<nestlab::model::GuestKindId>,
}

#[derive(clap::Args)]
pub struct RunCmd {
    /// Profiles: paths or shipped names (default: reference).
    pub profiles: Vec<String>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Keep, per profile, capture/, domain.xml, console.log and report.json here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the reports as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write JUnit XML (one testcase per check, a suite per profile).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Profiles to boot at once, on all hosts together (default: 1 on one
    /// host; on a pool, as many as its hosts take).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: Option<u32>,
    /// Profiles one host boots at once (default: --jobs on one host; on a
    /// pool, as many as the host has CPUs); a host also takes only as many
    /// as its memory holds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs_per_host: Option<u32>,
    /// List passing and skipped checks too.
    #[arg(short, long)]
    pub verbose: bool,
    /// Fail (exit 3) when a profile is skipped because the host's QEMU
    /// lacks a device it needs (igb needs QEMU >= 8.0).
    #[arg(long)]
    pub strict: bool,
    /// Share a host folder with the command after `--`:
    /// HOST[:GUEST][:ro|rw] (GUEST defaults to HOST, the mode to ro). The
    /// current folder is always shared read-only at the same path.
    #[arg(long = "share", value_name = "HOST[:GUEST][:ro|rw]")]
    pub shares: Vec<String>,
    /// Run the command (and the profile's workloads) even when the
    /// topology checks failed.
    #[arg(long)]
    pub always: bool,
    /// Seconds the command after `--` may take (default 1800); then it is
    /// killed and its check fails with the tail of its output.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=86400))]
    pub workload_timeout: Option<u32>,
    /// A command to run in each virtual host once its topology is verified
    /// (in the current folder, shared read-only); its exit status is the
    /// check `workload.command`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(clap::Args)]
pub struct DownArgs {
    /// Domain name (see `nestlab down --list`).
    pub name: Option<String>,
    /// Every nestlab domain.
    #[arg(long, conflicts_with = "name")]
    pub all: bool,
    /// Only list nestlab's domains.
    #[arg(long, conflicts_with_all = ["name", "all"])]
    pub list: bool,
    #[command(flatten)]
    pub hosts: HostArgs,
}

/// Where the guest kernel comes from.
#[derive(clap::Args, Clone)]
pub struct KernelArgs {
    /// Guest kernel image (default: $NESTLAB_KERNEL, the host's
    /// /boot/vmlinuz-$(uname -r), else the one ./dev setup fetched).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// The kernel's modules directory (/lib/modules/<version>).
    #[arg(long, value_name = "DIR")]
    pub modules: Option<PathBuf>,
}

/// Options shared by `run` and `up`.
#[derive(clap::Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    /// auto (KVM when the host offers it and its CPU has vmx/svm, else TCG), kvm or tcg.
    #[arg(long, default_value = "auto")]
    pub accel: AccelChoice,
    /// Seconds to wait for the guest kernel to reach the agent (default:
    /// 120 for the appliance, 300 for the Debian guest).
    #[arg(long)]
    pub boot_timeout: Option<u64>,
    /// Seconds to wait for the agent's captures once it started (default:
    /// 180 for the appliance, 600 for the Debian guest).
    #[arg(long)]
    pub probe_timeout: Option<u64>,
    /// Boot again this many times when a phase times out or the virtual
    /// host's console goes quiet (TCG guests with many vCPUs occasionally
    /// hang: before /init, bringing CPUs online, during the nested step).
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
    /// Leave out the nested step of profiles with [nested]: the topology
    /// is checked, no device is assigned, no nested guest is booted (under
    /// TCG the reference takes about 8 s instead of 25).
    #[arg(long)]
    pub skip_nested: bool,
    /// What boots in the virtual host: appliance (a busybox initramfs) or
    /// debian (a Debian image with libvirt inside); default: the profile's
    /// `[guest] kind`, else appliance.
    #[arg(long, value_name = "KIND")]
    pub guest: Option<nestlab::model::GuestKindId>,
    /// Boot this initramfs instead of the probe appliance's (advanced: it
    /// must print the agent's console protocol; used by the fault tests).
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    #[command(flatten)]
    pub kernel: KernelArgs,
}
