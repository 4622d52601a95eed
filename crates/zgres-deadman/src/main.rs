//! `zgres-deadman` entry point.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("zgres-deadman: not implemented yet");
    std::process::exit(zgres_deadman::EXIT_NOT_IMPLEMENTED);
}
