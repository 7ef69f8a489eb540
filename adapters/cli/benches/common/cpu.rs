//! CPU time of processes and their threads, for the benches (`#[path]`-included).

/// Each thread of the process `pid`: its name (`comm`) and its time on a CPU in ns (`schedstat`); threads that
/// end while they are read are left out. `None` if the process is gone.
pub fn threads_ns(pid: u32) -> Option<Vec<(String, u64)>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    Some(
        tasks
            .filter_map(|task| {
                let dir = task.ok()?.path();
                let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
                let ns = std::fs::read_to_string(dir.join("schedstat")).ok()?.split(' ').next()?.parse().ok()?;
                Some((comm.trim_end().to_string(), ns))
            })
            .collect(),
    )
}

/// CPU seconds (user and system) of `who`: `libc::RUSAGE_SELF`, or `libc::RUSAGE_CHILDREN` (the children that
/// have ended and were waited for).
#[allow(dead_code)] // not every bench that includes this file asks for it
pub fn rusage_secs(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}
