//! A small network of network namespaces for tests that run mixnet nodes as
//! separate hosts: a hub namespace holding a bridge (and the directory), one
//! namespace per host joined to the bridge by a veth pair, and one veth from
//! the test's own namespace into the hub so processes run here (the
//! `nym-client`s) can reach the hosts. Addresses live in a private /24,
//! `10.213.N.0/24` with N chosen per run: `.1` here, `.2` the hub, `.11`...
//! the hosts. Namespace names carry the pid, so two runs can't collide;
//! everything is removed on drop (deleting a namespace deletes its veths and
//! their peers), and namespaces left behind by a run that was killed (its pid
//! gone) are removed, with the processes in them, when the next one starts.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const PREFIX: &str = "nymt";

/// Runs `ip <args>`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().context("running ip")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn ip_output(args: &[&str]) -> Result<String> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().context("running ip")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes `nymt<pid>-*` namespaces whose pid no longer runs (a run killed
/// before its drop guard ran), and the processes still in them.
fn remove_stale() {
    let Ok(list) = ip_output(&["netns", "list"]) else { return };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let Some((pid, _)) = rest.split_once('-') else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            // nodes the dead run left running in there go first
            if let Ok(pids) = ip_output(&["netns", "pids", name]) {
                for p in pids.split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", p]).status();
                }
            }
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A host: a namespace with one address on the bridge.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: String,
}

pub struct Lab {
    tag: String,
    hub: String,
    /// `10.213.N`
    net: String,
    namespaces: Vec<String>,
    hosts: usize,
    procs: Vec<(String, Child)>,
    pub data: tempfile::TempDir,
}

impl Lab {
    /// Builds the hub, its bridge and the link from this namespace.
    /// `Ok(Err(reason))` when that can't be done here (not root, no
    /// iproute2, no CAP_NET_ADMIN, no veth or bridge support): the caller skips.
    pub fn create() -> Result<std::result::Result<Lab, String>> {
        remove_stale();
        let pid = std::process::id();
        let tag = format!("{PREFIX}{pid}");
        let hub = format!("{tag}-hub");
        if let Err(e) = ip(&["netns", "add", &hub]) {
            return Ok(Err(format!("{e:#}")));
        }
        let mut lab = Lab {
            tag: tag.clone(),
            hub: hub.clone(),
            net: String::new(),
            namespaces: vec![hub.clone()],
            hosts: 0,
            procs: Vec::new(),
            data: tempfile::tempdir()?,
        };
        // On failure `lab` is dropped, removing what was made.
        Ok(lab.build_hub().map(|()| lab).map_err(|e| format!("{e:#}")))
    }

