//! The examples (`adapters/cli/examples/`: lab, word_count, sessions), built by `cargo test`, run live against a real
//! tansu: their output equals a model of everything produced; a recorded run replays to the same bytes; and
//! SIGKILLed at random moments and restarted from their checkpoints, they lose nothing and count nothing twice.

mod common;

use common::{broker, exit_within, generate, lab_messages, model_of};
use dstream_cli::generate::SplitMix64;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The example's binary, next to this test's (`target/debug/examples/NAME`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let path = exe.parent().and_then(Path::parent).expect("target/debug").join("examples").join(name);
    assert!(path.exists(), "{} is missing: `cargo test` builds the examples", path.display());
    path
}

fn run_example(name: &str, args: &[&str]) -> Output {
    let mut child = Command::new(example(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    // Read both pipes on the side, so that the deadline below can fire.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).unwrap();
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).unwrap();
        v
    });
    let status = exit_within(&mut child, Duration::from_secs(120));
    Output { status, stdout: o.join().unwrap(), stderr: e.join().unwrap() }
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "example failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Every `PREFIX-TIME.txt` file in `dir`, by time, with its lines.
fn batch_files(dir: &Path, prefix: &str) -> BTreeMap<i64, Vec<String>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(time) = name.strip_prefix(&format!("{prefix}-")).and_then(|n| n.strip_suffix(".txt")) else {
            continue;
        };
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        files.insert(time.parse().unwrap(), text.lines().map(str::to_string).collect());
    }
    files
}

/// `(word,count)` lines as pairs.
fn pairs(lines: &[String]) -> Vec<(String, i64)> {
    lines
        .iter()
        .map(|l| {
            let inner = l.strip_prefix('(').and_then(|l| l.strip_suffix(')')).expect("(word,count)");
            let (w, n) = inner.rsplit_once(',').unwrap();
            (w.to_string(), n.parse().unwrap())
        })
        .collect()
}

/// The words `dstream generate --seed SEED --count N` writes (one message is one word), with their counts.
fn word_model(seed: u64, count: u64) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for msg in lab_messages(seed, count, 1).into_iter().flatten() {
        *m.entry(String::from_utf8(msg).unwrap()).or_insert(0) += 1;
    }
    m
}

/// Checks word_count's files: the per-batch counts add up to `model`, and every window file holds exactly the
/// sum of the batch files in its window (6 s), keys with 0 dropped. Returns the number of window files.
fn check_word_count(out: &Path, model: &BTreeMap<String, i64>) -> usize {
    let counts = batch_files(out, "counts");
    let mut total: BTreeMap<String, i64> = BTreeMap::new();
    for lines in counts.values() {
        for (w, n) in pairs(lines) {
            *total.entry(w).or_insert(0) += n;
        }
    }
    assert_eq!(&total, model, "the batch counts add up to what was produced");
    let windows = batch_files(out, "windowed");
    for (t, lines) in &windows {
        let mut want: BTreeMap<String, i64> = BTreeMap::new();
        for (_, lines) in counts.range(t - 5999..=*t) {
            for (w, n) in pairs(lines) {
                *want.entry(w).or_insert(0) += n;
            }
        }
        want.retain(|_, n| *n != 0);
        let got: BTreeMap<String, i64> = pairs(lines).into_iter().collect();
        assert_eq!(got, want, "window at {t}");
        let keys: Vec<String> = pairs(lines).into_iter().map(|(w, _)| w).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "a window's output is sorted by key");
    }
    windows.len()
}

/// Sums the closed sessions of the sessions example per user: (sessions, events).
fn closed_sessions(out: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut users = BTreeMap::new();
    for lines in batch_files(out, "sessions").values() {
        for l in lines {
            let inner = l.strip_prefix('(').and_then(|l| l.strip_suffix(')')).expect("(user,events,length)");
            let f: Vec<&str> = inner.split(',').collect();
            let e = users.entry(f[0].to_string()).or_insert((0, 0));
            e.0 += 1;
            e.1 += f[1].parse::<u64>().unwrap();
            assert!(f[2].parse::<i64>().unwrap() >= 0);
        }
    }
    users
}

