//! The `dstream` command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use dstream_adapters::checkpoint::{CheckpointStore, Fingerprint};
use dstream_adapters::clock::SystemClock;
use dstream_adapters::generate::{generate, GenerateOptions};
use dstream_adapters::kafka::direct::{OutOfRangePolicy, StartingOffsets};
use dstream_adapters::kafka::records::Codec;
use dstream_adapters::kafka::{Acks, Client, ClientConfig, KafkaError};
use dstream_adapters::local::LocalKafka;
use dstream_adapters::record::Recorder;
use dstream_adapters::recording::{self, Recording, RecordingReader};
use dstream_adapters::recovery::{lab_state, restore, write_lab_state, Checkpointer};
use dstream_adapters::run::{run_job, MalformedReporter, Resume, RunOptions, Start};
use dstream_adapters::streaming::StandardHooks;
use dstream_adapters::ui::{UiCollector, UiConfig, UiServer};
use dstream_adapters::{jobs, replay, text};
use dstream_core::lab::{LabConfig, LabJob};
use dstream_core::Clock;
use dstream_core::{Duration, MalformedPolicy, OutputOrder};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Large batch buffers on transparent huge pages: far fewer page faults when a batch first fills them.
#[global_allocator]
static ALLOC: dstream_adapters::alloc::HugePageAlloc = dstream_adapters::alloc::HugePageAlloc;

