//! Shared helpers of the end-to-end tests and the benchmark: finding (and
//! building) the `nym-client` binary, one in-process localnet per test
//! process, client processes each with its own `$HOME`, websocket helpers.

pub mod netns;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use nym_client::config::Config;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `target/<profile>` of the running test or bench executable.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps" || n == "examples") {
        dir.pop();
    }
    dir
}

/// The `nym-client` binary of the same profile as this test, built (or
/// brought up to date) once per test process with
/// `cargo build -p nym-client --bin nym-client [--release]`: a test crate
/// can't get another package's binary from Cargo (`CARGO_BIN_EXE_*` only
/// covers its own package). Set `NYM_CLIENT_BIN` to use a given binary instead.
pub fn client_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("NYM_CLIENT_BIN") {
            return PathBuf::from(p);
        }
        let dir = profile_dir();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "nym-client", "--bin", "nym-client"]);
        if release {
            cmd.arg("--release");
        }
        if let Some(target) = dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        let status = cmd.status();
        let bin = dir.join("nym-client");
        match status {
            Ok(s) if s.success() => {}
            other => eprintln!("warning: building nym-client failed ({other:?}); using {} if present", bin.display()),
        }
        bin
    })
    .clone()
}

/// A free TCP port on 127.0.0.1, free when asked: by the time a child binds
/// it, something else may have. Only for tests that need a port nothing
/// binds (or a program that can't report the port it bound); a child that
/// listens should be given port 0 and say where it listens ([`TestClient`],
/// the mixnet binaries' start lines).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// What `nym-client run` prints once its websocket listens.
const LISTENING: &str = "Websocket API listening on ws://";

/// One localnet (directory, 3x2 mixnodes, 2 gateways on free 127.0.0.1
/// ports) per test process, on a runtime of its own so it outlives each
/// test's runtime. Returns the directory URL.
pub fn shared_localnet() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow!("runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let dir = match tempfile::tempdir() {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send(Err(anyhow!("tempdir: {e}")));
                        return;
                    }
                };
                match start_localnet(dir.path()).await {
                    Ok(net) => {
                        let _ = tx.send(Ok(net.directory_url()));
                        // Serve for the rest of the process.
                        std::future::pending::<()>().await;
                        drop(net);
                        drop(dir);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        });
        match rx.recv() {
            Ok(Ok(url)) => url,
            Ok(Err(e)) => panic!("localnet failed to start: {e:#}"),
            Err(_) => panic!("localnet thread died"),
        }
    })
    .clone()
}

/// Starts a localnet with its data under `dir`.
pub async fn start_localnet(dir: &Path) -> Result<nym_mixnet::localnet::Localnet> {
    let config = nym_mixnet::localnet::LocalnetConfig::fast(dir);
    nym_mixnet::localnet::Localnet::start(config).await
}

/// Engine rates for tests where speed matters: no mixing delay, no throttling.
pub fn fast(config: &mut Config) {
    config.debug.average_hop_delay = 0;
    config.debug.average_packet_delay = 0;
}

/// A `nym-client` process with its own `$HOME`.
pub struct TestClient {
    pub home: tempfile::TempDir,
    pub id: String,
    /// The websocket's port: 0 until `start` (the client binds port 0 and
    /// says which port it got), or a port the test chose.
    pub port: u16,
    pub address: String,
    /// More arguments for `nym-client run` (e.g. `--allow-origin`).
    pub run_args: Vec<String>,
    /// What `nym-client init` printed.
    pub init_output: String,
    child: Option<Child>,
}

impl TestClient {
    /// `nym-client init` against `directory`, then `tweak` on the config.
    pub fn init(directory: &str, id: &str, tweak: impl FnOnce(&mut Config)) -> Result<TestClient> {
        Self::init_with(directory, id, &[], tweak)
    }

    /// [`TestClient::init`] with more `init` arguments (e.g. `--gateway KEY`).
    pub fn init_with(directory: &str, id: &str, extra: &[&str], tweak: impl FnOnce(&mut Config)) -> Result<TestClient> {
        let args: Vec<&str> = ["--directory", directory].into_iter().chain(extra.iter().copied()).collect();
        Self::init_args(id, &args, tweak)
    }

