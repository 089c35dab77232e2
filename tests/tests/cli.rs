//! The `nym-client` command line: banner, help, init's files and refusals,
//! run's errors and Ctrl-C.

use anyhow::Result;
use nym_client::config::Config;
use nym_integration_tests::*;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

fn nym_client(home: &std::path::Path) -> Command {
    let mut c = Command::new(client_binary());
    c.env("HOME", home);
    c
}

#[test]
fn no_arguments_prints_the_seed_banner_with_the_version() -> Result<()> {
    let home = tempfile::tempdir()?;
    let out = nym_client(home.path()).output()?;
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout)?;
    let expected = format!(
        "\n\n      _ __  _   _ _ __ ___\n     | '_ \\| | | | '_ \\ _ \\\n     | | | | |_| | | | | | |\n     |_| |_|\\__, |_| |_| |_|\n            |___/\n\n             (client - version {})\n\n    \nusage: --help to see available options.\n",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(stdout, expected);
    Ok(())
}

#[test]
fn every_command_has_help() -> Result<()> {
    let home = tempfile::tempdir()?;
    for (args, needles) in [
        (vec!["--help"], vec!["init", "run"]),
        (vec!["init", "--help"], vec!["--id", "--directory", "--gateway", "--port"]),
        (vec!["run", "--help"], vec!["--id", "--port", "--directory", "--localnet"]),
    ] {
        let out = nym_client(home.path()).args(&args).output()?;
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout)?;
        for n in needles {
            assert!(text.contains(n), "{args:?} help lacks {n}:\n{text}");
        }
    }
    let out = nym_client(home.path()).arg("init").output()?;
    assert!(!out.status.success(), "init requires --id");
    assert!(String::from_utf8(out.stderr)?.contains("--id"));
    Ok(())
}

#[test]
fn init_writes_config_and_keys_and_never_replaces_them() -> Result<()> {
    let dir = shared_localnet();
    let client = TestClient::init(&dir, "alice", |_| {})?;
    let base = client.home.path().join(".nym/clients/alice");
    let config = std::fs::read_to_string(base.join("config/config.toml"))?;
    for needle in ["[client]", "id = \"alice\"", "directory_server", "private_identity_key_file", "public_identity_key_file",
        "gateway_id", "[socket]", "socket_type = \"WebSocket\"", "listening_port", "[debug]", "average_packet_delay = 20",
        "loop_cover_traffic_average_delay = 200", "average_hop_delay = 15", "gateway_reconnect_initial_backoff"] {
        assert!(config.contains(needle), "config lacks {needle}:\n{config}");
    }
    let private = base.join("data/private_identity.pem");
    let public = base.join("data/public_identity.pem");
    let private_text = std::fs::read_to_string(&private)?;
    assert!(private_text.contains("PRIVATE KEY"));
    assert!(std::fs::read_to_string(&public)?.contains("PUBLIC KEY"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&private)?.permissions().mode() & 0o777, 0o600);
    }
    // The address's gateway part is the configured gateway.
    let gateway = client.address.split('@').nth(1).unwrap_or_default();
    assert!(config.contains(&format!("gateway_id = \"{gateway}\"")));

    // init again: refused, nothing changed.
    let out = nym_client(client.home.path()).args(["init", "--id", "alice", "--directory", &dir]).output()?;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("already exists") && err.contains("refusing to replace its keys"), "{err}");
    assert_eq!(std::fs::read_to_string(&private)?, private_text);
    Ok(())
}

/// Under `umask 000` (every file world-writable by default) the client's
/// directories are still 0700 and its secrets 0600.
#[cfg(unix)]
#[test]
fn directories_are_0700_and_secrets_0600_whatever_the_umask() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = shared_localnet();
    let home = tempfile::tempdir()?;
    let script = format!("umask 000; exec '{}' init --id loose --directory '{dir}' --port {}", client_binary().display(), free_port());
    let out = Command::new("sh").arg("-c").arg(script).env("HOME", home.path()).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |p: &std::path::Path| -> Result<u32> { Ok(std::fs::metadata(p)?.permissions().mode() & 0o777) };
    let base = home.path().join(".nym/clients/loose");
    for d in [home.path().join(".nym"), home.path().join(".nym/clients"), base.clone(), base.join("config"), base.join("data")] {
        assert_eq!(mode(&d)?, 0o700, "{}", d.display());
    }
    assert_eq!(mode(&base.join("data/private_identity.pem"))?, 0o600);
    assert_eq!(mode(&base.join("data/public_identity.pem"))? & 0o022, 0, "not writable by others");
    assert_eq!(mode(&base.join("config/config.toml"))? & 0o022, 0, "not writable by others");
    Ok(())
}

