//! Resource use of processes, from `/proc`, for benchmarks.

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ` on Linux).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// Proportional set size: resident memory with pages shared between processes (the deadman and
/// its keeper run the same binary) divided among them.
pub fn pss_kb(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .ok()
}

/// CPU time (user + system, in clock ticks) and resident memory (kB) of `pid`.
pub fn cpu_ticks_and_rss(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .ok()?;
    Some((ticks, rss_kb))
}

/// The child of `parent` whose command line contains `arg` (e.g. the deadman's fence keeper,
/// `--fence-keeper`).
pub fn child_with_arg(parent: u32, arg: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ppid: u32 = stat
            .rsplit_once(") ")?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
        (ppid == parent && cmdline.contains(arg)).then_some(pid)
    })
}
