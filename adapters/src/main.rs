//! The `dstream` command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use dstream_core::lab::LabConfig;
use dstream_core::{Duration, MalformedPolicy};
use std::io::Write;
use std::path::PathBuf;
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
    /// Replay a file of message values through the lab job with a manual clock.
    Replay {
        /// Text file: one message value per line.
        #[arg(long)]
        lines: PathBuf,
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
            let first = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
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
        Command::Replay { lines, records_per_batch, print, batch_interval, on_malformed } => {
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
            let mut reported = 0u64;
            let mut on_bad = |m: &dstream_core::Malformed| {
                if reported < 20 {
                    eprintln!("dstream: skipped {m}");
                }
                reported += 1;
            };
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
            if reported > 20 {
                eprintln!("dstream: ... {} more malformed records not shown", reported - 20);
            }
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