    fn build_hub(&mut self) -> Result<()> {
        let (tag, hub) = (self.tag.clone(), self.hub.clone());
        self.net = free_subnet(std::process::id())?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        // A fixed MAC: a bridge otherwise takes the lowest of its ports' and
        // changes it as ports join, leaving hosts' ARP entries for the hub's
        // address (the directory) stale, so their announcements hang.
        ip(&["-n", &hub, "link", "add", "br0", "address", "02:00:00:00:00:02", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        ip(&["-n", &hub, "addr", "add", &format!("{}.2/24", self.net), "dev", "br0"])?;
        // The root side is named after the run (names are per namespace;
        // this one lives in ours): nymt<pid>, at most 15 characters.
        ip(&["link", "add", &tag, "type", "veth", "peer", "name", "root", "netns", &hub])?;
        ip(&["-n", &hub, "link", "set", "root", "master", "br0", "up"])?;
        ip(&["addr", "add", &format!("{}.1/24", self.net), "dev", &tag])?;
        ip(&["link", "set", &tag, "up"])?;
        Ok(())
    }

    /// `10.213.N`: the /24 of this run.
    pub fn subnet(&self) -> &str {
        &self.net
    }

    /// The address of this namespace on the bridge.
    pub fn root_ip(&self) -> String {
        format!("{}.1", self.net)
    }

    /// A new namespace `nymt<pid>-<name>` with address `10.213.N.(10+k)`.
    pub fn add_host(&mut self, name: &str) -> Result<Host> {
        let ns = format!("{}-{name}", self.tag);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        self.hosts += 1;
        let ip_addr = format!("{}.{}", self.net, 10 + self.hosts);
        let port = format!("h{}", self.hosts);
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&["link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns", &self.hub])?;
        ip(&["-n", &self.hub, "link", "set", &port, "master", "br0", "up"])?;
        ip(&["-n", &ns, "addr", "add", &format!("{ip_addr}/24"), "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        Ok(Host { ns, ip: ip_addr })
    }

    /// Cuts the host off the network: its only link goes down.
    pub fn cut(&self, host: &Host) -> Result<()> {
        ip(&["-n", &host.ns, "link", "set", "eth0", "down"])
    }

    /// Starts `bin args` inside `host` (or here if `None`), stderr to
    /// `<data>/<name>.log`. Returns the child's stdout if `piped`.
    pub fn spawn(
        &mut self,
        name: &str,
        host: Option<&Host>,
        bin: &Path,
        args: &[String],
        piped: bool,
    ) -> Result<Option<std::process::ChildStdout>> {
        let log = std::fs::File::create(self.log_path(name))?;
        let mut cmd = match host {
            Some(h) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &h.ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(args)
            .env("RUST_LOG", std::env::var("NETNS_RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(if piped { Stdio::piped() } else { Stdio::from(log.try_clone()?) })
            .stderr(log);
        let mut child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        let out = child.stdout.take();
        self.procs.push((name.to_string(), child));
        Ok(out)
    }

    /// The hub's own host: its address on the bridge.
    pub fn hub(&self) -> Host {
        Host { ns: self.hub.clone(), ip: format!("{}.2", self.net) }
    }

    /// Starts the directory in the hub, listening on the bridge; returns its URL.
    pub fn start_directory(&mut self, bin: &Path, expiry_secs: f64) -> Result<String> {
        let hub = self.hub();
        let listen = format!("{}:0", hub.ip);
        // Its key in the lab's own dir, not the user's $HOME.
        let key_dir = self.data.path().join("directory").display().to_string();
        let args = vec![
            "--listen".into(),
            listen,
            "--expiry-secs".into(),
            expiry_secs.to_string(),
            "--data-dir".into(),
            key_dir,
            // the lab's nodes make their keys as they start: any identity may announce
            "--open".into(),
        ];
        let out = self.spawn("directory", Some(&hub), bin, &args, true)?.ok_or_else(|| anyhow!("no stdout"))?;
        let mut log = std::fs::OpenOptions::new().append(true).open(self.log_path("directory"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Write;
            // logs go to stdout too: the URL is on the line `directory: <url>`
            let mut r = BufReader::new(out);
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                let _ = log.write_all(line.as_bytes());
                if line.starts_with("directory: ") {
                    let _ = tx.send(line);
                    break;
                }
                line.clear();
            }
            // keep draining (into its log) so the directory never blocks on a full pipe
            let _ = std::io::copy(&mut r, &mut log);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .map_err(|_| anyhow!("the directory printed no URL:\n{}", self.log("directory")))?;
        line.trim()
            .strip_prefix("directory: ")
            .map(str::to_string)
            .ok_or_else(|| anyhow!("unexpected directory output {line:?}:\n{}", self.log("directory")))
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.data.path().join(format!("{name}.log"))
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Names of processes that have exited.
    pub fn exited(&mut self) -> Vec<String> {
        self.procs.iter_mut().filter_map(|(n, c)| matches!(c.try_wait(), Ok(Some(_))).then(|| n.clone())).collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.procs {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for (_, c) in &mut self.procs {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting a namespace deletes its veths, and with them their peers
        // (the root-side link goes with the hub).
        for ns in self.namespaces.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.tag]);
    }
}

/// A `10.213.N` not routed here yet, starting from one derived from `pid`.
fn free_subnet(pid: u32) -> Result<String> {
    let routes = ip_output(&["-4", "route", "show", "table", "all"])?;
    let addrs = ip_output(&["-4", "addr", "show"])?;
    for k in 0..250u32 {
        let n = (pid + k) % 250 + 1;
        let net = format!("10.213.{n}");
        let used = |s: &str| s.contains(&format!("{net}."));
        if !used(&routes) && !used(&addrs) {
            return Ok(net);
        }
    }
    bail!("no free 10.213.N.0/24")
}

/// `nym-directory`, `nym-mixnode`, `nym-gateway` of the same profile as this
/// test, built (or brought up to date) once per test process with
/// `cargo build -p nym-mixnet --bins [--release]`. Returns `target/<profile>`.
pub fn mixnet_binaries() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = crate::profile_dir();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "nym-mixnet", "--bins"]);
        if release {
            cmd.arg("--release");
        }
        if let Some(target) = dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        match cmd.status() {
            Ok(s) if s.success() => {}
            other => eprintln!(
                "warning: building the nym-mixnet binaries failed ({other:?}); using those in {} if present",
                dir.display()
            ),
        }
        dir
    })
    .clone()
}
