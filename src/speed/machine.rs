//! The machine the figures run on: its estimated fp32 peak ([`peak_gflops`]), a measured
//! matrix-product rate ([`gemm_gflops`]) and the process's peak memory ([`peak_rss_mb`]).

use std::time::Instant;

use tch::{Device, Tensor};

use super::median;

/// Peak resident memory of this process so far, MiB (`VmHWM` of `/proc/self/status`; 0 if
/// unreadable).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// An fp32 peak and how it was estimated.
#[derive(Debug, Clone)]
pub struct Peak {
    /// GFLOP/s over all the threads used.
    pub gflops: f64,
    /// One line: flags, FLOP per cycle, clock, cores.
    pub how: String,
    /// The rate of a large fp32 matrix product measured on the same threads, if measured.
    pub gemm_gflops: Option<f64>,
}

impl Peak {
    /// The peak raised to a measured matrix-product rate when that rate is higher: the clock
    /// the estimate reads is then below the one the cores really run at (boost), and a
    /// fraction of the estimate would flatter the figure.
    pub fn at_least_gemm(self, gemm: f64) -> Peak {
        if gemm > self.gflops {
            Peak {
                gflops: gemm,
                how: format!(
                    "a measured fp32 matrix product, {gemm:.1} GFLOP/s, above the estimate {:.1} GFLOP/s ({})",
                    self.gflops, self.how
                ),
                gemm_gflops: Some(gemm),
            }
        } else {
            Peak { gemm_gflops: Some(gemm), ..self }
        }
    }
}

/// The fp32 rate, in GFLOP/s, of a BERT-base-sized matrix product (2048 × 3072 by 3072 × 768,
/// the second feed-forward layer of a batch of 16 × 128 tokens) on the current threads: the
/// median of 9 after 3 untimed.
pub fn gemm_gflops() -> f64 {
    let _guard = tch::no_grad_guard();
    let opts = (tch::Kind::Float, Device::Cpu);
    let (m, k, n) = (2048i64, 3072i64, 768i64);
    let a = Tensor::ones([m, k], opts) * 0.5;
    let b = Tensor::ones([k, n], opts) * 0.25;
    let mut times = Vec::new();
    for i in 0..12 {
        let t0 = Instant::now();
        let c = a.matmul(&b);
        let dt = t0.elapsed().as_secs_f64();
        assert_eq!(c.size(), [m, n]);
        if i >= 3 {
            times.push(dt);
        }
    }
    2.0 * (m * k * n) as f64 / median(&times) / 1e9
}

/// Estimates the fp32 peak of `cores` cores from `/proc/cpuinfo` (and the cpufreq maximum or
/// `lscpu`'s max MHz when available): FLOP per cycle per core from the vector flags (avx512f:
/// 2 FMA units × 16 lanes × 2 = 64; avx2 + fma: 2 × 8 × 2 = 32; else 8) × clock × cores.
/// AMD family 25 (Zen 3/Zen 4) executes 512-bit FMAs on 256-bit units, so its avx512f peak is
/// that of avx2 (32).
pub fn peak_gflops(cores: usize) -> Peak {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        info.lines().find_map(|l| {
            let (key, val) = l.split_once(':')?;
            (key.trim() == k).then(|| val.trim().to_string())
        })
    };
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let vendor = field("vendor_id").unwrap_or_default();
    let family: u32 = field("cpu family").and_then(|s| s.parse().ok()).unwrap_or(0);
    let zen_double_pumped = vendor == "AuthenticAMD" && family == 25;
    let (per_cycle, isa) = if has("avx512f") && !zen_double_pumped {
        (64.0, "avx512f: 2 FMA units x 16 fp32 lanes x 2 FLOP".to_string())
    } else if has("avx512f") {
        (32.0, "avx512f on AMD family 25 (Zen 3/4: 512-bit FMA split over 256-bit units): 2 x 8 lanes x 2 FLOP".into())
    } else if has("avx2") && has("fma") {
        (32.0, "avx2+fma: 2 FMA units x 8 fp32 lanes x 2 FLOP".to_string())
    } else {
        (8.0, "no avx2/fma: 8 FLOP/cycle assumed".to_string())
    };
    let cpufreq = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map(|khz| (khz / 1000.0, "cpufreq cpuinfo_max_freq"));
    let lscpu = || {
        let out = std::process::Command::new("lscpu").output().ok()?;
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "CPU max MHz")
                .then(|| v.trim().parse::<f64>().ok())
                .flatten()
                .map(|m| (m, "lscpu CPU max MHz"))
        })
    };
    let (mhz, clock_src) = cpufreq
        .or_else(lscpu)
        .or_else(|| field("cpu MHz").and_then(|s| s.parse().ok()).map(|m| (m, "/proc/cpuinfo cpu MHz")))
        .unwrap_or((2000.0, "no clock found: 2000 MHz assumed"));
    let gflops = per_cycle * mhz / 1000.0 * cores as f64;
    Peak {
        gflops,
        how: format!("{isa} = {per_cycle} FLOP/cycle/core x {mhz:.0} MHz ({clock_src}) x {cores} cores (threads used)"),
        gemm_gflops: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measured_matrix_product_above_the_estimate_becomes_the_peak() {
        let est = || Peak { gflops: 100.0, how: "32 FLOP/cycle".into(), gemm_gflops: None };
        let p = est().at_least_gemm(120.0);
        assert_eq!((p.gflops, p.gemm_gflops), (120.0, Some(120.0)));
        assert!(p.how.contains("measured") && p.how.contains("32 FLOP/cycle"), "{}", p.how);
        let p = est().at_least_gemm(90.0);
        assert_eq!((p.gflops, p.gemm_gflops, p.how.as_str()), (100.0, Some(90.0), "32 FLOP/cycle"));
    }
}
