//! Measurements shared by every scenario: process CPU and RSS from /proc,
//! latency histograms, payload timestamps, the file-descriptor limit.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// CPU time (user + system) and RSS of a process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcSample {
    pub(crate) cpu: Duration,
    pub(crate) rss: u64,
    /// This generator's own CPU time at the same moment, to tell when the
    /// generator rather than the server is the limit.
    pub(crate) generator_cpu: Duration,
}

/// Reads /proc/PID/stat and /proc/PID/status (and this process's CPU).
pub(crate) fn sample(pid: Option<u32>) -> Option<ProcSample> {
    let mut s = read_proc(pid?)?;
    s.generator_cpu = read_proc(std::process::id()).map_or(Duration::ZERO, |me| me.cpu);
    Some(s)
}

fn read_proc(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = ticks_per_second();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(ProcSample {
        cpu: Duration::from_secs_f64((utime + stime) as f64 / ticks as f64),
        rss: rss_kb * 1024,
        generator_cpu: Duration::ZERO,
    })
}

fn ticks_per_second() -> u64 {
    // sysconf only reads a configuration value.
    #[allow(unsafe_code)]
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Raises this process's open-file limit to its hard limit.
pub(crate) fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // These libc calls only read and write the struct we pass.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Nanoseconds since the first call: the clock in payload timestamps.
pub(crate) fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A 100-byte payload starting with a timestamp and an index.
pub(crate) fn payload(index: u64) -> String {
    let mut s = format!("{:016x}{:016x}", now_ns(), index);
    s.push_str(&"x".repeat(100 - s.len()));
    s
}

/// [`payload`] written into a buffer, without allocating.
pub(crate) fn write_payload(out: &mut [u8; 100], index: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let ts = now_ns();
    for i in 0..16 {
        out[i] = HEX[((ts >> ((15 - i) * 4)) & 0xf) as usize];
        out[16 + i] = HEX[((index >> ((15 - i) * 4)) & 0xf) as usize];
    }
    out[32..].fill(b'x');
}

/// The (timestamp, index) at the start of a payload.
pub(crate) fn parse_payload(p: &[u8]) -> Option<(u64, u64)> {
    let ts = std::str::from_utf8(p.get(..16)?).ok()?;
    let ix = std::str::from_utf8(p.get(16..32)?).ok()?;
    Some((
        u64::from_str_radix(ts, 16).ok()?,
        u64::from_str_radix(ix, 16).ok()?,
    ))
}

/// A latency histogram in microseconds, up to one minute.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Fills the common fields of a report from before/after samples.
pub(crate) fn finish(
    report: &mut crate::Report,
    delivered: u64,
    elapsed: Duration,
    hist: &Histogram<u64>,
    before: Option<ProcSample>,
    after: Option<ProcSample>,
) {
    report.delivered = delivered;
    report.seconds = elapsed.as_secs_f64();
    report.per_second = delivered as f64 / elapsed.as_secs_f64().max(1e-9);
    if !hist.is_empty() {
        report.p50_us = hist.value_at_quantile(0.5);
        report.p99_us = hist.value_at_quantile(0.99);
        report.p999_us = hist.value_at_quantile(0.999);
    }
    if let (Some(b), Some(a)) = (before, after) {
        if delivered > 0 {
            report.cpu_us_per_message =
                Some((a.cpu - b.cpu).as_secs_f64() * 1e6 / delivered as f64);
        }
        report.rss_bytes = Some(a.rss);
        let secs = elapsed.as_secs_f64().max(1e-9);
        report.server_cpu_share = Some((a.cpu - b.cpu).as_secs_f64() / secs);
        report.generator_cpu_share = Some((a.generator_cpu - b.generator_cpu).as_secs_f64() / secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_carries_timestamp_and_index() {
        let before = now_ns();
        let p = payload(42);
        assert_eq!(p.len(), 100);
        let (ts, ix) = parse_payload(p.as_bytes()).expect("parses");
        assert_eq!(ix, 42);
        assert!(ts >= before && ts <= now_ns());
        assert!(parse_payload(b"short").is_none());
        let mut buf = [0u8; 100];
        write_payload(&mut buf, 42);
        assert_eq!(parse_payload(&buf).map(|(_, ix)| ix), Some(42));
        assert!(parse_payload(&[b'z'; 40]).is_none());
    }

    #[test]
    fn reads_its_own_process() {
        let s = sample(Some(std::process::id())).expect("own /proc entry");
        assert!(s.rss > 0);
        assert!(sample(Some(u32::MAX)).is_none());
    }
}
