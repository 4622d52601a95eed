//! Resource use of processes, from `/proc`, for benchmarks.

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

/// CPU time of `pid` in nanoseconds: the sum of its live threads' run time from
/// `/proc/PID/task/*/schedstat`. Nanoseconds rather than `/proc/PID/stat`'s 10 ms ticks,
/// because an idle daemon uses a few ticks a minute: tick counts would be mostly rounding.
/// Time of threads that exited is not counted (the daemons keep theirs for their lifetime).
pub fn cpu_nanos(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Resident memory of `pid` in kB (`VmRSS`).
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .ok()
}

/// Percent of one core `pid` used since `before` (a [`cpu_nanos`] reading) over `window`.
pub fn cpu_percent_since(pid: u32, before: u64, window: std::time::Duration) -> Option<f64> {
    let used = cpu_nanos(pid)?.checked_sub(before)?;
    Some(used as f64 / window.as_nanos() as f64 * 100.0)
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
