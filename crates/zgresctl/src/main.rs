//! `zgresctl` entry point.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("zgresctl: not implemented yet");
    std::process::exit(zgresctl::EXIT_NOT_IMPLEMENTED);
}
