//! The fresh-machine path: no --brokers and nothing at the default address starts a local broker and the
//! generator; Ctrl-C stops a run gracefully with exit 0; the broker a run started never outlives it, however
//! the run ends (SIGTERM, SIGHUP, a second Ctrl-C, SIGKILL).

#[macro_use]
mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn no_broker_anywhere_provisions_tansu_and_the_generator() {
    if broker().is_none() {
        return;
    }
    let port = dstream_adapters::broker::free_port().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["--batches", "3", "--batch-interval", "500ms"])
        .env("DSTREAM_DEFAULT_BROKER", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let announce: Vec<&str> = stderr.lines().filter(|l| l.contains("starting a local tansu broker")).collect();
    assert_eq!(announce.len(), 1, "{stderr}");
    let counts = batch_record_counts(&stderr);
    assert_eq!(counts.len(), 3, "{stderr}");
    // The generator runs at 100 messages a second: a whole 500 ms batch holds some.
    assert!(counts[1..].iter().all(|&c| c > 0), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!printed_elements(&stdout).is_empty());
}

fn ctrl_c_finishes_the_running_batch_and_exits_zero(b: &TestBroker) {
    let t = &b.topic("avg");
    generate(b.addr(), t, 10, 1, &[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["run", "--brokers", b.addr(), "--topic", t, "--batch-interval", "200ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Wait for the first batch (after the web UI's address), then interrupt.
    let first =
        lines.by_ref().map(|l| l.unwrap()).find(|l| !l.starts_with("dstream: web UI at ")).expect("a status line");
    assert!(first.starts_with("dstream: batch "), "{first}");
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    // The rest of stderr is read on the side, so that a run that does not stop fails the test instead of hanging.
    let rest = std::thread::spawn(move || lines.map(|l| l.unwrap()).collect::<Vec<String>>());
    let exit = exit_within(&mut child, Duration::from_secs(10));
    let rest = rest.join().unwrap();
    assert!(exit.success(), "{exit} {rest:?}");
    assert!(rest.last().is_some_and(|l| l.starts_with("dstream: stopped after")), "{rest:?}");
}

on_both_brokers!(ctrl_c_finishes_the_running_batch_and_exits_zero);

/// A process as /proc shows it: its parent and its start time (which tells it from a later process that reuses
/// the pid), or `None` if it is gone or a zombie.
fn proc_stat(pid: u32) -> Option<(String, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ..."; comm may hold spaces and parentheses: it ends at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    if rest.first() == Some(&"Z") || rest.first() == Some(&"X") {
        return None;
    }
    let ppid = rest.get(1)?.parse().ok()?;
    // Field 22 of stat (starttime) is the 20th after the comm.
    let start = rest.get(19)?.parse().ok()?;
    Some((comm, ppid, start))
}

/// The tansu process whose parent is `parent`, with its start time.
fn tansu_child_of(parent: u32) -> Option<(u32, u64)> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let (comm, ppid, start) = proc_stat(pid)?;
        (ppid == parent && comm == "tansu").then_some((pid, start))
    })
}