/// Each user's message count.
fn user_model(seed: u64, count: u64) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for msg in lab_messages(seed, count, 1).into_iter().flatten() {
        let user = String::from_utf8(msg).unwrap().split(',').next().unwrap().to_string();
        *m.entry(user).or_insert(0) += 1;
    }
    m
}

#[test]
fn lab_example_prints_the_running_averages_and_resumes_from_its_checkpoint() {
    let Some(b) = broker() else { return };
    generate(b.addr(), "avg", 1000, 7, &["--partitions", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let args = |batches: &str| {
        let mut a: Vec<String> =
            ["--brokers", b.addr(), "--earliest", "--batch-interval", "200ms"].iter().map(|s| s.to_string()).collect();
        a.extend(["--max-rate-per-partition", "2000", "--print", "100000", "--batches", batches].map(String::from));
        a.extend(["--checkpoint".to_string(), ck.display().to_string()]);
        a
    };
    let argv = args("3");
    let stdout = ok(&run_example("lab", &argv.iter().map(String::as_str).collect::<Vec<_>>()));
    let want: BTreeMap<String, f64> =
        model_of(lab_messages(7, 1000, 2).iter().flatten()).averages().into_iter().collect();
    assert_eq!(common::final_averages(&stdout), want);

    // More messages, and a restart from the checkpoint: the averages are those of all 1,500.
    generate(b.addr(), "avg", 500, 8, &["--partitions", "2"]);
    let argv = args("2");
    let out = run_example("lab", &argv.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("dstream: resuming from"), "{stderr}");
    let mut all = lab_messages(7, 1000, 2);
    for (p, msgs) in lab_messages(8, 500, 2).into_iter().enumerate() {
        all[p].extend(msgs);
    }
    let want: BTreeMap<String, f64> = model_of(all.iter().flatten()).averages().into_iter().collect();
    let got = common::final_averages(&ok(&out));
    // Keys not in the second run's messages print nothing in it; every key printed has the model's average.
    assert!(!got.is_empty());
    for (k, v) in &got {
        assert_eq!(Some(v), want.get(k), "{k}");
    }
}

#[test]
fn word_count_example_counts_windows_and_replays_byte_for_byte() {
    let Some(b) = broker() else { return };
    generate(b.addr(), "lines", 400, 11, &[]);
    let dir = tempfile::tempdir().unwrap();
    let (out, ck, rec) = (dir.path().join("out"), dir.path().join("ck"), dir.path().join("run.rec"));
    let live = run_example(
        "word_count",
        &[
            "--brokers",
            b.addr(),
            "--earliest",
            "--batch-interval",
            "500ms",
            "--max-rate-per-partition",
            "100",
            "--batches",
            "16",
            "--print",
            "3",
            "--out",
            out.to_str().unwrap(),
            "--checkpoint",
            ck.to_str().unwrap(),
            "--record",
            rec.to_str().unwrap(),
        ],
    );
    let live_stdout = ok(&live);
    let windows = check_word_count(&out, &word_model(11, 400));
    // `dstream checkpoint show` on another program's checkpoint: a line per stateful operator.
    let show = common::dstream(&["checkpoint", "show", ck.to_str().unwrap()]);
    let table = common::ok_stdout(&show);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows[0], ["OPERATOR", "KIND", "KEYS", "BYTES"], "{table}");
    assert_eq!(rows.len(), 2, "one stateful operator: {table}");
    assert_eq!(&rows[1][..2], ["reduce_by_key_and_window#0", "reduce_by_key_and_window"], "{table}");
    assert!(
        String::from_utf8_lossy(&show.stderr).contains("job word_count"),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    assert!(windows >= 3, "16 batches of 500 ms hold at least 3 slides of 2 s, got {windows}");

    // The recording, replayed through the same program without a broker: the same bytes, the same files.
    let out2 = dir.path().join("out2");
    let replayed = run_example(
        "word_count",
        &["--replay", rec.to_str().unwrap(), "--out", out2.to_str().unwrap(), "--print", "3"],
    );
    assert_eq!(ok(&replayed), live_stdout);
    assert_eq!(batch_files(&out2, "counts"), batch_files(&out, "counts"));
    assert_eq!(batch_files(&out2, "windowed"), batch_files(&out, "windowed"));
}

#[test]
fn sessions_example_closes_every_session_with_all_its_events() {
    let Some(b) = broker() else { return };
    generate(b.addr(), "avg", 300, 5, &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = ["--brokers", b.addr(), "--earliest", "--batch-interval", "500ms", "--max-rate-per-partition", "100"];
    let mut args: Vec<&str> = args.to_vec();
    let (o, c) = (out.display().to_string(), dir.path().join("ck").display().to_string());
    // 300 messages at 50 a batch: 3 s of data; keys idle for more than 3 s close at the timeout scan of 10 s.
    args.extend(["--batches", "24", "--out", &o, "--checkpoint", &c]);
    ok(&run_example("sessions", &args));
    let closed = closed_sessions(&out);
    let events: BTreeMap<String, u64> = closed.iter().map(|(u, (_, e))| (u.clone(), *e)).collect();
    assert_eq!(events, user_model(5, 300));
    assert!(closed.values().all(|(sessions, _)| *sessions == 1), "one session per user: {closed:?}");
}

/// An example with `--checkpoint`, resuming from `ck`.
fn spawn_example(name: &str, addr: &str, out: &Path, ck: &Path, rate: u32, interval: &str, extra: &[&str]) -> Child {
    Command::new(example(name))
        .args(["--brokers", addr, "--earliest", "--batch-interval", interval, "--print", "1"])
        .args(extra)
        .args(["--max-rate-per-partition", &rate.to_string(), "--out"])
        .arg(out)
        .arg("--checkpoint")
        .arg(ck)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the example")
}

/// Kills `name` at random moments 10 times (restarting it from its checkpoint each time), then lets it run until
/// `done` says its output is complete and three more batches wrote their `files` (so that a double count would
/// show).
fn kill_and_restart(
    name: &str,
    files: &str,
    addr: &str,
    dir: &Path,
    interval: &str,
    done: &dyn Fn(&Path) -> bool,
) -> String {
    kill_and_restart_with(name, files, addr, dir, interval, done, &[])
}

/// As [`kill_and_restart`], with more flags for the example.
fn kill_and_restart_with(
    name: &str,
    files: &str,
    addr: &str,
    dir: &Path,
    interval: &str,
    done: &dyn Fn(&Path) -> bool,
    extra: &[&str],
) -> String {
    let seed: u64 = std::env::var("DSTREAM_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let mut log = format!("{name} kill test seed {seed} (DSTREAM_KILL_SEED={seed} replays the kill moments)\n");
    let (out, ck) = (dir.join("out"), dir.join("ck"));
    let mut rng = SplitMix64::new(seed);
    for kill in 1..=10 {
        let after = Duration::from_millis(100 + rng.below(900) as u64);
        let mut child = spawn_example(name, addr, &out, &ck, 200, interval, extra);
        let started = Instant::now();
        while started.elapsed() < after {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("{name} exited early ({status}) before kill {kill}\n{log}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let written = if out.exists() { batch_files(&out, files).len() } else { 0 };
        log.push_str(&format!("kill {kill}: SIGKILL {} ms after start; {written} batch files\n", after.as_millis()));
    }
    // The kills must have landed while the program was running batches, not only while it started.
    let checkpoints = std::fs::read_dir(&ck).map_or(0, |d| d.count());
    assert!(checkpoints > 0 && out.exists() && batch_files(&out, files).len() >= 10, "no progress\n{log}");
    let mut child = spawn_example(name, addr, &out, &ck, 0, interval, extra);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(out.exists() && done(&out)) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{name} exited ({status}) before its output was complete\n{log}");
        }
        assert!(Instant::now() < deadline, "{name}: output not complete within 120 s\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = batch_files(&out, files).len();
    while batch_files(&out, files).len() < seen + 3 {
        assert!(Instant::now() < deadline, "{name}: no more batches within 120 s\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    log
}

#[test]
fn word_count_example_survives_sigkill_exactly_once() {
    let Some(b) = broker() else { return };
    const N: u64 = 3000;
    generate(b.addr(), "lines", N, 21, &["--partitions", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let model = word_model(21, N);
    let total: i64 = model.values().sum();
    let done = |out: &Path| {
        let counted: i64 = batch_files(out, "counts").values().map(|l| pairs(l).iter().map(|p| p.1).sum::<i64>()).sum();
        counted >= total
    };
    let log = kill_and_restart("word_count", "counts", b.addr(), dir.path(), "200ms", &done);
    let windows = std::panic::catch_unwind(|| check_word_count(&dir.path().join("out"), &model))
        .unwrap_or_else(|_| panic!("word_count's output after the kills is wrong\n{log}"));
    assert!(windows > 0, "{log}");
    eprintln!("{log}");
}

#[test]
fn word_count_example_over_two_topics_survives_sigkill_exactly_once() {
    let Some(b) = broker() else { return };
    const N: u64 = 1500;
    generate(b.addr(), "lines", N, 31, &["--partitions", "2"]);
    generate(b.addr(), "more", N, 32, &["--partitions", "3"]);
    let dir = tempfile::tempdir().unwrap();
    let mut model = word_model(31, N);
    for (w, n) in word_model(32, N) {
        *model.entry(w).or_insert(0) += n;
    }
    let total: i64 = model.values().sum();
    let done = |out: &Path| {
        let counted: i64 = batch_files(out, "counts").values().map(|l| pairs(l).iter().map(|p| p.1).sum::<i64>()).sum();
        counted >= total
    };
    let log = kill_and_restart_with(
        "word_count",
        "counts",
        b.addr(),
        dir.path(),
        "200ms",
        &done,
        &["--topics", "lines,more"],
    );
    let windows = std::panic::catch_unwind(|| check_word_count(&dir.path().join("out"), &model))
        .unwrap_or_else(|_| panic!("word_count's output over two topics after the kills is wrong\n{log}"));
    assert!(windows > 0, "{log}");
    eprintln!("{log}");
}

#[test]
fn sessions_example_survives_sigkill_exactly_once() {
    let Some(b) = broker() else { return };
    const N: u64 = 3000;
    generate(b.addr(), "avg", N, 23, &["--partitions", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let model = user_model(23, N);
    let done = |out: &Path| {
        let closed = closed_sessions(out);
        closed.values().map(|(_, e)| e).sum::<u64>() >= N
    };
    let log = kill_and_restart("sessions", "sessions", b.addr(), dir.path(), "200ms", &done);
    let closed = closed_sessions(&dir.path().join("out"));
    let events: BTreeMap<String, u64> = closed.iter().map(|(u, (_, e))| (u.clone(), *e)).collect();
    assert_eq!(events, model, "\n{log}");
    eprintln!("{log}");
}

#[test]
fn lab_example_on_a_machine_without_a_broker_starts_one() {
    if broker().is_none() {
        return;
    }
    // Nothing answers at the default address: the example starts tansu and the lab's generator, as `dstream` does.
    let port = dstream_adapters::broker::free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(example("lab"))
        .args(["--batches", "3", "--batch-interval", "500ms", "--checkpoint"])
        .arg(dir.path().join("ck"))
        .env("DSTREAM_DEFAULT_BROKER", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).unwrap();
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).unwrap();
        s
    });
    let status = exit_within(&mut child, Duration::from_secs(120));
    let (stdout, stderr) = (o.join().unwrap(), e.join().unwrap());
    assert!(status.success(), "{stderr}");
    assert_eq!(stderr.matches("starting a local tansu broker").count(), 1, "{stderr}");
    let counts = common::batch_record_counts(&stderr);
    assert_eq!(counts.len(), 3, "{stderr}");
    // The generator writes 100 messages a second: the later 500 ms batches hold some, and they are printed.
    assert!(counts[1..].iter().all(|&c| c > 0), "{stderr}");
    assert!(!common::printed_elements(&stdout).is_empty(), "{stdout}");
}
