//! Soak: no faults, clients writing, and CPU and disk load on the machine; every change of
//! the lock and every fence is a false failover the timing profile let through.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zgres_schema::Znode;

use crate::checker::{self, Record};
use crate::cluster::Cluster;
use crate::supervisor::Supervisor;
use crate::workload::Workload;

/// How a soak ended.
#[derive(Debug)]
pub struct SoakOutcome {
    /// Each time the lock was taken anew (its znode created again), seconds into the soak.
    pub lock_changes: Vec<f64>,
    /// Log lines of fences.
    pub fences: Vec<String>,
    /// Whether no invariant broke and nothing failed over.
    pub passed: bool,
}

/// Busy threads and a writer of fsynced files, until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// `busy` spinning threads, and one thread writing and fsyncing 16 MB files in `dir`.
    fn start(busy: usize, dir: std::path::PathBuf) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..busy {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            }));
        }
        let disk_stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let chunk = vec![0x5au8; 1 << 20];
            let path = dir.join("disk-load");
            while !disk_stop.load(Ordering::Relaxed) {
                let Ok(mut file) = std::fs::File::create(&path) else {
                    return;
                };
                for _ in 0..16 {
                    let _ = file.write_all(&chunk);
                }
                let _ = file.sync_all();
            }
            let _ = std::fs::remove_file(&path);
        }));
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Runs `duration` without faults on `cluster` under load; prints every lock change as it
/// happens and the summary at the end. A dead deadman is restarted as in a fault run, its
/// delay drawn from `seed`.
pub async fn soak(
    cluster: &mut Cluster,
    duration: Duration,
    synchronous: bool,
    seed: u64,
    out: &mut impl Write,
) -> SoakOutcome {
    let scratch = tempfile::Builder::new()
        .prefix("zgres-chaos-load-")
        .tempdir()
        .expect("a directory for the disk load");
    let load = Load::start(2, scratch.path().to_owned());
    let epoch = Instant::now();
    let workload = Workload::start(cluster.client_targets(), epoch);
    let client = cluster.group.zk_client().await;
    let lock = cluster.group.path(Znode::Lock);
    let mut lock_created = None;
    let mut lock_changes = Vec::new();
    let mut supervisor = Supervisor::new(seed);
    while epoch.elapsed() < duration {
        supervisor.tick(cluster, out);
        // The lock's creation zxid: a new one is a new lock, whoever holds it.
        if let Ok((_, stat)) = client.get_data(&lock).await {
            if lock_created.is_some_and(|c| c != stat.czxid) {
                let at = epoch.elapsed().as_secs_f64();
                let _ = writeln!(out, "[{at:8.1}s] the lock was taken anew");
                lock_changes.push(at);
            }
            lock_created = Some(stat.czxid);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(load);
    let (acks, refusals) = workload.finish().await;
    crate::report::print_refusals(out, &refusals);
    let logs = cluster.logs();
    let fences: Vec<String> = logs
        .iter()
        .flat_map(|(name, text)| {
            text.lines()
                .filter(|l| l.contains("FENCING"))
                .map(move |l| format!("{name}: {l}"))
        })
        .collect();
    let record = Record {
        final_ids: cluster.final_ids().await,
        history: cluster.history().await,
        logs,
        unexpected_exits: supervisor.unexpected_exits,
        acks,
        lag: Vec::new(),
    };
    let verdict = checker::check(&record);
    let _ = writeln!(
        out,
        "soak {:?}: lock taken anew {} times, {} fences, {} acknowledged writes, {} lost, \
         split-brain {}",
        duration,
        lock_changes.len(),
        fences.len(),
        record.acks.len(),
        verdict.lost.len(),
        verdict.split_brain.len()
    );
    for fence in fences.iter().take(10) {
        let _ = writeln!(out, "  {fence}");
    }
    let passed = verdict.passed(synchronous) && lock_changes.is_empty() && fences.is_empty();
    SoakOutcome {
        lock_changes,
        fences,
        passed,
    }
}
