//! `init` and config.toml, on the built binaries: what `init` writes (and
//! with which permissions), a value from the file used, a flag overriding
//! it, bad files refused naming the file and key, and a directory, a
//! mixnode and a gateway running from their init'ed data dirs alone.

mod common;

use common::Procs;
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const MIXNODE: &str = env!("CARGO_BIN_EXE_nym-mixnode");
const GATEWAY: &str = env!("CARGO_BIN_EXE_nym-gateway");
const DIRECTORY: &str = env!("CARGO_BIN_EXE_nym-directory");
const T: Duration = Duration::from_secs(20);

/// `bin args...` run to its end under `umask 000`, so the modes checked are
/// the ones the binary sets, not the ones a umask leaves.
fn run(bin: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The rest of the line of `text` starting with `prefix`.
fn after(text: &str, prefix: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in {text:?}"))
        .trim()
        .to_string()
}

/// `init` with `args`; its printed config path and key (`key_label: ...`).
fn init(bin: &str, args: &[&str], key_label: &str) -> (String, String) {
    let out = run(bin, &[&["init"], args].concat());
    assert!(out.status.success(), "init failed: {}", stderr(&out));
    let text = stdout(&out);
    (after(&text, "config: "), after(&text, &format!("{key_label}: ")))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A server process and its stdout lines as they come.
struct Server {
    lines: Receiver<String>,
}

impl Server {
    fn start(procs: &mut Procs, bin: &str, args: &[&str]) -> Server {
        let mut child: Child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        procs.0.push(child);
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Server { lines }
    }

    /// The first line starting with `prefix`.
    fn line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line {prefix:?}: {e}"),
            }
        }
    }
}

/// The word after `label` in a start line (`... identity KEY ...`).
fn word_after(line: &str, label: &str) -> String {
    let mut words = line.split_whitespace();
    words.find(|w| *w == label);
    words
        .next()
        .unwrap_or_else(|| panic!("no {label} in {line:?}"))
        .to_string()
}

/// SIGTERM, and the exit status: a clean stop is 0.
fn stop(procs: &mut Procs, i: usize) -> std::process::ExitStatus {
    let child = &mut procs.0[i];
    assert!(Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + T;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn init_writes_every_flag_with_its_help_and_private_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("a").join("mix");
    let (config, key) = init(
        MIXNODE,
        &["--data-dir", data.to_str().unwrap(), "--layer", "2", "--workers", "3"],
        "identity key",
    );
    assert_eq!(Path::new(&config), data.join("config.toml"));
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("config.toml")), 0o600);
    assert_eq!(mode(&data.join("identity_private.pem")), 0o600);
    let text = std::fs::read_to_string(&config).unwrap();
    // every flag, typed, each under its help text
    let table: toml::Table = text.parse().unwrap();
    assert_eq!(table["layer"].as_integer(), Some(2), "given");
    assert_eq!(table["workers"].as_integer(), Some(3), "given");
    assert_eq!(table["listen"].as_str(), Some("127.0.0.1:1789"), "default");
    assert_eq!(table["announce-interval"].as_float(), Some(3.0), "default");
    assert_eq!(table["data-dir"].as_str(), Some(data.to_str().unwrap()));
    assert!(text.contains("# Mix layer, 1..=3\nlayer = 2\n"), "{text}");
    assert!(
        text.contains("# Seconds between announcements\nannounce-interval = 3.0\n"),
        "{text}"
    );
    // a flag with no value and no default is there, commented out
    assert!(text.contains("\n# announce = "), "{text}");
    assert!(!table.contains_key("announce"));
    assert!(text.contains("\n# directory-key = "), "{text}");
    // a second init keeps the file (and the key) unless told otherwise
    let again = run(MIXNODE, &["init", "--data-dir", data.to_str().unwrap(), "--layer", "3"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains(&config), "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    let (_, same) = init(
        MIXNODE,
        &["--data-dir", data.to_str().unwrap(), "--layer", "3", "--force"],
        "identity key",
    );
    assert_eq!(same, key, "init keeps an existing identity");
    let text: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    assert_eq!(text["layer"].as_integer(), Some(3));

    // the gateway and the directory: their own flags and key
    let gw = tmp.path().join("gw");
    let (config, _) = init(
        GATEWAY,
        &["--data-dir", gw.to_str().unwrap(), "--max-clients", "7"],
        "identity key",
    );
    assert_eq!((mode(&gw), mode(Path::new(&config))), (0o700, 0o600));
    let table: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    assert_eq!(table["max-clients"].as_integer(), Some(7));
    assert_eq!(table["clients-listen"].as_str(), Some("127.0.0.1:9000"));
    let dir = tmp.path().join("dir");
    let (config, _) = init(
        DIRECTORY,
        &["--data-dir", dir.to_str().unwrap(), "--source-burst", "9"],
        "directory key",
    );
    assert_eq!((mode(&dir), mode(Path::new(&config))), (0o700, 0o600));
    assert_eq!(mode(&dir.join("directory_private.pem")), 0o600);
    let text = std::fs::read_to_string(&config).unwrap();
    let table: toml::Table = text.parse().unwrap();
    assert_eq!(table["source-burst"].as_integer(), Some(9));
    assert!(text.contains("\n# admit = "), "{text}");
}