    /// `nym-client init --id ID` with `args` (which name the directory, or
    /// `--authorities FILE`), then `tweak` on the config.
    pub fn init_args(id: &str, args: &[&str], tweak: impl FnOnce(&mut Config)) -> Result<TestClient> {
        let home = tempfile::tempdir()?;
        // port 0: `run` binds a free port and prints it
        let port = 0;
        let out = Command::new(client_binary())
            .args(["init", "--id", id, "--port", &port.to_string()])
            .args(args)
            .env("HOME", home.path())
            .output()
            .context("running nym-client init")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("init failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
        }
        let address = stdout
            .lines()
            .find_map(|l| l.strip_prefix("The address of this client is: "))
            .ok_or_else(|| anyhow!("init printed no address:\n{stdout}"))?
            .trim()
            .to_string();
        let path = config_path(home.path(), id);
        let mut config = Config::load_from(&path)?;
        tweak(&mut config);
        std::fs::write(&path, config.to_toml()?)?;
        let init_output = stdout.into_owned();
        Ok(TestClient { home, id: id.to_string(), port, address, run_args: Vec::new(), init_output, child: None })
    }

    /// `nym-client run`, returning once its port accepts connections, without
    /// connecting as an application (which would be handed stored messages).
    pub async fn start_unprobed(&mut self) -> Result<()> {
        self.spawn_run().await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            if Instant::now() > deadline {
                bail!("nym-client run did not listen within 30 s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// `nym-client run` on `self.port` (0: any free port), returning once it
    /// has said where it listens; `self.port` is that port then.
    async fn spawn_run(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.home.path().join("client.log"))?;
        let mut child = Command::new(client_binary())
            .args(["run", "--id", &self.id, "--port", &self.port.to_string()])
            .args(&self.run_args)
            .env("HOME", self.home.path())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("spawning nym-client run")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        self.child = Some(child);
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads stdout to its end (so the client never blocks on it); passes on the port.
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix(LISTENING) {
                    let _ = tx.send(addr.trim().parse::<std::net::SocketAddr>().map(|a| a.port()));
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.try_recv() {
                Ok(Ok(port)) => {
                    self.port = port;
                    return Ok(());
                }
                Ok(Err(e)) => bail!("nym-client run printed a bad address: {e}"),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    bail!("nym-client run ended without listening:\n{}", self.log())
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
            if Instant::now() > deadline {
                bail!("nym-client run did not listen within 30 s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `nym-client run`, returning once its websocket answers `selfAddress`.
    pub async fn start(&mut self) -> Result<()> {
        self.spawn_run().await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut ws) = connect(self.port).await {
                let reply = request(&mut ws, &serde_json::json!({"type": "selfAddress"})).await?;
                if reply["address"] != self.address.as_str() {
                    bail!("selfAddress {reply} is not the address init printed ({})", self.address);
                }
                let _ = ws.close(None).await;
                // Let the client notice the application left before a test connects.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!("nym-client run exited with {status}:\n{}", self.log());
                }
            }
            if Instant::now() > deadline {
                bail!("nym-client run did not serve its websocket within 30 s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("client.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the process (SIGSTOP), as a stalled machine would: its
    /// sockets stay open and nobody reads them.
    pub fn freeze(&mut self) -> Result<()> {
        let c = self.child.as_ref().ok_or_else(|| anyhow!("not running"))?;
        let status = Command::new("kill").args(["-STOP", &c.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -STOP failed: {status}");
        }
        Ok(())
    }

    /// The client's store of received messages (data/received_messages.log).
    pub fn received_store(&self) -> nym_client_core::ReceivedStore {
        let path = self.home.path().join(".nym").join("clients").join(&self.id).join("data").join("received_messages.log");
        let bytes = std::fs::read(path).unwrap_or_default();
        nym_client_core::ReceivedStore::load(&bytes).0
    }

    /// The client's x25519 key: the part of its address before the '@'.
    pub fn client_key(&self) -> Result<[u8; 32]> {
        let r: nym_client_core::Recipient = self.address.parse().map_err(|e| anyhow!("{e}"))?;
        Ok(r.client_key)
    }

    /// Sends SIGINT (Ctrl-C) and waits for the process to exit.
    pub fn interrupt(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
        let mut c = self.child.take().ok_or_else(|| anyhow!("not running"))?;
        let pid = c.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("the client did not stop within {within:?} after Ctrl-C");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn connect(&self) -> Result<Ws> {
        connect(self.port).await
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn config_path(home: &Path, id: &str) -> PathBuf {
    home.join(".nym").join("clients").join(id).join("config").join("config.toml")
}

/// Opens the websocket as a web page of `origin` would (with that `Origin`
/// header); Err(status) when the client refuses the upgrade.
pub async fn connect_from_page(port: u16, origin: &str) -> std::result::Result<Ws, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}").into_client_request().map_err(|_| 0u16)?;
    let value = origin.parse().map_err(|_| 0u16)?;
    request.headers_mut().insert("Origin", value);
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(_) => Err(0),
    }
}

pub async fn connect(port: u16) -> Result<Ws> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}")).await?;
    Ok(ws)
}

/// Next text or binary frame, skipping pings; fails after `timeout`.
pub async fn recv(ws: &mut Ws, timeout: Duration) -> Result<Message> {
    let fut = async {
        loop {
            match ws.next().await {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return Ok(m),
                Some(Ok(Message::Close(c))) => bail!("websocket closed: {c:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("websocket error: {e}"),
                None => bail!("websocket ended"),
            }
        }
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| anyhow!("nothing received within {timeout:?}"))?
}

/// The next frame, which must be a JSON text frame.
pub async fn recv_json(ws: &mut Ws, timeout: Duration) -> Result<Value> {
    match recv(ws, timeout).await? {
        Message::Text(t) => serde_json::from_str(t.as_str()).with_context(|| format!("not JSON: {t}")),
        other => bail!("expected a JSON text frame, got {other:?}"),
    }
}

/// Sends a JSON text request and returns the JSON reply.
/// The message id of a send's answer (`{"type":"send","id":N}`); `None`
/// for anything else.
pub fn send_id(answer: &Value) -> Option<u64> {
    let fields = answer.as_object().map_or(0, |o| o.len());
    if answer["type"] == "send" && fields == 2 {
        answer["id"].as_u64()
    } else {
        None
    }
}

pub async fn request(ws: &mut Ws, req: &Value) -> Result<Value> {
    request_text(ws, &req.to_string()).await
}

pub async fn request_text(ws: &mut Ws, text: &str) -> Result<Value> {
    ws.send(Message::text(text.to_string())).await?;
    recv_json(ws, Duration::from_secs(10)).await
}

pub async fn request_binary(ws: &mut Ws, bytes: Vec<u8>) -> Result<Value> {
    ws.send(Message::binary(bytes)).await?;
    recv_json(ws, Duration::from_secs(10)).await
}

/// The 64-byte binary form of a `<b58>@<b58>` address.
pub fn binary_address(address: &str) -> Result<Vec<u8>> {
    let r: nym_client_core::Recipient = address.parse().map_err(|e| anyhow!("{e}"))?;
    Ok(r.to_bytes().to_vec())
}

/// Random bytes of length `n`.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let _ = getrandom::fill(&mut v);
    v
}

/// Alice and Bob, running on `directory` with `tweak`ed configs, each with an
/// application connected (`a`, `b`). Bob has made a text request, so text
/// arrives at his application as text frames.
pub async fn alice_and_bob(directory: &str, tweak: fn(&mut Config)) -> Result<(TestClient, TestClient, Ws, Ws)> {
    let mut alice = TestClient::init(directory, "alice", tweak)?;
    let mut bob = TestClient::init(directory, "bob", tweak)?;
    alice.start().await?;
    bob.start().await?;
    let a = alice.connect().await?;
    let mut b = bob.connect().await?;
    request(&mut b, &serde_json::json!({"type": "selfAddress"})).await?;
    Ok((alice, bob, a, b))
}

/// The `p`th percentile (0-100, nearest rank) of ascending `sorted`; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Polls `cond` every 50 ms until it holds, or fails after `timeout` naming `what`.
pub async fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
