//! The `nestlab` command: clap's view of the arguments, and one file per
//! command. Everything that is not about the terminal lives in the library.

mod appliance;
mod args;
mod check;
mod common;
mod doctor;
mod down;
mod exit;
mod expect;
mod image;
mod profiles;
mod run;
mod up;
mod validate;
mod xml;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Xml(a) => xml::main(a),
        Command::Validate { profiles } => validate::main(&profiles),
        Command::Profiles => profiles::main(),
        Command::Expect {
            profile,
            json,
            guest,
        } => expect::main(&profile, json, guest),
        Command::Check(a) => check::main(a),
        Command::CaptureScript => {
            print!("{}", nestlab::guest::agent::capture_script());
            exit::OK
        }
        Command::Appliance(a) => appliance::main(&a),
        Command::Image { kernel, prune } => image::main(&kernel, prune),
        Command::Run(a) => run::main(a),
        Command::Up { profile, run } => up::main(&profile, &run),
        Command::Down(a) => down::main(a),
        Command::Doctor { hosts, kernel } => doctor::main(&hosts, &kernel),
    };
    ExitCode::from(code)
}
