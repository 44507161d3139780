//! `nestlab down`: remove virtual hosts nestlab started, and only those.

use crate::args::DownArgs;
use crate::common::{connect, default_uri, print_error};
use crate::exit;

pub fn main(a: DownArgs) -> u8 {
    let uri = a.connect.unwrap_or_else(default_uri);
    let host = match connect(&uri) {
        Ok(h) => h,
        Err(c) => return c,
    };
    let owned = match host.owned_domains() {
        Ok(o) => o,
        Err(e) => {
            print_error(&e);
            return exit::INFRA;
        }
    };
    if a.list || (a.name.is_none() && !a.all) {
        if owned.is_empty() {
            eprintln!("no nestlab domains on {uri}");
        }
        for d in &owned {
            println!(
                "{}\t{}",
                d.name,
                if d.active { "running" } else { "defined" }
            );
        }
        if !a.list {
            eprintln!("give a NAME or --all to remove");
            return exit::INVALID;
        }
        return exit::OK;
    }
    let targets: Vec<String> = match a.name {
        Some(n) => vec![n],
        None => owned.iter().map(|d| d.name.clone()).collect(),
    };
    let mut code = exit::OK;
    for n in targets {
        match host.remove_owned(&n) {
            Ok(true) => eprintln!("removed {n}"),
            Ok(false) => {
                eprintln!("error: {n} is not a nestlab domain (no nestlab metadata): left alone");
                code = exit::INVALID;
            }
            Err(e) if e.is_no_domain() => {
                eprintln!("error: no domain named {n} on {uri} (see nestlab down --list)");
                code = exit::INVALID;
            }
            Err(e) => {
                print_error(&e);
                code = exit::INFRA;
            }
        }
    }
    code
}
