//! The `dstream` command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use dstream_adapters::checkpoint::CheckpointStore;
use dstream_adapters::kafka::direct::{OutOfRangePolicy, StartingOffsets};
use dstream_adapters::kafka::records::Codec;
use dstream_adapters::kafka::{Acks, Client, ClientConfig, KafkaError, Security};
use dstream_adapters::recording::{self, Recording, RecordingReader};
use dstream_adapters::run::{MalformedReporter, RunError};
use dstream_adapters::streaming::{KafkaParams, KafkaUtils, StreamingContext, StreamingError};
use dstream_adapters::{replay, text};
use dstream_cli::generate::{generate, GenerateOptions};
use dstream_cli::jobs;
use dstream_cli::lab::{lab_program, LabConfig};
use dstream_cli::lab::{lab_state, write_lab_state};
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
    /// Kafka client configuration, a properties file: security.protocol, sasl.*, ssl.* (see README).
    #[arg(long, value_name = "FILE", requires = "brokers")]
    kafka_config: Option<PathBuf>,
    /// The topic to read; several, comma-separated (with --brokers), are read as one stream.
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
    /// read_uncommitted (Kafka's and Spark's default) or read_committed: batches end at the last stable offset and
    /// leave out aborted transactions.
    #[arg(long, default_value = "read_uncommitted")]
    isolation_level: dstream_adapters::kafka::IsolationLevel,
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
    /// Spark's: grouped by state partition (JVM hashCode mod 2, as under `local[2]`), arrival order within each.
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
        /// Kafka client configuration, a properties file: security.protocol, sasl.*, ssl.* (see README).
        #[arg(long, value_name = "FILE")]
        kafka_config: Option<PathBuf>,
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
    /// Connect to every broker as `run` would and say how each connection is secured (TLS version and cipher
    /// suite, the broker's certificate and its days left, SASL) and, with --topic, the topics' partitions.
    Check {
        /// Kafka brokers, HOST:PORT[,HOST:PORT...].
        #[arg(long, default_value = "localhost:9092", value_parser = brokers_arg)]
        brokers: String,
        /// Kafka client configuration, a properties file: security.protocol, sasl.*, ssl.* (see README).
        #[arg(long, value_name = "FILE")]
        kafka_config: Option<PathBuf>,
        /// Topics to describe, comma-separated.
        #[arg(long, value_delimiter = ',')]
        topic: Vec<String>,
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
    match cli.command {
        // A run installs its context's stop handler (Ctrl-C, SIGTERM, SIGHUP).
        None => return cmd_run(cli.run),
        Some(Command::Run(args)) => return cmd_run(args),
        Some(Command::Record { out, mut run }) => {
            run.record = Some(out);
            run.quiet = true;
            return cmd_run(run);
        }
        _ => {}
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // Ctrl-C, SIGTERM and SIGHUP stop `generate` between batches; a second one exits at once.
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .context("cannot install the handler for Ctrl-C, SIGTERM and SIGHUP")?;
    match cli.command {
        None | Some(Command::Run(_)) | Some(Command::Record { .. }) => unreachable!("runs are handled above"),
        Some(Command::Generate { brokers, kafka_config, topic, rate, count, seed, partitions, compression, acks }) => {
            let brokers = parse_brokers(&brokers)?;
            let cfg = ClientConfig { security: kafka_security(kafka_config.as_deref())?, ..ClientConfig::default() };
            let mut client = Client::connect(&brokers, cfg).map_err(explain)?;
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
        Some(Command::Check { brokers, kafka_config, topic }) => {
            let brokers = parse_brokers(&brokers)?;
            let cfg = ClientConfig { security: kafka_security(kafka_config.as_deref())?, ..ClientConfig::default() };
            let mut client = Client::connect(&brokers, cfg).map_err(explain)?;
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            let report = dstream_cli::check::check(&mut client, &topic, now).map_err(explain)?;
            let mut out = std::io::stdout().lock();
            out.write_all(report.as_bytes())?;
            out.flush()?;
            Ok(())
        }
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
            let summary = dstream_cli::lines::replay_lines(
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

/// `--kafka-config FILE`'s security settings (PLAINTEXT without it), with its warning, if any, on stderr.
fn kafka_security(path: Option<&Path>) -> Result<Security> {
    let security = Security::from_flag(path)?;
    if let Some(w) = security.warning() {
        eprintln!("dstream: {w}");
    }
    Ok(security)
}

/// `dstream run` (and `record`): the lab program on a streaming context, as a user's program runs.
fn cmd_run(args: RunArgs) -> Result<()> {
    let mut ssc = StreamingContext::new(args.batch_interval);
    // Ctrl-C, SIGTERM and SIGHUP all ask for a graceful stop (the running batch finishes, is checkpointed, and
    // what this run started is stopped); a second one does not wait for the running batch. The processes a run
    // started die with it then too: the kernel kills them when this process ends (see `broker`).
    ssc.stop_handle().stop_on_ctrl_c().context("cannot install the handler for Ctrl-C, SIGTERM and SIGHUP")?;
    // With no --brokers: the default address if something answers there (DSTREAM_DEFAULT_BROKER moves it; tests
    // use it to stay off port 9092), else a local tansu and the lab's generator, stopped when the run ends.
    let topics: Vec<&str> = args.topic.split(',').map(str::trim).collect();
    if topics.iter().any(|t| t.is_empty()) {
        bail!("--topic {:?} names an empty topic: expected TOPIC[,TOPIC...]", args.topic);
    }
    let provisioned = match &args.brokers {
        Some(_) => None,
        None if topics.len() > 1 => bail!("reading several topics needs --brokers (a local broker serves one topic)"),
        None => Some(dstream_cli::generate::local_lab_kafka(None, &args.topic)?),
    };
    let brokers = match (&args.brokers, &provisioned) {
        (Some(b), _) => parse_brokers(b)?,
        (None, Some(local)) => vec![local.brokers().to_string()],
        (None, None) => unreachable!("provisioned without --brokers"),
    };
    let lab = lab_config(args.print, args.on_malformed, args.order);
    let client = ClientConfig {
        retry_for: std::time::Duration::from_millis(args.retry_for.millis() as u64),
        max_batch_bytes: (args.max_batch_mib << 20) as usize,
        isolation_level: args.isolation_level,
        security: kafka_security(args.kafka_config.as_deref())?,
        ..ClientConfig::default()
    };
    let params = KafkaParams::new(&brokers.join(","))
        .starting_offsets(match args.starting_offsets {
            StartingOffsetsArg::Earliest => StartingOffsets::Earliest,
            StartingOffsetsArg::Latest => StartingOffsets::Latest,
        })
        .max_rate_per_partition(args.max_rate_per_partition)
        .on_out_of_range(match args.on_offset_out_of_range {
            OutOfRangeArg::Fail => OutOfRangePolicy::Fail,
            OutOfRangeArg::Earliest => OutOfRangePolicy::Earliest,
            OutOfRangeArg::Latest => OutOfRangePolicy::Latest,
        })
        .client_config(client);
    ssc.app_name(dstream_cli::lab::JOB_NAME).on_malformed(lab.malformed);
    let messages = KafkaUtils::create_direct_stream_of(&mut ssc, params, &topics);
    lab_program(&messages, &lab);
    if args.quiet {
        ssc.print_to(std::io::sink());
    }
    if let Some(n) = args.batches {
        ssc.stop_after_batches(n);
    }
    if let Some(dir) = &args.checkpoint {
        ssc.checkpoint(dir)
            .keep_checkpoints(args.keep_checkpoints as usize)
            .reset_checkpoint(args.reset_checkpoint)
            .checkpoint_every(args.checkpoint_every);
    }
    if let Some(path) = &args.record {
        ssc.record_to(path).recording_params(jobs::lab_params(&lab));
    }
    if args.ui != "off" {
        ssc.ui(&args.ui, args.ui_retained_batches as usize).ui_allow_remote(args.ui_allow_remote);
    }
    ssc.start().map_err(explain_streaming)?;
    ssc.await_termination().map_err(explain_streaming)?;
    drop(provisioned);
    let summary = ssc.summary();
    eprintln!(
        "dstream: {} after {} batches, {} records ({} malformed)",
        if summary.stopped { "stopped" } else { "done" },
        summary.batches,
        summary.records,
        summary.malformed
    );
    Ok(())
}

/// Adds what to do to a streaming context's errors a person can fix.
fn explain_streaming(e: StreamingError) -> anyhow::Error {
    match e {
        StreamingError::Kafka(e) | StreamingError::Run(RunError::Kafka(e)) => explain(e),
        e => anyhow::Error::new(e),
    }
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
    let inputs = meta.fingerprint.inputs();
    // A job of several topics: each offset names its topic (topic/partition:offset).
    let offsets: Vec<String> = meta
        .next_offsets
        .iter()
        .map(|n| match dstream_core::record::split_partition(n.partition) {
            (i, p) if inputs.len() > 1 => {
                format!("{}/{p}:{}", inputs.get(i).map_or("?", |t| t.topic.as_str()), n.offset)
            }
            _ => format!("{}:{}", n.partition, n.offset),
        })
        .collect();
    let topics: Vec<String> = inputs
        .iter()
        .map(|t| {
            let id = t.topic_id.as_ref().map_or(String::new(), |id| format!(", topic id {id}"));
            format!("{} ({} partitions{id})", t.topic, t.partitions)
        })
        .collect();
    let on = match inputs.as_slice() {
        [only] if only.topic.is_empty() => "no Kafka topic".to_string(),
        [_] => format!("topic {}", topics[0]),
        _ => format!("topics {}", topics.join(", ")),
    };
    eprintln!(
        "dstream: {}: job {} on {on}, batch {}, next offsets {}, {} pending batch(es), {} keys",
        loaded.path.display(),
        meta.fingerprint.job,
        meta.time,
        if offsets.is_empty() { "none".to_string() } else { offsets.join(" ") },
        meta.pending.len(),
        state.iter().map(|op| op.len).sum::<u64>()
    );
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match (meta.fingerprint.job == dstream_cli::lab::JOB_NAME).then(|| lab_state(state)).flatten() {
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
