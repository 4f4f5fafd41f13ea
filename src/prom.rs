//! Prometheus text exposition: counters and a latency histogram, written by hand (the format
//! is a few lines; the metrics are atomics the daemon and the API update).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Latency buckets, seconds.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let seconds = seconds.max(0.0);
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// The series of `name` with `labels` (`route="/x"`, or empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            braces(labels),
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// `# HELP` and `# TYPE` of a metric.
pub fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric with one unlabelled value.
pub fn single(out: &mut String, name: &str, help: &str, kind: &str, value: u64) {
    header(out, name, help, kind);
    let _ = writeln!(out, "{name} {value}");
}

/// The process's own metrics, as Prometheus's client libraries name them: resident memory,
/// CPU time, open file descriptors and start time (from `/proc/self`; nothing where it is
/// not there).
pub fn process(out: &mut String) {
    // `/proc` counts CPU time in USER_HZ ticks, 100 a second on every Linux ABI (the kernel
    // scales its own HZ to it for userspace).
    let ticks = 100.0;
    if let Some(kib) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
    {
        header(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            "gauge",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {}", kib * 1024.0);
    }
    // The fields after the command's name (which may hold spaces), from the 3rd on.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    if let (Some(user), Some(system)) = (field(14), field(15)) {
        header(
            out,
            "process_cpu_seconds_total",
            "User and system CPU time spent, in seconds",
            "counter",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {}", (user + system) / ticks);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        header(out, "process_open_fds", "Open file descriptors", "gauge");
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    if let (Some(boot), Some(start)) = (boot, field(22)) {
        header(
            out,
            "process_start_time_seconds",
            "Start time of the process since the epoch, in seconds",
            "gauge",
        );
        let _ = writeln!(out, "process_start_time_seconds {}", boot + start / ticks);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_metrics_are_this_process() {
        let mut out = String::new();
        super::process(&mut out);
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} in {out}"))
                .parse()
                .unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 1e6, "{out}");
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_cpu_seconds_total") >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(
            started <= now + 2.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
    }
}
