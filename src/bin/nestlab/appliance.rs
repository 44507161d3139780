//! `nestlab appliance`: build or find the probe appliance; prune the cache.

use crate::args::KernelArgs;
use crate::common::{build_appliance, print_error};
use crate::exit;

pub fn main(k: &KernelArgs, prune: bool) -> u8 {
    match build_appliance(k) {
        Ok(a) if prune => {
            let mut keep = vec![a.dir.as_path()];
            if let Some(n) = &a.nested {
                keep.push(n.dir.as_path());
            }
            let Some(cache) = a.dir.parent().and_then(|p| p.parent()) else {
                return exit::OK;
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
                    exit::OK
                }
                Err(e) => {
                    print_error(&e);
                    exit::INFRA
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
            exit::OK
        }
        Err(code) => code,
    }
}
