//! A checkpoint directory on a real, small and full filesystem (a tmpfs mounted in a private mount namespace
//! with `unshare`, so nothing outlives the test): a write that runs out of space leaves no temporary file and says
//! so once; a restart after a leftover filled the disk cleans up first and runs without a person.

mod common;

use common::{broker, checkpoint_rows, generate};
use std::path::Path;
use std::process::Command;

/// Runs `script` with `sh` in a new mount namespace (a user namespace too where that is allowed) with a tmpfs of
/// `size` mounted at `$FS`; `$DSTREAM` is the binary and `$OUT` a directory on the ordinary filesystem for results.
fn in_small_fs(tmp: &Path, size: &str, script: &str) {
    let fs = tmp.join("fs");
    let out = tmp.join("out");
    std::fs::create_dir_all(&fs).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let body = format!("set -u\nmount -t tmpfs -o size={size} dstream-test \"$FS\" || exit 97\n{script}");
    let mut last = String::new();
    // Unprivileged: a user namespace maps us to root in it. As root (CI containers), a mount namespace suffices.
    for flags in [&["-r", "-m"][..], &["-m"][..]] {
        let res = Command::new("unshare")
            .args(flags)
            .args(["sh", "-c", &body])
            .env("FS", &fs)
            .env("OUT", &out)
            .env("DSTREAM", env!("CARGO_BIN_EXE_dstream"))
            .output()
            .expect("run unshare (util-linux)");
        if res.status.success() {
            return;
        }
        last = format!("{}: {}", res.status, String::from_utf8_lossy(&res.stderr));
    }
    panic!("cannot run a script over a private tmpfs (unshare -rm, unshare -m): {last}");
}

fn read(out: &Path, name: &str) -> String {
    std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Issue 14 item 7: a stale temporary file that fills the disk is removed before the writability probe, so the
/// restart works with nobody deleting files; the message names what was removed.
#[test]
fn a_restart_after_a_leftover_filled_the_disk_cleans_up_and_runs() {
    let Some(b) = broker() else { return };
    generate(b.addr(), "avg", 100, 8, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let script = format!(
        r#"
mkdir "$FS/ck"
# A write that was cut short took every free byte.
dd if=/dev/zero of="$FS/ck/.checkpoint-123.tmp" bs=4096 2>/dev/null
df -k "$FS" | tail -1 > "$OUT/df"
"$DSTREAM" run --brokers {addr} --starting-offsets earliest --batch-interval 100ms --batches 1 \
    --checkpoint "$FS/ck" > /dev/null 2> "$OUT/run.err"
echo $? > "$OUT/run.rc"
"$DSTREAM" checkpoint show "$FS/ck" > "$OUT/show.out" 2> "$OUT/show.err"
ls -A "$FS/ck" > "$OUT/ls"
"#,
        addr = b.addr()
    );
    in_small_fs(tmp.path(), "256k", &script);
    let out = tmp.path().join("out");
    let df = read(&out, "df");
    assert_eq!(df.split_whitespace().nth(3), Some("0"), "the leftover fills the filesystem: {df}");
    let err = read(&out, "run.err");
    assert_eq!(read(&out, "run.rc").trim(), "0", "{err}");
    assert!(err.contains(".checkpoint-123.tmp, a temporary file of a checkpoint write that did not finish"), "{err}");
    let rows = checkpoint_rows(&read(&out, "show.out"));
    assert_eq!(rows.iter().map(|r| r.2).sum::<u64>(), 100, "{}", read(&out, "show.err"));
    let ls = read(&out, "ls");
    assert!(!ls.contains(".tmp"), "{ls}");
}

/// Issue 14 items 7 and 11: the disk fills while a run checkpoints. The run stops with one line that says "No
/// space left on device" once, leaves no temporary file, and once space is freed the next run resumes from the
/// last checkpoint written, every record counted once.
#[test]
fn a_full_disk_mid_run_stops_cleanly_and_the_restart_resumes_exactly() {
    let Some(b) = broker() else { return };
    generate(b.addr(), "avg", 300, 6, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let script = format!(
        r#"
run() {{ "$DSTREAM" run --brokers {addr} --starting-offsets earliest --batch-interval 100ms \
    --max-rate-per-partition 1000 --checkpoint "$FS/ck" "$@" > /dev/null; }}
run --batches 1 2> "$OUT/first.err" || exit 1
# Fill the filesystem, then free one page: the probe and one more checkpoint fit, the next one does not.
dd if=/dev/zero of="$FS/filler" bs=4096 2>/dev/null
truncate -s -4096 "$FS/filler"
run --batches 3 2> "$OUT/full.err"
echo $? > "$OUT/full.rc"
ls -A "$FS/ck" > "$OUT/ls"
rm "$FS/filler"
run --batches 10 2> "$OUT/after.err"
echo $? > "$OUT/after.rc"
"$DSTREAM" checkpoint show "$FS/ck" > "$OUT/show.out" 2> "$OUT/show.err"
"#,
        addr = b.addr()
    );
    in_small_fs(tmp.path(), "256k", &script);
    let out = tmp.path().join("out");
    let err = read(&out, "full.err");
    assert_eq!(read(&out, "full.rc").trim(), "1", "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("dstream: ") && last.contains("cannot write checkpoint"), "{err}");
    assert_eq!(last.matches("No space left on device").count(), 1, "{err}");
    let ls = read(&out, "ls");
    assert!(!ls.contains(".tmp"), "a failed write leaves its temporary file: {ls}");
    let after = read(&out, "after.err");
    assert_eq!(read(&out, "after.rc").trim(), "0", "{after}");
    assert!(after.contains("dstream: resuming from"), "{after}");
    let rows = checkpoint_rows(&read(&out, "show.out"));
    assert_eq!(rows.iter().map(|r| r.2).sum::<u64>(), 300, "{}", read(&out, "show.err"));
}