#[test]
fn a_value_in_the_file_is_used_and_a_flag_overrides_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("mix");
    let d = data.to_str().unwrap();
    let (_, key) = init(
        MIXNODE,
        &["--data-dir", d, "--layer", "2", "--listen", "127.0.0.1:0"],
        "identity key",
    );
    let mut procs = Procs(Vec::new());
    // --layer is required, and comes from the file
    let line = Server::start(&mut procs, MIXNODE, &["--data-dir", d]).line("mixnode layer ");
    assert_eq!(word_after(&line, "layer"), "2", "{line}");
    assert_eq!(word_after(&line, "identity"), key);
    assert!(stop(&mut procs, 0).success());
    // the command line wins
    let line = Server::start(&mut procs, MIXNODE, &["--data-dir", d, "--layer", "3"]).line("mixnode layer ");
    assert_eq!(word_after(&line, "layer"), "3", "{line}");
    assert!(stop(&mut procs, 1).success());
    // --config FILE, anywhere, with a relative path resolved from the file's directory
    let other = tmp.path().join("elsewhere");
    std::fs::create_dir(&other).unwrap();
    let config = other.join("mix.toml");
    std::fs::write(&config, "layer = 1\nlisten = \"127.0.0.1:0\"\ndata-dir = \"mixdata\"\n").unwrap();
    let line = Server::start(&mut procs, MIXNODE, &["--config", config.to_str().unwrap()]).line("mixnode layer ");
    assert_eq!(word_after(&line, "layer"), "1", "{line}");
    assert_ne!(word_after(&line, "identity"), key, "a new data dir, a new identity");
    assert!(other.join("mixdata").join("identity_private.pem").exists());
    assert!(stop(&mut procs, 2).success());
}

#[test]
fn a_bad_file_is_an_error_naming_the_file_and_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    let path = config.to_str().unwrap();
    for (text, names) in [
        (
            "layer = 1\nlisten_addr = \"127.0.0.1:0\"\n",
            &["`listen_addr`", "unknown key"][..],
        ),
        (
            "layer = 1\ndata_dir = \"x\"\n",
            &["`data_dir`", "unknown key", "`data-dir`"],
        ),
        (
            "layer = 1\nworkers = \"four\"\n",
            &["`workers`", "must be an integer", "got string"],
        ),
        ("layer = 1\nlisten = 1789\n", &["`listen`", "must be a string"]),
        (
            "layer = 1\nlisten = \"nowhere\"\n",
            &["`listen`", "invalid value 'nowhere'"],
        ),
        ("layer = 300\n", &["`layer`", "invalid value '300'"]),
        (
            "layer = 1\n[workers]\nthreads = 1\n",
            &["`workers`", "must be an integer", "got table"],
        ),
        ("layer = 1\nlisten = \n", &["not valid TOML", "line 2"]),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = run(MIXNODE, &["--config", path]);
        assert!(!out.status.success(), "{text:?} was accepted");
        let err = stderr(&out);
        assert!(err.contains(path), "{text:?}: {err}");
        for name in names {
            assert!(err.contains(name), "{text:?}: {name:?} not in {err}");
        }
    }
    let missing = tmp.path().join("missing.toml");
    let out = run(MIXNODE, &["--config", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(missing.to_str().unwrap()), "{}", stderr(&out));
}

