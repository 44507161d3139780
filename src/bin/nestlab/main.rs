//! The `nestlab` command. All of it lives in [`cli`]; this only runs it.
mod cli;
mod doctor;
mod run;

fn main() -> std::process::ExitCode {
    cli::main()
}
