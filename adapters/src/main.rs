//! The `dstream` command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use dstream_core::lab::LabConfig;
use dstream_core::{Duration, MalformedPolicy};
use dstream_harness::recording::{self, Recording, RecordingReader};
use dstream_harness::{jobs, replay, text};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "dstream",
    version,
    about = "Spark Streaming's micro-batch model, in Rust: the lab's running-average job."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnMalformed {
    Skip,
    Fail,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a recording (binary or text form, detected) batch by batch with a manual clock, printing
    /// exactly what the recorded run printed; or, with --lines, a file of message values through the lab job.
    Replay {
        /// A recording: binary (from `run --record` or `recording build`) or its text form. The job and its
        /// parameters come from the recording's header; the options below apply to --lines only.
        #[arg(required_unless_present = "lines", conflicts_with = "lines")]
        file: Option<PathBuf>,
        /// Text file: one message value per line.
        #[arg(long)]
        lines: Option<PathBuf>,
        /// Lines per batch.
        #[arg(long, default_value_t = 200)]
        records_per_batch: usize,
        /// Elements printed per batch (Spark's print(num)).
        #[arg(long, default_value_t = 10)]
        print: usize,
        /// Batch interval, such as 2s or 500ms.
        #[arg(long, default_value = "2s")]
        batch_interval: Duration,
        /// What to do with a malformed record.
        #[arg(long, value_enum, default_value = "skip")]
        on_malformed: OnMalformed,
    },
    /// Convert recordings between their binary and text forms.
    Recording {
        #[command(subcommand)]
        command: RecordingCommand,
    },
}

#[derive(Subcommand)]
enum RecordingCommand {
    /// Print a recording (binary or text) in its text form.
    Dump {
        /// The recording.
        file: PathBuf,
    },
    /// Write the binary form of a text recording.
    Build {
        /// The text recording.
        text: PathBuf,
        /// The binary recording to write (replaced atomically).
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// Reports malformed records on stderr: the first 20, then a count.
struct MalformedReporter {
    reported: u64,
}

impl MalformedReporter {
    fn report(&mut self, m: &dstream_core::Malformed) {
        if self.reported < 20 {
            eprintln!("dstream: skipped {m}");
        }
        self.reported += 1;
    }
    fn finish(&self) {
        if self.reported > 20 {
            eprintln!("dstream: ... {} more malformed records not shown", self.reported - 20);
        }
    }
}

/// Reads a whole recording, binary or text form.
fn read_recording(path: &Path) -> Result<Recording> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if recording::is_binary(&bytes) {
        Recording::from_bytes(&bytes).with_context(|| format!("{}", path.display()))
    } else {
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("{}: neither a binary recording nor UTF-8 text", path.display()))?;
        text::from_text(text).with_context(|| format!("{}", path.display()))
    }
}

fn replay_recording(path: &Path) -> Result<()> {
    let started = Instant::now();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut bad = MalformedReporter { reported: 0 };
    let mut on_batch = |r: &dstream_core::BatchReport| r.malformed.iter().for_each(|m| bad.report(m));
    let mut head = [0u8; 8];
    let is_binary = {
        let mut f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let n = std::io::Read::read(&mut f, &mut head).with_context(|| format!("cannot read {}", path.display()))?;
        recording::is_binary(&head[..n])
    };
    let summary = if is_binary {
        // Stream frame by frame: a long live recording never has to fit in memory.
        let reader = RecordingReader::open(path).with_context(|| format!("{}", path.display()))?;
        let header = reader.header().clone();
        let job = jobs::build_job(&header).with_context(|| format!("{}", path.display()))?;
        replay::replay_frames(job, &header, reader, &mut out, &mut on_batch)
    } else {
        let rec = read_recording(path)?;
        let job = jobs::build_job(&rec.header).with_context(|| format!("{}", path.display()))?;
        replay::replay_frames(job, &rec.header, rec.frames.into_iter().map(Ok), &mut out, &mut on_batch)
    }
    .with_context(|| format!("replay of {}", path.display()))?;
    out.flush()?;
    drop(out);
    bad.finish();
    eprintln!(
        "dstream: replayed {} records ({} malformed) in {} batches, {:.3} s",
        summary.records,
        summary.malformed,
        summary.batches,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            // One line a person can act on; `--help` has the rest.
            let text = e.to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines.next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_string();
            if first.ends_with(':') {
                // "the following required arguments were not provided:" names them on the next line.
                first = format!("{first} {}", lines.next().unwrap_or(""));
            }
            eprintln!("dstream: {first} (see dstream --help)");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(cli) {
        eprintln!("dstream: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Recording { command: RecordingCommand::Dump { file } } => {
            let rec = read_recording(&file)?;
            let mut out = std::io::stdout().lock();
            out.write_all(text::to_text(&rec).as_bytes())?;
            out.flush()?;
            Ok(())
        }
        Command::Recording { command: RecordingCommand::Build { text: input, output } } => {
            let bytes = std::fs::read(&input).with_context(|| format!("cannot read {}", input.display()))?;
            let text = std::str::from_utf8(&bytes).with_context(|| format!("{}: not UTF-8 text", input.display()))?;
            let rec = text::from_text(text).with_context(|| format!("{}", input.display()))?;
            rec.write(&output).with_context(|| format!("cannot write {}", output.display()))?;
            eprintln!("dstream: wrote {} batches to {}", rec.frames.len(), output.display());
            Ok(())
        }
        Command::Replay { file: Some(file), .. } => replay_recording(&file),
        Command::Replay { file: None, lines, records_per_batch, print, batch_interval, on_malformed } => {
            let Some(lines) = lines else { bail!("give a recording FILE or --lines FILE") };
            if records_per_batch == 0 {
                bail!("--records-per-batch must be at least 1");
            }
            let text = std::fs::read(&lines).with_context(|| format!("cannot read {}", lines.display()))?;
            let config = LabConfig {
                print: Some(print),
                malformed: match on_malformed {
                    OnMalformed::Skip => MalformedPolicy::Skip,
                    OnMalformed::Fail => MalformedPolicy::Fail,
                },
                ..LabConfig::default()
            };
            let started = Instant::now();
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let mut bad = MalformedReporter { reported: 0 };
            let mut on_bad = |m: &dstream_core::Malformed| bad.report(m);
            let summary = dstream_harness::lines::replay_lines(
                &text,
                records_per_batch,
                batch_interval,
                config,
                &mut out,
                &mut on_bad,
            )?;
            out.flush()?;
            drop(out);
            bad.finish();
            eprintln!(
                "dstream: replayed {} records ({} malformed) in {} batches, {:.3} s",
                summary.records,
                summary.malformed,
                summary.batches,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}
