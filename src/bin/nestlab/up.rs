//! `nestlab up`: boot a virtual host, verify it, and leave it running with
//! a shell on its serial console.

use std::sync::{Arc, Mutex};

use nestlab::guest::agent::Mode;
use nestlab::report::Verdict;
use nestlab::runner::{run_profile, Progress, RunOptions};

use crate::args::RunArgs;
use crate::common::{load_run_topology, prepare, print_error, runtime, signalled, Prepared};
use crate::exit;
use crate::run::{progress_printer, timeouts};

pub fn main(profile: &str, args: &RunArgs) -> u8 {
    let t = match load_run_topology(profile, args, None) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let Prepared {
        accel,
        uri,
        appliance,
        host,
        ..
    } = match prepare(args) {
        Ok(h) => h,
        Err(c) => return c,
    };
    let kinds = nestlab::guest::GuestKinds {
        debian: match t.profile.guest {
            nestlab::model::GuestKindId::Debian => match crate::common::debian_image(&appliance) {
                Ok(image) => Some(nestlab::guest::debian::DebianGuest {
                    image,
                    appliance: appliance.clone(),
                }),
                Err(c) => return c,
            },
            nestlab::model::GuestKindId::Appliance => None,
        },
        appliance,
    };
    let dir = match tempfile::Builder::new().prefix("nestlab-up-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            print_error(&e);
            return exit::INFRA;
        }
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    let opts = RunOptions {
        accel,
        timeouts: timeouts(args).0,
        disk_timeouts: timeouts(args).1,
        dir: dir.path().to_path_buf(),
        mode: Mode::Shell,
        retries: args.retries,
        since: std::time::Instant::now(),
        always: false,
        kept: false,
    };
    let started: Arc<Mutex<Option<String>>> = Arc::default();
    let report = rt.block_on(async {
        let base = progress_printer(
            true,
            None,
            crate::run::Output {
                to_stderr: true,
                prefix: false,
            },
        );
        let s = started.clone();
        let printer = move |p: &str, ev: Progress| {
            if let Progress::ShellReady { domain } = &ev {
                if let Ok(mut n) = s.lock() {
                    *n = Some(domain.clone());
                }
            }
            base(p, ev)
        };
        tokio::select! {
            r = run_profile(host, &t, &kinds, &opts, &printer) => Ok(r),
            code = signalled() => Err(code),
        }
    });
    drop(rt);
    match report {
        Err(code) => code,
        Ok(r) if r.verdict == Verdict::Error => {
            eprint!("{}", r.to_human(false));
            exit::INFRA
        }
        Ok(r) => {
            eprint!("{}", r.to_human(false));
            let name = started
                .lock()
                .ok()
                .and_then(|n| n.clone())
                .unwrap_or_else(|| "<name>".into());
            if t.profile.guest.has_libvirt() {
                eprintln!(
                    "The virtual host {name} is running, libvirtd up inside, a root shell (logged in automatically) on its serial console:"
                );
            } else {
                eprintln!(
                    "The virtual host {name} is running, its agent's shell on the serial console:"
                );
            }
            eprintln!("  virsh -c {uri} console {name}      (leave with Ctrl-])");
            eprintln!("Remove it with: nestlab down {name}   (or nestlab down --all)");
            println!("{name}");
            exit::OK
        }
    }
}
