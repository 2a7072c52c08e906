//! Process settings that make the engine fast, for the programs that run it (the command
//! line, the Python module).

/// Keeps freed tensor buffers in the process. By default glibc returns every freed block above
/// 128 KiB to the kernel and page-faults a fresh one in on the next allocation; tensor work
/// allocates and frees such blocks thousands of times per training step, and the page faults
/// cost about a fifth of a step (measured: 194 → 240 tok/s on the paper's risk data). Call it
/// early; later calls change nothing. Elsewhere than glibc it does nothing.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters, under glibc's own lock.
    unsafe {
        // 32 MiB is glibc's upper limit for the mmap threshold on 64-bit targets.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Threads of the tensor work: `RAYON_NUM_THREADS` (what `--threads` sets; candle's CPU
/// kernels read it), else the cores. (A program's setting, read where a program starts, like
/// [`tune_allocator`].)
pub fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

/// How long (in pause instructions) candle's elementwise worker should spin after each op
/// before it sleeps, when training (`CANDLE_BARRIER_POOL_SPIN_LIMIT`, read once when candle
/// starts its workers). candle runs elementwise ops on its own threads and matrix products on
/// rayon's, so with as many threads as cores a worker still spinning from the last elementwise
/// op takes a core from the product that follows. candle's default (25 000) cost training about
/// a tenth of its speed on 2 cores (measured: 404 → 442 tok/s, 8 × 80, three runs each). The
/// engine bench (scoring, exact 0..100, sampling) was no faster with the lower limit, so other
/// work keeps candle's default.
pub const TRAIN_SPIN_LIMIT: u32 = 5_000;

/// Sets `CANDLE_BARRIER_POOL_SPIN_LIMIT` to [`TRAIN_SPIN_LIMIT`] for a process that trains,
/// unless the variable is set (an explicit value wins). Call it before any tensor work: candle
/// reads it once, when it first starts its workers. (A program's own setting, at its start,
/// like [`tune_allocator`]: the libraries never read or write the environment.)
pub fn set_training_spin_limit() {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var(
            "CANDLE_BARRIER_POOL_SPIN_LIMIT",
            TRAIN_SPIN_LIMIT.to_string(),
        );
    }
}
