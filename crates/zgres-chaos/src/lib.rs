//! `zgres-chaos`: random, overlapping faults against the real daemons, and a checker that
//! shares no code with zgres.
//!
//! A run starts a 3-member ZooKeeper ensemble, three PostgreSQL nodes with their deadmen (each
//! reaching every ZooKeeper member through its own fault proxies), and zgres-sync keeping a
//! real pgbouncer. Clients write on every node and through pgbouncer, recording each write's
//! unique id, the server that acknowledged it and the client's monotonic send and acknowledge
//! times (with `--long-writes`, also a writer whose statements keep the primary's backend busy
//! for seconds: [`long_writer`]). Episodes of one or two overlapping faults, drawn from a printed seed, follow one
//! another; after each, the run waits until the group is whole again (one primary, every other
//! node streaming from it, pgbouncer writing to it) and times it. A supervisor restarts a dead
//! deadman after a random delay, as systemd would.
//!
//! [`checker`] then judges the record: no two servers acknowledging writes in overlapping
//! intervals (split-brain), no acknowledged write missing from the final primary (synchronous
//! mode), `/history` timelines strictly increasing, no daemon panic or unexpected exit.

#![forbid(unsafe_code)]

pub mod checker;
pub mod cluster;
pub mod disk;
pub mod faults;
pub mod health;
pub mod inbound;
pub mod lag;
pub mod long_writer;
pub mod losses;
pub mod paused_stop;
pub mod peer_router;
pub mod recording;
pub mod report;
pub mod run;
pub mod soak;
pub mod supervisor;
pub mod workload;