#[test]
fn init_refuses_unknown_gateway_and_unreachable_directory_without_writing() -> Result<()> {
    let dir = shared_localnet();
    let home = tempfile::tempdir()?;
    let unknown = bs58::encode([7u8; 32]).into_string();
    let out = nym_client(home.path()).args(["init", "--id", "x", "--directory", &dir, "--gateway", &unknown]).output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)?.contains("is not in the topology"));
    let port = free_port();
    let out = nym_client(home.path())
        .args(["init", "--id", "x", "--directory", &format!("http://127.0.0.1:{port}")])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)?.contains("cannot reach the directory"));
    assert!(!home.path().join(".nym/clients/x/data/private_identity.pem").exists());
    let out = nym_client(home.path()).args(["init", "--id", "../evil", "--directory", &dir]).output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)?.contains("invalid --id"));
    Ok(())
}

#[test]
fn init_with_a_chosen_gateway_uses_it() -> Result<()> {
    let dir = shared_localnet();
    let first = TestClient::init(&dir, "a", |_| {})?;
    let gateway = first.address.split('@').nth(1).unwrap_or_default().to_string();
    let home = tempfile::tempdir()?;
    let out = nym_client(home.path()).args(["init", "--id", "b", "--directory", &dir, "--gateway", &gateway]).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8(out.stdout)?.contains(&format!("@{gateway}")));
    Ok(())
}

