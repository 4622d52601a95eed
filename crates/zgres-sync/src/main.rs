//! `zgres-sync` entry point.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("zgres-sync: not implemented yet");
    std::process::exit(zgres_sync::EXIT_NOT_IMPLEMENTED);
}
