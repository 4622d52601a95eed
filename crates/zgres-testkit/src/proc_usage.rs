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

/// How many times the threads of `pid` were switched out (`voluntary_ctxt_switches` plus
/// `nonvoluntary_ctxt_switches` of `/proc/PID/task/*/status`): for an idle daemon, its
/// wake-ups. Threads that exited are not counted.
pub fn wakeups(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).ok()?;
        for line in status.lines() {
            if let Some(count) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += count.trim().parse::<u64>().ok()?;
            }
        }
    }
    Some(total)
}

/// A thread that does nothing but sleep `period` at a time, to price a bare wake-up on this
/// machine while a benchmark measures: on a VM it varies by half with the host's load, and an
/// idle daemon's CPU is mostly its wake-ups.
pub struct BareWakeups {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Option<(u64, u64)>>,
}

impl BareWakeups {
    /// Starts the sleeping thread.
    pub fn start(period: std::time::Duration) -> BareWakeups {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let run_ns = || -> Option<u64> {
                let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
                stat.split_whitespace().next()?.parse().ok()
            };
            let first = run_ns()?;
            let mut wakeups = 0;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(period);
                wakeups += 1;
            }
            Some((run_ns()?.saturating_sub(first), wakeups))
        });
        BareWakeups { stop, thread }
    }

    /// Stops the thread and returns the CPU time one of its wake-ups cost, on average.
    pub fn cost(self) -> Option<std::time::Duration> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (run_ns, wakeups) = self.thread.join().ok()??;
        (wakeups > 0).then(|| std::time::Duration::from_nanos(run_ns / wakeups))
    }
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