/// Waits until the process `pid` that started at `start` is gone, at most `within`.
fn gone_within(pid: u32, start: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if proc_stat(pid).is_none_or(|(_, _, s)| s != start) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` to `pid`.
fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill only sends a signal, to a child of this test that has not been reaped.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0, "{}", std::io::Error::last_os_error());
}

/// True while `signal` is pending for the process `pid` (sent, not yet taken by any of its threads).
fn pending(pid: u32, signal: libc::c_int) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter_map(|l| l.strip_prefix("ShdPnd:"))
        .any(|mask| u64::from_str_radix(mask.trim(), 16).is_ok_and(|m| m & (1u64 << (signal - 1)) != 0))
}

/// A `dstream run` that provisioned its own tansu: the process, its stderr lines still to read, and the tansu's
/// pid and start time.
struct ProvisioningRun {
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStderr>>,
    tansu: (u32, u64),
}

/// Starts `dstream run` on a machine with no broker (it provisions tansu) and waits for its first batch; `None`
/// if DSTREAM_NO_BROKER=1 says no broker may run.
fn provisioning_run() -> Option<ProvisioningRun> {
    if broker_disabled() {
        return None;
    }
    let port = dstream_adapters::broker::free_port().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["run", "--batch-interval", "200ms", "--ui", "off"])
        .env("DSTREAM_DEFAULT_BROKER", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.by_ref().map(|l| l.unwrap()).find(|l| l.starts_with("dstream: batch "));
    assert!(first.is_some(), "no batch ran: {}", exit_within(&mut child, Duration::from_secs(10)));
    let tansu = tansu_child_of(child.id()).expect("dstream runs a tansu of its own");
    Some(ProvisioningRun { child, lines, tansu })
}

/// SIGTERM and SIGHUP stop `dstream run` as Ctrl-C does: the running batch finishes, exit 0, and the tansu it
/// started is stopped.
#[test]
fn sigterm_and_sighup_stop_gracefully_and_stop_the_broker() {
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        let Some(ProvisioningRun { mut child, lines, tansu: (tansu, start) }) = provisioning_run() else { return };
        signal(child.id(), sig);
        let rest = std::thread::spawn(move || lines.map(|l| l.unwrap()).collect::<Vec<String>>());
        let exit = exit_within(&mut child, Duration::from_secs(20));
        let rest = rest.join().unwrap();
        assert!(exit.success(), "signal {sig}: {exit} {rest:?}");
        assert!(rest.last().is_some_and(|l| l.starts_with("dstream: stopped after")), "signal {sig}: {rest:?}");
        assert!(gone_within(tansu, start, Duration::from_secs(20)), "signal {sig}: tansu {tansu} outlived dstream");
    }
}

/// A second Ctrl-C exits at once (130), and the tansu the run started goes with it.
#[test]
fn second_ctrl_c_exits_at_once_and_the_broker_goes_too() {
    let Some(ProvisioningRun { mut child, lines, tansu: (tansu, start) }) = provisioning_run() else { return };
    let pid = child.id();
    signal(pid, libc::SIGINT);
    // The second one only once the first was taken: two pending SIGINTs are one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending(pid, libc::SIGINT) && Instant::now() < deadline {
        std::thread::yield_now();
    }
    signal(pid, libc::SIGINT);
    let rest = std::thread::spawn(move || lines.map(|l| l.unwrap()).collect::<Vec<String>>());
    let exit = exit_within(&mut child, Duration::from_secs(20));
    let rest = rest.join().unwrap();
    assert_eq!(exit.code(), Some(130), "{exit} {rest:?}");
    assert!(gone_within(tansu, start, Duration::from_secs(20)), "tansu {tansu} outlived dstream");
}

/// A SIGKILLed dstream cannot stop anything itself: the tansu it started notices (its parent-death signal).
#[test]
fn sigkilled_run_takes_its_broker_along() {
    let Some(ProvisioningRun { mut child, lines: _lines, tansu: (tansu, start) }) = provisioning_run() else { return };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(gone_within(tansu, start, Duration::from_secs(20)), "tansu {tansu} outlived the SIGKILLed dstream");
}

/// The child of `parent` whose command is `comm`, with its start time.
fn child_named(parent: u32, comm: &str) -> Option<(u32, u64)> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let (c, ppid, start) = proc_stat(pid)?;
        (ppid == parent && c == comm).then_some((pid, start))
    })
}

/// Issue 14 item 10: the pip install that provisions tansu on a fresh machine dies with a SIGKILLed dstream too.
/// A `python3` of the test's own stands in for a slow pip (it sleeps), so the test needs no network and no broker.
#[test]
fn sigkilled_run_takes_its_pip_install_along() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let python = bin.join("python3");
    std::fs::write(&python, "#!/bin/sh\nexec sleep 120\n").unwrap();
    std::fs::set_permissions(&python, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let port = dstream_adapters::broker::free_port().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["run", "--ui", "off"])
        .env("PATH", path)
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .env_remove("DSTREAM_TANSU")
        .env("DSTREAM_DEFAULT_BROKER", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let pip = loop {
        if let Some(p) = child_named(child.id(), "sleep") {
            break p;
        }
        assert!(Instant::now() < deadline, "dstream never started its pip install");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = gone_within(pip.0, pip.1, Duration::from_secs(10));
    if !gone {
        signal(pip.0, libc::SIGKILL);
    }
    assert!(gone, "the pip install {} outlived the SIGKILLed dstream", pip.0);
}
