//! The machine a measurement ran on: CPU model and the instruction sets that choose kernels,
//! cores and threads per core, caches, which kernel each hot path takes, thread count and
//! load. Every benchmark prints it with its table (`selfaware bench machine` prints it alone),
//! because a speed ratio measured on one machine is not a property of the program.
//!
//! Everything is read from Linux's `/proc` and `/sys`; on other systems the fields that need
//! them are `None` or empty and say so when rendered.

use serde::{Deserialize, Serialize};

/// Instruction-set flags that change which kernel runs (as `/proc/cpuinfo` spells them).
pub const KERNEL_FLAGS: [&str; 8] = [
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_bf16",
    "avx512_vnni",
    "amx_bf16",
];

/// One CPU cache, as seen from CPU 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cache {
    pub level: u8,
    /// `Data`, `Instruction` or `Unified`.
    pub kind: String,
    pub size_bytes: u64,
    /// Logical CPUs sharing it.
    pub shared_by: usize,
}

/// Which implementation each hot path takes on this machine, in this build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kernels {
    /// The small-row product of decoding and scoring few rows (`gemv`): `avx512f`,
    /// `avx2+fma` or `portable`.
    pub small_rows: String,
    /// candle's matrix multiply (the `gemm` crate), chosen at run time among the kernels this
    /// build compiled in.
    pub gemm: String,
}

/// The machine, as far as it can be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu_model: Option<String>,
    pub logical_cpus: usize,
    /// Distinct (package, core) pairs in `/proc/cpuinfo`.
    pub cores: Option<usize>,
    pub threads_per_core: Option<usize>,
    /// The [`KERNEL_FLAGS`] this CPU has.
    pub flags: Vec<String>,
    pub caches: Vec<Cache>,
    pub kernels: Kernels,
    /// Threads of the compute pool (`--threads`, `RAYON_NUM_THREADS`, else one per CPU).
    pub threads: usize,
    /// 1, 5 and 15-minute load averages when read.
    pub load_average: Option<[f64; 3]>,
    /// The operating system kernel's release (`uname -r`).
    pub os_release: Option<String>,
}

/// What `/proc/cpuinfo` says: model name, logical CPUs, cores, threads per core and the
/// [`KERNEL_FLAGS`] of the first CPU listed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CpuInfo {
    pub model: Option<String>,
    pub logical: usize,
    pub cores: Option<usize>,
    pub threads_per_core: Option<usize>,
    pub flags: Vec<String>,
}

/// Parses the text of `/proc/cpuinfo` (x86 layout; other layouts give what they have).
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    let mut cores = std::collections::BTreeSet::new();
    let mut package: Option<String> = None;
    let mut flags_seen = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => {
                info.logical += 1;
                package = None;
            }
            "model name" if info.model.is_none() => info.model = Some(value.to_string()),
            "physical id" => package = Some(value.to_string()),
            "core id" => {
                cores.insert((package.clone().unwrap_or_default(), value.to_string()));
            }
            "flags" if !flags_seen => {
                flags_seen = true;
                let have: std::collections::BTreeSet<&str> = value.split_whitespace().collect();
                info.flags = KERNEL_FLAGS
                    .iter()
                    .filter(|f| have.contains(*f))
                    .map(|f| f.to_string())
                    .collect();
            }
            _ => {}
        }
    }
    if !cores.is_empty() {
        info.cores = Some(cores.len());
        if info.logical.is_multiple_of(cores.len()) {
            info.threads_per_core = Some(info.logical / cores.len());
        }
    }
    info
}

/// A cache size as `/sys` writes it (`48K`, `2048K`, `32M`, `1G` or bytes).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The number of CPUs in a `/sys` CPU list (`0`, `0-1`, `0-3,8-11`).
pub fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                b.checked_sub(a)? + 1
            }
            None => {
                part.parse::<usize>().ok()?;
                1
            }
        };
    }
    Some(n)
}

/// The three load averages of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn caches() -> Vec<Cache> {
    let mut out = Vec::new();
    for i in 0.. {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let Some(level) = read(&format!("{dir}/level")) else {
            break;
        };
        let (Some(level), Some(kind), Some(size)) = (
            level.trim().parse().ok(),
            read(&format!("{dir}/type")),
            read(&format!("{dir}/size")).and_then(|s| parse_size(&s)),
        ) else {
            continue;
        };
        let shared_by = read(&format!("{dir}/shared_cpu_list"))
            .and_then(|s| parse_cpu_list(&s))
            .unwrap_or(1);
        out.push(Cache {
            level,
            kind: kind.trim().to_string(),
            size_bytes: size,
            shared_by,
        });
    }
    out
}

/// Whether this build enables gemm's `x86-v4` feature (the workspace manifest does): without
/// it, gemm 0.19 has no AVX-512 kernels and takes its FMA (AVX2) ones on x86-64.
const GEMM_X86_V4: bool = true;

fn gemm_kernel(flags: &[String]) -> String {
    if !cfg!(target_arch = "x86_64") {
        return "gemm: the architecture's own kernels".into();
    }
    let has = |f: &str| flags.iter().any(|x| x == f);
    match (GEMM_X86_V4 && has("avx512f"), has("fma")) {
        (true, _) => "avx512f".into(),
        (false, true) if has("avx512f") => {
            "fma (AVX2; this build has no AVX-512 gemm kernels: gemm's x86-v4 feature is off)"
                .into()
        }
        (false, true) => "fma (AVX2)".into(),
        (false, false) => "scalar".into(),
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.render())
    }
}