#[test]
fn run_without_init_says_what_to_do() -> Result<()> {
    let home = tempfile::tempdir()?;
    let out = nym_client(home.path()).args(["run", "--id", "nobody"]).output()?;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("not initialised") && err.contains("nym-client init --id nobody"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_client_cleanly() -> Result<()> {
    let dir = shared_localnet();
    let mut alice = TestClient::init(&dir, "alice", fast)?;
    alice.start().await?;
    let mut ws = alice.connect().await?;
    assert_eq!(request(&mut ws, &json!({"type": "selfAddress"})).await?["type"], "selfAddress");
    let status = alice.interrupt(Duration::from_secs(10))?;
    assert!(status.success(), "exit status {status}\n{}", alice.log());
    assert!(alice.log().contains("client stopped"));
    Ok(())
}

/// A config from before directory keys (none pinned): `run` trusts the
/// directory's key on first use, says so, and pins it in the config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_no_directory_key_pinned_trusts_the_first_one_and_pins_it() -> Result<()> {
    let dir = shared_localnet();
    let mut alice = TestClient::init(&dir, "alice", |c| {
        fast(c);
        c.client.directory_key = None;
    })?;
    let key = alice
        .init_output
        .lines()
        .find_map(|l| l.split("): ").nth(1).filter(|_| l.starts_with("Directory key")))
        .map(|k| k.trim().to_string())
        .ok_or_else(|| anyhow::anyhow!("init printed no directory key:\n{}", alice.init_output))?;
    alice.start().await?;
    let log = alice.log();
    assert!(log.contains(&format!("no directory key was pinned: trusting {key}")), "{log}");
    let config = Config::load_from(&config_path(alice.home.path(), "alice"))?;
    assert_eq!(config.client.directory_key.as_deref(), Some(key.as_str()));
    alice.stop();
    Ok(())
}

/// A directory that can't be reached at start: `run` tries the core's
/// number of times, logging each, then exits with an error that says so.
#[test]
fn run_against_an_unreachable_directory_retries_then_exits_with_a_clear_error() -> Result<()> {
    let dir = shared_localnet();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let alice = TestClient::init(&dir, "alice", |c| c.client.directory_server = dead.clone())?;
    let out = nym_client(alice.home.path()).args(["run", "--id", "alice", "--port", &alice.port.to_string()]).output()?;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    let attempts = nym_client_core::defaults::FIRST_FETCH_ATTEMPTS;
    assert!(err.contains(&format!("no usable topology from the directory after {attempts} attempts")), "{err}");
    assert!(err.contains("cannot reach the directory"), "{err}");
    for attempt in 1..attempts {
        assert!(err.contains(&format!("topology fetch {attempt}/{attempts} failed")), "{err}");
    }
    Ok(())
}

/// The authorities file for the shared localnet, built from what its
/// directory serves: the authority that served it (its URL and key) and,
/// when the document carries more signatures (a localnet of several
/// authorities), the other signers' keys at addresses where nothing
/// listens, around it: a client must fail over past them.
async fn localnet_authorities_file(directory: &str, path: &std::path::Path) -> Result<usize> {
    let text = nym_client::directory::fetch_topology_text(directory).await?;
    let doc: nym_wire::topology::TopologyJson = serde_json::from_str(&text)?;
    let mut lines = vec![format!("{} {directory}  # serves\n", doc.served_by)];
    for s in doc.signatures.iter().filter(|s| s.key != doc.served_by) {
        let dead = format!("{} http://127.0.0.1:{}  # not listening\n", s.key, free_port());
        if lines.len() % 2 == 1 {
            lines.insert(0, dead);
        } else {
            lines.push(dead);
        }
    }
    std::fs::write(path, format!("# the shared localnet's authorities\n{}", lines.concat()))?;
    Ok(lines.len())
}

/// `init --authorities FILE` keeps the keys, URLs and threshold in
/// config.toml; `run` believes documents signed by the threshold of them,
/// failing over past authorities that do not answer, and messages flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_with_an_authorities_file_pins_them_all_and_run_uses_them() -> Result<()> {
    let dir = shared_localnet();
    let files = tempfile::tempdir()?;
    let path = files.path().join("authorities.txt");
    let n = localnet_authorities_file(&dir, &path).await?;
    let path_arg = path.to_string_lossy().into_owned();
    let mut alice = TestClient::init_args("alice", &["--authorities", &path_arg], fast)?;
    let threshold = n / 2 + 1;
    assert!(
        alice.init_output.contains(&format!(
            "Authorities pinned: {n}; a topology needs {threshold} of their signatures"
        )),
        "{}",
        alice.init_output
    );
    let config = Config::load_from(&config_path(alice.home.path(), "alice"))?;
    assert_eq!(config.client.authorities.len(), n);
    assert_eq!(config.client.threshold, Some(threshold));
    assert!(config.client.authorities.iter().any(|a| a.url == dir));
    assert_eq!(config.client.directory_key, None);
    let text = std::fs::read_to_string(config_path(alice.home.path(), "alice"))?;
    assert!(text.contains("[[client.authorities]]"), "{text}");

    alice.start().await?;
    let mut a = alice.connect().await?;
    let answer = request(
        &mut a,
        &json!({"type": "send", "message": "over N authorities", "recipient": alice.address}),
    )
    .await?;
    assert!(send_id(&answer).is_some(), "{answer}");
    match recv(&mut a, Duration::from_secs(60)).await {
        Ok(tokio_tungstenite::tungstenite::Message::Text(t)) => assert_eq!(t.as_str(), "over N authorities"),
        other => anyhow::bail!("expected the message back, got {other:?}\n{}", alice.log()),
    }
    drop(a);
    alice.stop();
    Ok(())
}

/// A bad authorities file is refused naming the file and the line, and
/// nothing is written; --threshold beyond the list is refused too.
#[test]
fn init_with_a_bad_authorities_file_names_the_line_and_writes_nothing() -> Result<()> {
    let home = tempfile::tempdir()?;
    let path = home.path().join("authorities.txt");
    std::fs::write(&path, "# ours\n\nnot-a-key http://127.0.0.1:1\n")?;
    let out = nym_client(home.path())
        .args(["init", "--id", "alice", "--authorities"])
        .arg(&path)
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("authorities.txt") && err.contains("line 3"), "{err}");
    assert!(!home.path().join(".nym/clients/alice").exists(), "nothing written");

    let key = nym_client_core::encode_key(
        &ed25519_dalek::SigningKey::from_bytes(&[1; 32])
            .verifying_key()
            .to_bytes(),
    );
    std::fs::write(&path, format!("{key} http://127.0.0.1:1\n"))?;
    let out = nym_client(home.path())
        .args(["init", "--id", "alice", "--threshold", "2", "--authorities"])
        .arg(&path)
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("threshold 2"), "{err}");
    let out = nym_client(home.path())
        .args([
            "init",
            "--id",
            "alice",
            "--directory",
            "http://127.0.0.1:1",
            "--authorities",
        ])
        .arg(&path)
        .output()?;
    assert!(!out.status.success(), "--authorities replaces --directory");
    Ok(())
}
