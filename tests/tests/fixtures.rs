//! Snapshot tests: every text recording in `tests/fixtures/*.rec` replayed, its printed output (and any
//! malformed-record reports, marked `!`) compared with `tests/tests/snapshots/`. Each snapshot was checked by
//! hand against SPARK-SEMANTICS.md; the fixture's comment says which rule it shows.

use dstream_cli::jobs::build_job;
use dstream_harness::recording::Recording;
use dstream_harness::replay::replay_frames;
use dstream_harness::text::{from_text, to_text};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(format!("{name}.rec"))
}

/// Replays a recording, interleaving each batch's malformed records after its printed text.
fn render(rec: &Recording) -> String {
    let job = build_job(&rec.header).expect("fixture names a known job");
    let mut out = String::new();
    let mut sink = Vec::new();
    replay_frames(job, &rec.header, rec.frames.iter().cloned().map(Ok), &mut sink, &mut |report| {
        out.push_str(&report.printed);
        for m in &report.malformed {
            out.push_str(&format!("! {m}\n"));
        }
    })
    .expect("fixture replays");
    out
}

fn load(name: &str) -> Recording {
    let path = fixture(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    from_text(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replays the fixture, checks that its binary and re-printed text forms replay the same, returns the output.
fn check(name: &str) -> String {
    let rec = load(name);
    let out = render(&rec);
    let binary = Recording::from_bytes(&rec.to_bytes().unwrap()).unwrap();
    assert_eq!(render(&binary), out, "{name}: binary form replays differently");
    let retext = from_text(&to_text(&rec)).unwrap();
    assert_eq!(retext, rec, "{name}: text form does not round-trip");
    out
}

macro_rules! fixtures {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                insta::assert_snapshot!(stringify!($name), check(stringify!($name)));
            }
        )*

        #[test]
        fn every_fixture_has_a_snapshot_test() {
            let known = [$(stringify!($name)),*];
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "rec") {
                    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                    assert!(known.contains(&stem.as_str()), "fixture {stem}.rec has no snapshot test");
                }
            }
        }
    };
}

fixtures!(
    lab,
    empty_batches,
    malformed,
    partitions,
    timeout_spark,
    timeout_every_batch,
    initial_state,
    state_removal,
    print_truncation,
    windowed,
    windowed_inverse,
    spark_order,
);