impl Machine {
    /// Reads this machine.
    pub fn detect() -> Machine {
        let cpu = read("/proc/cpuinfo")
            .map(|t| parse_cpuinfo(&t))
            .unwrap_or_default();
        let logical = if cpu.logical > 0 {
            cpu.logical
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        let kernels = Kernels {
            small_rows: crate::gemv::kernel_name().to_string(),
            gemm: gemm_kernel(&cpu.flags),
        };
        Machine {
            cpu_model: cpu.model,
            logical_cpus: logical,
            cores: cpu.cores,
            threads_per_core: cpu.threads_per_core,
            flags: cpu.flags,
            caches: caches(),
            kernels,
            threads: rayon::current_num_threads(),
            load_average: read("/proc/loadavg").and_then(|t| parse_loadavg(&t)),
            os_release: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()),
        }
    }

    /// A few lines for the top of a benchmark table (what `Display` prints, with a final
    /// newline).
    pub fn render(&self) -> String {
        let unknown = || "unknown".to_string();
        let cores = match (self.cores, self.threads_per_core) {
            (Some(c), Some(t)) => format!("{c} cores × {t} threads"),
            (Some(c), None) => format!("{c} cores"),
            _ => unknown(),
        };
        let caches = if self.caches.is_empty() {
            unknown()
        } else {
            self.caches
                .iter()
                .map(|c| {
                    let kind = match c.kind.as_str() {
                        "Data" => "d",
                        "Instruction" => "i",
                        _ => "",
                    };
                    format!(
                        "L{}{kind} {} (shared by {})",
                        c.level,
                        human_bytes(c.size_bytes),
                        c.shared_by
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let load = self.load_average.map_or_else(unknown, |l| {
            format!("{:.2} {:.2} {:.2} (1, 5, 15 min)", l[0], l[1], l[2])
        });
        let flags = if self.flags.is_empty() {
            "none of them".to_string()
        } else {
            self.flags.join(" ")
        };
        format!(
            "machine: {} · {} logical CPUs, {cores} · kernel {}\n\
             instruction sets: {flags} (of {})\n\
             caches: {caches}\n\
             kernels: small-row product {}, matrix multiply {}\n\
             compute threads: {} · load average {load}",
            self.cpu_model.clone().unwrap_or_else(unknown),
            self.logical_cpus,
            self.os_release.clone().unwrap_or_else(unknown),
            KERNEL_FLAGS.join(" "),
            self.kernels.small_rows,
            self.kernels.gemm,
            self.threads,
        )
    }
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
        format!("{} MiB", b >> 20)
    } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
        format!("{} KiB", b >> 10)
    } else {
        format!("{b} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_CORES_ONE_THREAD: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\n\
model name\t: AMD EPYC 9R14\nphysical id\t: 0\ncore id\t\t: 0\n\
flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni\n\n\
processor\t: 1\nmodel name\t: AMD EPYC 9R14\nphysical id\t: 0\ncore id\t\t: 1\n\
flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni\n";

    #[test]
    fn cpuinfo_gives_model_cores_threads_and_kernel_flags() {
        let c = parse_cpuinfo(TWO_CORES_ONE_THREAD);
        assert_eq!(c.model.as_deref(), Some("AMD EPYC 9R14"));
        assert_eq!(c.logical, 2);
        assert_eq!(c.cores, Some(2));
        assert_eq!(c.threads_per_core, Some(1));
        // In KERNEL_FLAGS order; sse2 and fpu are not kernel-choosing flags.
        assert_eq!(
            c.flags,
            ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"]
        );
    }

    #[test]
    fn hyperthreads_share_a_core() {
        let text = "processor: 0\nphysical id: 0\ncore id: 0\nprocessor: 1\nphysical id: 0\n\
core id: 0\nprocessor: 2\nphysical id: 1\ncore id: 0\nprocessor: 3\nphysical id: 1\ncore id: 0\n";
        let c = parse_cpuinfo(text);
        assert_eq!(
            (c.logical, c.cores, c.threads_per_core),
            (4, Some(2), Some(2))
        );
        assert!(c.model.is_none() && c.flags.is_empty());
    }

    #[test]
    fn sizes_lists_and_loads_parse() {
        assert_eq!(parse_size("48K\n"), Some(48 * 1024));
        assert_eq!(parse_size("32M"), Some(32 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("3X"), None);
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0-3,8-11,15"), Some(9));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(
            parse_loadavg("0.70 1.25 2.00 1/123 456\n"),
            Some([0.70, 1.25, 2.00])
        );
        assert_eq!(parse_loadavg("0.70"), None);
    }

    #[test]
    fn gemm_kernel_names_the_missing_avx512_path() {
        let flags = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(gemm_kernel(&flags(&["avx2", "fma"])), "fma (AVX2)");
            assert_eq!(gemm_kernel(&flags(&[])), "scalar");
            let k = gemm_kernel(&flags(&["avx2", "fma", "avx512f"]));
            assert_eq!(k.starts_with("avx512f"), GEMM_X86_V4, "{k}");
        }
    }

    /// [`GEMM_X86_V4`] says what the workspace manifest asks of gemm.
    #[test]
    fn the_gemm_feature_constant_matches_the_manifest() {
        let manifest = include_str!("../../../Cargo.toml");
        let gemm = manifest
            .lines()
            .find(|l| l.starts_with("gemm "))
            .expect("a gemm dependency");
        assert_eq!(gemm.contains("x86-v4"), GEMM_X86_V4, "{gemm}");
    }

    #[test]
    fn a_detected_machine_renders_every_line() {
        let m = Machine::detect();
        assert!(m.logical_cpus >= 1 && m.threads >= 1);
        let r = m.render();
        for part in [
            "machine:",
            "instruction sets:",
            "caches:",
            "kernels:",
            "load average",
        ] {
            assert!(r.contains(part), "{r}");
        }
        let back: Machine = serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