/// The deployment guide's steps on one host: init each server, admit the
/// nodes' printed identities, start each from its data dir alone; the
/// directory lists both nodes; SIGTERM stops each cleanly, state saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_run_from_their_initialised_data_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mix, gw) = (tmp.path().join("dir"), tmp.path().join("mix"), tmp.path().join("gw"));
    let (dir_s, mix_s, gw_s) = (dir.to_str().unwrap(), mix.to_str().unwrap(), gw.to_str().unwrap());
    // the nodes' identities first: the directory admits only those
    let (_, mix_id) = init(MIXNODE, &["--data-dir", mix_s, "--layer", "1"], "identity key");
    let (_, gw_id) = init(GATEWAY, &["--data-dir", gw_s], "identity key");
    let admit = dir.join("admit.txt");
    let (_, dir_key) = init(
        DIRECTORY,
        &[
            "--data-dir",
            dir_s,
            "--listen",
            "127.0.0.1:0",
            "--admit",
            admit.to_str().unwrap(),
        ],
        "directory key",
    );
    std::fs::write(&admit, format!("# the nodes\n{mix_id}\n{gw_id}\n")).unwrap();

    let mut procs = Procs(Vec::new());
    let directory = Server::start(&mut procs, DIRECTORY, &["--data-dir", dir_s]);
    let url = directory
        .line("directory: ")
        .trim_start_matches("directory: ")
        .to_string();
    assert_eq!(directory.line("directory key: "), format!("directory key: {dir_key}"));
    // the directory's address is known now: written into the nodes' configs
    let common = [
        "--directory",
        &url,
        "--directory-key",
        &dir_key,
        "--announce-interval",
        "0.3",
        "--force",
    ];
    let (_, again) = init(
        MIXNODE,
        &[
            &["--data-dir", mix_s, "--layer", "1", "--listen", "127.0.0.1:0"],
            &common[..],
        ]
        .concat(),
        "identity key",
    );
    assert_eq!(again, mix_id);
    let gw_flags = [
        "--data-dir",
        gw_s,
        "--mix-listen",
        "127.0.0.1:0",
        "--clients-listen",
        "127.0.0.1:0",
    ];
    init(GATEWAY, &[&gw_flags[..], &common[..]].concat(), "identity key");
    let mixnode = Server::start(&mut procs, MIXNODE, &["--data-dir", mix_s]);
    assert_eq!(word_after(&mixnode.line("mixnode layer "), "identity"), mix_id);
    let gateway = Server::start(&mut procs, GATEWAY, &["--data-dir", gw_s]);
    assert_eq!(word_after(&gateway.line("gateway identity "), "identity"), gw_id);

    let client = nym_mixnet::http::DirectoryClient::new(&url).unwrap();
    let deadline = Instant::now() + T;
    loop {
        let text = client.topology_text().await.unwrap_or_default();
        if text.contains(&mix_id) && text.contains(&gw_id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the directory never listed both nodes: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGTERM: each exits 0, and the nodes saved their replay filters
    for i in [2, 1, 0] {
        let status = stop(&mut procs, i);
        assert!(status.success(), "process {i}: {status}");
    }
    for data in [&mix, &gw] {
        let saved = std::fs::read_dir(data.join("sphinx-keys"))
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(".replay"));
        assert!(saved, "{} has no replay filter file", data.display());
    }
}