#[derive(Parser)]
#[command(
    name = "dstream",
    version,
    about = "Spark Streaming's micro-batch model, in Rust: the lab's running-average job."
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no subcommand: `run` with these options.
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StartingOffsetsArg {
    Earliest,
    Latest,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutOfRangeArg {
    Fail,
    Earliest,
    Latest,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AcksArg {
    #[value(name = "1")]
    Leader,
    All,
}

/// Options of `dstream run`.
#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Kafka brokers, HOST:PORT[,HOST:PORT...]. Without it: localhost:9092, or a local tansu broker if none answers.
    #[arg(long, value_parser = brokers_arg)]
    brokers: Option<String>,
    /// The topic to read.
    #[arg(long, default_value = "avg")]
    topic: String,
    /// Batch interval, such as 2s or 500ms.
    #[arg(long, allow_hyphen_values = true, default_value = "2s")]
    batch_interval: Duration,
    /// Where to start without a checkpoint.
    #[arg(long, value_enum, default_value = "latest")]
    starting_offsets: StartingOffsetsArg,
    /// Records per partition per second (0 = unlimited).
    #[arg(long, allow_hyphen_values = true, default_value_t = 0)]
    max_rate_per_partition: u64,
    /// Stop after this many batches.
    #[arg(long, allow_hyphen_values = true)]
    batches: Option<u64>,
    /// Elements printed per batch (Spark's print(num)).
    #[arg(long, allow_hyphen_values = true, default_value_t = 10)]
    print: usize,
    /// What to do with a malformed record.
    #[arg(long, value_enum, default_value = "skip")]
    on_malformed: OnMalformed,
    /// Order of the printed elements within a batch.
    #[arg(long, value_enum, default_value = "arrival")]
    order: OrderArg,
    /// What to do when the next offsets fell out of the log: fail (as Spark), or skip to earliest/latest with a warning.
    #[arg(long, value_enum, default_value = "fail")]
    on_offset_out_of_range: OutOfRangeArg,
    /// How long to ride out an unreachable or restarting broker before giving up.
    #[arg(long, allow_hyphen_values = true, default_value = "60s")]
    retry_for: Duration,
    /// Most MiB one record batch may take once decompressed; a batch beyond it stops the run with an error
    /// naming its partition and offsets.
    #[arg(long, allow_hyphen_values = true, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    max_batch_mib: u64,
    /// Also write every batch (time, ranges, records) to this recording, for `dstream replay FILE`.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Print nothing on stdout (set by `record`).
    #[arg(skip)]
    quiet: bool,
    /// Checkpoint directory: resume from its newest valid checkpoint, save state and offsets after batches.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Save a checkpoint every N batches (and when stopping).
    #[arg(long, allow_hyphen_values = true, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every: u64,
    /// Checkpoints kept in the directory (the newest).
    #[arg(long, allow_hyphen_values = true, default_value_t = dstream_adapters::checkpoint::DEFAULT_KEEP as u64, value_parser = clap::value_parser!(u64).range(1..))]
    keep_checkpoints: u64,
    /// Start fresh on purpose: move the directory's checkpoints aside (into DIR/discarded-N) instead of resuming.
    #[arg(long, requires = "checkpoint")]
    reset_checkpoint: bool,
    /// Serve the web UI (page, JSON API, /metrics) on this loopback HOST:PORT (a taken port is followed by the
    /// next 16, then any free one), or `off`.
    #[arg(long, default_value = "127.0.0.1:4040", value_name = "ADDR|off")]
    ui: String,
    /// Completed batches the web UI keeps (the newest).
    #[arg(long, default_value_t = dstream_adapters::ui::DEFAULT_RETAINED_BATCHES as u64, value_parser = clap::value_parser!(u64).range(1..))]
    ui_retained_batches: u64,
    /// Let --ui listen on an address beyond loopback.
    #[arg(long)]
    ui_allow_remote: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnMalformed {
    Skip,
    Fail,
}

/// Order of the printed elements within a batch.
#[derive(Clone, Copy, Default, clap::ValueEnum)]
enum OrderArg {
    /// (Kafka partition, offset) order: dstream's documented default.
    #[default]
    Arrival,
    /// Spark's: grouped by state partition (JVM hashCode mod 2, as under local[2]), arrival order within each.
    Spark,
}

/// The lab job's configuration from the command line.
fn lab_config(print: usize, on_malformed: OnMalformed, order: OrderArg) -> LabConfig {
    let mut config = LabConfig {
        print: Some(print),
        malformed: match on_malformed {
            OnMalformed::Skip => MalformedPolicy::Skip,
            OnMalformed::Fail => MalformedPolicy::Fail,
        },
        ..LabConfig::default()
    };
    config.state.output_order = match order {
        OrderArg::Arrival => OutputOrder::Arrival,
        OrderArg::Spark => OutputOrder::SparkPartitions,
    };
    config
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
        #[arg(long, allow_hyphen_values = true, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
        records_per_batch: u64,
        /// Elements printed per batch (Spark's print(num)).
        #[arg(long, allow_hyphen_values = true, default_value_t = 10)]
        print: usize,
        /// Batch interval, such as 2s or 500ms.
        #[arg(long, allow_hyphen_values = true, default_value = "2s")]
        batch_interval: Duration,
        /// What to do with a malformed record.
        #[arg(long, value_enum, default_value = "skip")]
        on_malformed: OnMalformed,
        /// Order of the printed elements within a batch.
        #[arg(long, value_enum, default_value = "arrival")]
        order: OrderArg,
    },
    /// Run the lab job live on a Kafka topic (the default command).
    Run(RunArgs),
    /// Produce the lab's messages: letter a-z and value 0-25, uniform, no key.
    Generate {
        /// Kafka brokers, HOST:PORT[,HOST:PORT...].
        #[arg(long, default_value = "localhost:9092", value_parser = brokers_arg)]
        brokers: String,
        /// The topic (created if missing).
        #[arg(long, default_value = "avg")]
        topic: String,
        /// Messages per second; 0 = as fast as possible.
        #[arg(long, allow_hyphen_values = true, default_value_t = 100)]
        rate: u64,
        /// Messages to send (default: until Ctrl-C).
        #[arg(long, allow_hyphen_values = true)]
        count: Option<u64>,
        /// Seed of the generator (default: from the clock).
        #[arg(long, allow_hyphen_values = true)]
        seed: Option<u64>,
        /// Partitions of the topic if it is created.
        #[arg(long, allow_hyphen_values = true, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: i32,
        /// Compression of produced batches.
        #[arg(long, value_enum, default_value = "none")]
        compression: CompressionArg,
        /// Acknowledgements to wait for.
        #[arg(long, value_enum, default_value = "1")]
        acks: AcksArg,
    },
    /// Record the live topic batch by batch into a recording, as `run --record` without printing.
    Record {
        /// The recording to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Convert recordings between their binary and text forms.
    Recording {
        #[command(subcommand)]
        command: RecordingCommand,
    },
    /// Inspect a checkpoint directory.
    Checkpoint {
        #[command(subcommand)]
        command: CheckpointCommand,
    },
}

#[derive(Subcommand)]
enum CheckpointCommand {
    /// Print the newest valid checkpoint: a summary on stderr, the state on stdout sorted by key, one
    /// `KEY<TAB>SUM<TAB>COUNT<TAB>AVERAGE` line per key.
    Show {
        /// The checkpoint directory.
        dir: PathBuf,
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
    let mut bad = MalformedReporter::default();
    let mut on_batch = |r: &dstream_core::BatchReport| r.malformed.iter().for_each(|m| bad.report(m));
    let mut head = [0u8; 8];
    let is_binary = {
        let mut f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let n = std::io::Read::read(&mut f, &mut head).with_context(|| format!("cannot read {}", path.display()))?;
        recording::is_binary(&head[..n])
    };
    let summary = if is_binary {
        // Stream frame by frame: a long live recording never has to fit in memory.
        let mut reader = RecordingReader::open(path).with_context(|| format!("{}", path.display()))?;
        let job = jobs::build_job(reader.header()).with_context(|| format!("{}", path.display()))?;
        replay::replay_reader(job, &mut reader, &mut out, &mut on_batch)
    } else {
        let rec = read_recording(path)?;
        let job = jobs::build_job(&rec.header).with_context(|| format!("{}", path.display()))?;
        replay::replay_frames(job, &rec.header, rec.frames.into_iter().map(Ok), &mut out, &mut on_batch)
    }
    .with_context(|| format!("replay of {}", path.display()))?;
    out.flush()?;
    drop(out);
    bad.finish();
    print_replay_summary(&summary, started);
    Ok(())
}

/// The summary line of a replay, on stderr.
fn print_replay_summary(summary: &replay::ReplaySummary, started: Instant) {
    eprintln!(
        "dstream: replayed {} records ({} malformed) in {} batches, {:.3} s",
        summary.records,
        summary.malformed,
        summary.batches,
        started.elapsed().as_secs_f64()
    );
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
        eprintln!("dstream: {}", error_line(&e));
        std::process::exit(1);
    }
}

/// An error and its causes on one line, `: `-separated, each cause left out if the text already holds it: many
/// errors show their source in their own message as well as returning it as their cause.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(text.as_str()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn run(cli: Cli) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // Ctrl-C, SIGTERM and SIGHUP all ask for a graceful stop (the running batch finishes, is checkpointed, and
    // what this run started is stopped); a second one does not wait for the running batch. The processes a run
    // started die with it then too: the kernel kills them when this process ends (see `broker`).
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .context("cannot install the handler for Ctrl-C, SIGTERM and SIGHUP")?;
    match cli.command {
        None => cmd_run(cli.run, stop),
        Some(Command::Run(args)) => cmd_run(args, stop),
        Some(Command::Record { out, mut run }) => {
            run.record = Some(out);
            run.quiet = true;
            cmd_run(run, stop)
        }
        Some(Command::Generate { brokers, topic, rate, count, seed, partitions, compression, acks }) => {
            let brokers = parse_brokers(&brokers)?;
            let mut client = Client::connect(&brokers, ClientConfig::default()).map_err(explain)?;
            let opts = GenerateOptions {
                topic,
                rate,
                count,
                seed: seed.unwrap_or_else(clock_seed),
                partitions,
                codec: match compression {
                    CompressionArg::None => Codec::None,
                    CompressionArg::Gzip => Codec::Gzip,
                    CompressionArg::Snappy => Codec::Snappy,
                    CompressionArg::Lz4 => Codec::Lz4,
                    CompressionArg::Zstd => Codec::Zstd,
                },
                acks: match acks {
                    AcksArg::Leader => Acks::Leader,
                    AcksArg::All => Acks::All,
                },
            };
            let started = Instant::now();
            let sent = generate(&mut client, &opts, &stop)?;
            eprintln!(
                "dstream: generated {sent} messages to {} (seed {}) in {:.3} s",
                opts.topic,
                opts.seed,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Some(Command::Checkpoint { command: CheckpointCommand::Show { dir } }) => checkpoint_show(&dir),
        Some(Command::Recording { command: RecordingCommand::Dump { file } }) => {
            let rec = read_recording(&file)?;
            let mut out = std::io::stdout().lock();
            out.write_all(text::to_text(&rec).as_bytes())?;
            out.flush()?;
            Ok(())
        }
        Some(Command::Recording { command: RecordingCommand::Build { text: input, output } }) => {
            let bytes = std::fs::read(&input).with_context(|| format!("cannot read {}", input.display()))?;
            let text = std::str::from_utf8(&bytes).with_context(|| format!("{}: not UTF-8 text", input.display()))?;
            let rec = text::from_text(text).with_context(|| format!("{}", input.display()))?;
            rec.write(&output).with_context(|| format!("cannot write {}", output.display()))?;
            eprintln!("dstream: wrote {} batches to {}", rec.frames.len(), output.display());
            Ok(())
        }
        Some(Command::Replay { file: Some(file), .. }) => replay_recording(&file),
        Some(Command::Replay { file: None, lines, records_per_batch, print, batch_interval, on_malformed, order }) => {
            let Some(lines) = lines else { bail!("give a recording FILE or --lines FILE") };
            let text = std::fs::read(&lines).with_context(|| format!("cannot read {}", lines.display()))?;
            let config = lab_config(print, on_malformed, order);
            let started = Instant::now();
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let mut bad = MalformedReporter::default();
            let mut on_bad = |m: &dstream_core::Malformed| bad.report(m);
            let summary = dstream_adapters::lines::replay_lines(
                &text,
                records_per_batch as usize,
                batch_interval,
                config,
                &mut out,
                &mut on_bad,
            )?;
            out.flush()?;
            drop(out);
            bad.finish();
            print_replay_summary(&summary, started);
            Ok(())
        }
    }
}

/// `--brokers`, checked as clap parses it: a bad value is a usage error (exit 2) like any other.
fn brokers_arg(s: &str) -> std::result::Result<String, String> {
    parse_brokers(s).map(|_| s.to_string()).map_err(|e| e.to_string())
}

fn parse_brokers(s: &str) -> Result<Vec<String>> {
    let list: Vec<String> = s.split(',').map(|b| b.trim().to_string()).filter(|b| !b.is_empty()).collect();
    if list.is_empty() {
        bail!("--brokers is empty: expected HOST:PORT[,HOST:PORT...]");
    }
    Ok(list)
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Adds what to do to errors a person can fix.
fn explain(e: KafkaError) -> anyhow::Error {
    match &e {
        KafkaError::Unreachable { .. } => anyhow::anyhow!("{e}; start a broker there or check --brokers"),
        KafkaError::UnknownTopic { .. } => {
            anyhow::anyhow!("{e}; check --topic, or create it (dstream generate creates it)")
        }
        _ => anyhow::Error::new(e),
    }
}

fn cmd_run(args: RunArgs, stop: Arc<AtomicBool>) -> Result<()> {
    // With no --brokers: the default address if something answers there (DSTREAM_DEFAULT_BROKER moves it; tests
    // use it to stay off port 9092), else a local tansu and the lab's generator, stopped when the run ends.
    let provisioned = match &args.brokers {
        Some(_) => None,
        None => Some(LocalKafka::lab(None, &args.topic)?),
    };
    let brokers = match (&args.brokers, &provisioned) {
        (Some(b), _) => parse_brokers(b)?,
        (None, Some(local)) => vec![local.brokers().to_string()],
        (None, None) => unreachable!("provisioned without --brokers"),
    };
    let opts = RunOptions {
        brokers,
        topic: args.topic.clone(),
        batch_interval: args.batch_interval,
        starting_offsets: match args.starting_offsets {
            StartingOffsetsArg::Earliest => StartingOffsets::Earliest,
            StartingOffsetsArg::Latest => StartingOffsets::Latest,
        },
        max_rate_per_partition: args.max_rate_per_partition,
        batches: args.batches,
        on_out_of_range: match args.on_offset_out_of_range {
            OutOfRangeArg::Fail => OutOfRangePolicy::Fail,
            OutOfRangeArg::Earliest => OutOfRangePolicy::Earliest,
            OutOfRangeArg::Latest => OutOfRangePolicy::Latest,
        },
        client: ClientConfig {
            retry_for: std::time::Duration::from_millis(args.retry_for.millis() as u64),
            max_batch_bytes: (args.max_batch_mib << 20) as usize,
            interrupt: Some(stop.clone()),
            ..ClientConfig::default()
        },
        on_bad_batch: lab_config(0, args.on_malformed, args.order).malformed,
    };
    let stdout = std::io::stdout();
    let mut out: Box<dyn Write> = if args.quiet { Box::new(std::io::sink()) } else { Box::new(stdout.lock()) };
    let mut status = std::io::stderr();
    let lab = lab_config(args.print, args.on_malformed, args.order);
    let recorder = args.record.as_ref().map(|path| Recorder::lab(path.clone(), &opts.topic, &lab));
    let (resume, checkpointer) = match &args.checkpoint {
        None => (None, None),
        Some(dir) => {
            let (resume, checkpointer) = prepare_checkpoint(dir, &args, &opts, &lab)?;
            (resume, Some(checkpointer))
        }
    };
    // Mapped elements that `print` does not show are not kept: a batch's output then needs no memory per record.
    let start = match resume {
        Some(mut r) => {
            r.engine.job_mut().keep_printed_only();
            Start::Resume(r)
        }
        None => {
            let mut job = LabJob::new(lab.clone());
            job.keep_printed_only();
            Start::Fresh(job)
        }
    };
    let (ui, _ui_server) = start_ui(&args, &opts)?.unzip();
    let mut hooks = StandardHooks { recorder, checkpointer, ui, ..StandardHooks::default() };
    let result = run_job(&opts, start, &mut hooks, stop, &mut out, &mut status);
    if let Some(c) = &mut hooks.checkpointer {
        let flushed = c.flush();
        // A failed run's own error says more than a failed last write.
        if result.is_ok() {
            flushed.context("cannot write the last checkpoint")?;
        }
    }
    drop(provisioned);
    if let Some(r) = hooks.recorder.take() {
        let path = args.record.as_ref().expect("a recorder has a path");
        let n = r.finish().with_context(|| format!("cannot finish the recording {}", path.display()))?;
        // The file is created at the first completed batch (its header needs the grid and the partitions).
        if n == 0 {
            eprintln!("dstream: recorded nothing: no batch completed, so {} was not written", path.display());
        } else {
            eprintln!("dstream: recorded {n} batches to {}", path.display());
        }
    }
    let summary = match result {
        Ok(s) => s,
        Err(dstream_adapters::run::RunError::Kafka(e)) => return Err(explain(e)),
        Err(e) => return Err(e.into()),
    };
    hooks.malformed.finish();
    eprintln!(
        "dstream: {} after {} batches, {} records ({} malformed)",
        if summary.stopped { "stopped" } else { "done" },
        summary.batches,
        summary.records,
        summary.malformed
    );
    Ok(())
}

/// Starts the web UI unless `--ui off`, once the topic is known to exist (so that a bad broker or topic is still
/// the one line it is without the UI), and prints its address.
fn start_ui(args: &RunArgs, opts: &RunOptions) -> Result<Option<(UiCollector, UiServer)>> {
    if args.ui == "off" {
        return Ok(None);
    }
    let mut client = Client::connect(&opts.brokers, opts.client.clone()).map_err(explain)?;
    client.partitions(&opts.topic).map_err(explain)?;
    let config = UiConfig {
        topic: opts.topic.clone(),
        batch_interval: opts.batch_interval,
        retained_batches: args.ui_retained_batches as usize,
    };
    let collector = UiCollector::new(config);
    let server = collector.serve(&args.ui, args.ui_allow_remote)?;
    eprintln!("dstream: web UI at {}", server.url());
    Ok(Some((collector, server)))
}

/// Opens the checkpoint directory of `dstream run --checkpoint DIR` and loads the newest valid checkpoint of this
/// job: batches it stored as pending run again (printing again: output is at-least-once), and the run resumes
/// after them. No checkpoint: a fresh start.
fn prepare_checkpoint(
    dir: &Path,
    args: &RunArgs,
    opts: &RunOptions,
    lab: &LabConfig,
) -> Result<(Option<Resume<LabJob>>, Checkpointer)> {
    let store = CheckpointStore::open(dir)?.with_keep(args.keep_checkpoints as usize);
    for leftover in store.removed_leftovers() {
        eprintln!(
            "dstream: removed {}, a temporary file of a checkpoint write that did not finish",
            leftover.display()
        );
    }
    if args.reset_checkpoint {
        if let Some(aside) = store.reset()? {
            eprintln!("dstream: --reset-checkpoint: moved the old checkpoints to {}", aside.display());
        }
    }
    let mut client = Client::connect(&opts.brokers, opts.client.clone()).map_err(explain)?;
    let partitions = client.partitions(&opts.topic).map_err(explain)?;
    let topic_id = client.topic_id(&opts.topic).map_err(explain)?;
    let fingerprint =
        Fingerprint::lab(&opts.topic, partitions.len() as u32, lab, opts.batch_interval).with_topic_id(topic_id);
    let checkpointer = Checkpointer::new(store, fingerprint, args.checkpoint_every).in_background();
    let Some(loaded) = checkpointer.load()? else {
        eprintln!("dstream: no checkpoint in {}: starting fresh", dir.display());
        return Ok((None, checkpointer));
    };
    for skipped in &loaded.skipped {
        eprintln!("dstream: warning: {skipped}; using an older checkpoint");
    }
    let meta = &loaded.checkpoint.meta;
    eprintln!(
        "dstream: resuming from {} (batch {}, {} pending batch(es) to recompute)",
        loaded.path.display(),
        meta.time,
        meta.pending.len()
    );
    let resumed = restore(loaded.checkpoint, LabJob::new(lab.clone()), opts.batch_interval, SystemClock.now())
        .with_context(|| format!("cannot resume from {}", loaded.path.display()))?;
    // The pending batches run first, through the same path as live batches (output, status line, recording,
    // checkpoints), then the run continues live after them.
    let resume = Resume {
        offsets: resumed.next_offsets.iter().map(|n| (n.partition, n.offset)).collect(),
        engine: resumed.engine,
        pending: resumed.pending,
        leader_epochs: resumed.leader_epochs,
    };
    Ok((Some(resume), checkpointer))
}

/// `dstream checkpoint show DIR`: the lab's table for the lab job, a line per stateful operator for any other.
fn checkpoint_show(dir: &Path) -> Result<()> {
    let store = CheckpointStore::open_read_only(dir);
    let Some(loaded) = store.load_latest::<dstream_adapters::checkpoint::JobState>(None)? else {
        bail!("no checkpoint in {}", dir.display());
    };
    for skipped in &loaded.skipped {
        eprintln!("dstream: warning: {skipped}; using an older checkpoint");
    }
    let meta = &loaded.checkpoint.meta;
    let state = &loaded.checkpoint.state;
    let offsets: Vec<String> = meta.next_offsets.iter().map(|n| format!("{}:{}", n.partition, n.offset)).collect();
    eprintln!(
        "dstream: {}: job {} on topic {} ({} partitions{}), batch {}, next offsets {}, {} pending batch(es), {} keys",
        loaded.path.display(),
        meta.fingerprint.job,
        meta.fingerprint.topic,
        meta.fingerprint.partitions,
        meta.fingerprint.topic_id.as_ref().map_or(String::new(), |id| format!(", topic id {id}")),
        meta.time,
        offsets.join(" "),
        meta.pending.len(),
        state.iter().map(|op| op.len).sum::<u64>()
    );
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match (meta.fingerprint.job == dstream_core::lab::JOB_NAME).then(|| lab_state(state)).flatten() {
        Some(lab) => {
            let lab = lab.with_context(|| format!("cannot decode the lab state in {}", loaded.path.display()))?;
            let mut table = Vec::new();
            write_lab_state(&lab, &mut table).with_context(|| format!("checkpoint {}", loaded.path.display()))?;
            out.write_all(&table)?;
        }
        None => {
            writeln!(out, "OPERATOR\tKIND\tKEYS\tBYTES")?;
            for op in state {
                writeln!(out, "{}\t{}\t{}\t{}", op.id, op.kind, op.len, op.bytes.len())?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
