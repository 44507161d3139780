//! `nestlab image`: build or find the Debian image; prune old ones.

use crate::args::KernelArgs;
use crate::common::{build_appliance, debian_image, print_error};
use crate::exit;

pub fn main(k: &KernelArgs, prune: bool) -> u8 {
    let appliance = match build_appliance(k) {
        Ok(a) => a,
        Err(c) => return c,
    };
    let image = match debian_image(&appliance) {
        Ok(i) => i,
        Err(c) => return c,
    };
    println!("image   {}", image.root.display());
    println!(
        "kernel  {} (the appliance's; the image carries its modules)",
        image.kernel_version
    );
    println!(
        "size    {} MiB used of the image ({})",
        image.allocated >> 20,
        if image.cached { "cached" } else { "built" }
    );
    if let Ok(b) = std::fs::read_to_string(image.dir.join("build.txt")) {
        for l in b.lines() {
            println!("build   {l}");
        }
    }
    println!("hash    {}", image.hash);
    if prune {
        let Some(cache) = image.dir.parent().and_then(|p| p.parent()) else {
            return exit::OK;
        };
        match nestlab::guest::debian::image::prune(
            cache,
            &image.dir,
            nestlab::guest::appliance::PRUNE_MIN_AGE,
        ) {
            Ok(removed) => {
                for r in &removed {
                    println!("removed {} ({} MiB)", r.dir.display(), r.bytes >> 20);
                }
                println!("pruned {} images", removed.len());
            }
            Err(e) => {
                print_error(&e);
                return exit::INFRA;
            }
        }
    }
    exit::OK
}
