//! Instruction counts per thread of a process run under valgrind's callgrind: figures that the load of a shared
//! machine does not move, for comparisons of a few percent that wall-clock time cannot resolve.

use std::path::Path;
use std::process::Command;

/// One thread's count.
pub struct Thread {
    /// valgrind's thread number: 1 is the main thread, the others in the order they were created.
    pub id: u32,
    /// Instructions executed.
    pub instructions: u64,
    /// The thread's profile, callgrind's text format (to tell threads apart by the functions they ran).
    pub profile: String,
}

impl Thread {
    /// Whether the thread ran a function whose path contains `name`.
    pub fn ran(&self, name: &str) -> bool {
        self.profile.contains(name)
    }
}

/// Panics with what to install unless valgrind can be run.
pub fn require_valgrind() {
    let probe = Command::new("valgrind").arg("--version").output();
    assert!(probe.is_ok_and(|o| o.status.success()), "instruction counts need valgrind (Debian package valgrind)");
}

/// `valgrind` running `program` under callgrind, each thread counted apart, the profiles written into `dir`
/// (which should be empty).
pub fn command(program: &str, dir: &Path) -> Command {
    let mut cmd = Command::new("valgrind");
    // Fair scheduling: valgrind runs one thread at a time, and without it a thread can starve for seconds.
    cmd.args(["--tool=callgrind", "--separate-threads=yes", "--fair-sched=yes"])
        .arg(format!("--callgrind-out-file={}", dir.join("callgrind.out.%p").display()))
        .arg(program);
    cmd
}

/// The threads whose profiles are in `dir`, after the process ended; removes the files.
pub fn threads(dir: &Path) -> Vec<Thread> {
    let mut threads = Vec::new();
    for f in std::fs::read_dir(dir).expect("the profiles' directory") {
        let path = f.expect("a profile").path();
        let profile = std::fs::read_to_string(&path).expect("a readable profile");
        std::fs::remove_file(&path).expect("remove the profile");
        let field = |key: &str| profile.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string());
        // With threads apart, the process's own file holds no counts.
        let Some(instructions) = field("summary:").and_then(|v| v.split(' ').next()?.parse::<u64>().ok()) else {
            continue;
        };
        let id = field("thread:").and_then(|v| v.parse().ok()).expect("a thread number");
        threads.push(Thread { id, instructions, profile });
    }
    assert!(threads.iter().any(|t| t.id == 1), "callgrind wrote no per-thread counts in {}", dir.display());
    threads.sort_by_key(|t| t.id);
    threads
}
