//! `nestlab appliance`: build or find the probe appliance; prune the cache,
//! and with `--connect` the volumes remote hosts keep in their pool.

use nestlab::report::mib;

use crate::args::ApplianceArgs;
use crate::common::{build_appliance, connect, print_error};
use crate::exit;

pub fn main(a: &ApplianceArgs) -> u8 {
    let appliance = match build_appliance(&a.kernel) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if !a.prune {
        println!("kernel  {}", appliance.kernel.display());
        println!("initrd  {}", appliance.initrd.display());
        println!(
            "version {} ({} KiB initramfs, {})",
            appliance.kernel_version,
            appliance.initrd_size / 1024,
            if appliance.cached { "cached" } else { "built" }
        );
        println!("modules {}", appliance.modules.join(" "));
        if !appliance.missing_modules.is_empty() {
            println!(
                "missing {} (this kernel does not ship them)",
                appliance.missing_modules.join(" ")
            );
        }
        return exit::OK;
    }
    let mut code = prune_cache(&appliance);
    if let Err(e) = nestlab::host::check_uris(&a.connect) {
        eprintln!("error: --connect: {e}");
        return exit::INVALID;
    }
    for uri in &a.connect {
        code = code.max(prune_host(&appliance, uri, &a.pool));
    }
    code
}

/// The local cache: entries this appliance does not use and no run used
/// in the last hour.
fn prune_cache(a: &nestlab::guest::appliance::Appliance) -> u8 {
    let mut keep = vec![a.dir.as_path()];
    if let Some(n) = &a.nested {
        keep.push(n.dir.as_path());
    }
    let Some(cache) = a.dir.parent().and_then(|p| p.parent()) else {
        return exit::OK;
    };
    match nestlab::guest::appliance::prune(cache, &keep, nestlab::guest::appliance::PRUNE_MIN_AGE) {
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
            exit::OK
        }
        Err(e) => {
            print_error(&e);
            exit::INFRA
        }
    }
}

/// A host's pool: nestlab's volumes this appliance does not use and no
/// domain there boots from.
fn prune_host(a: &nestlab::guest::appliance::Appliance, uri: &str, pool: &str) -> u8 {
    let host = match connect(uri, pool) {
        Ok(h) => h,
        Err(c) => return c,
    };
    if host.store() == nestlab::host::ArtifactStore::Local {
        println!("{uri}: reads this machine's cache: no volumes to prune there");
        return exit::OK;
    }
    let keep: Vec<String> = a.artifacts().into_iter().map(|x| x.name).collect();
    match host.prune_artifacts(&keep) {
        Ok(out) => {
            for r in &out.removed {
                println!(
                    "removed volume {} ({:.1} MiB) from {uri}",
                    r.name,
                    mib(r.bytes)
                );
            }
            for n in &out.in_use {
                println!("kept volume {n} on {uri}: a domain there boots from it");
            }
            let total: u64 = out.removed.iter().map(|r| r.bytes).sum();
            println!(
                "pruned {} volume(s), {:.1} MiB, from {} on {uri}; kept {} of the current appliance, {} in use",
                out.removed.len(),
                mib(total),
                host.store(),
                out.kept.len(),
                out.in_use.len()
            );
            exit::OK
        }
        Err(e) => {
            print_error(&e);
            exit::INFRA
        }
    }
}
