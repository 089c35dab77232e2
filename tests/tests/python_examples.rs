//! The seed's Python programs (`python-examples/`), run unchanged against a
//! real client on port 1977, the port they hard-code.
//!
//! Port 1977 is shared by every run on the machine, so this test holds an
//! exclusive lock on `$TMPDIR/nym-client-port-1977.lock` while its client
//! listens there: two test runs at once take turns instead of colliding.
//! It needs `python3` with `websockets` and `base58`
//! (`pip install -r python-examples/requirements.txt`).

use anyhow::{anyhow, bail, Context, Result};
use nym_integration_tests::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("python-examples")
}

/// Runs `python3 script` in `cwd`, killing it after `timeout`.
fn run_python(script: &Path, cwd: &Path, timeout: Duration) -> Result<String> {
    let mut child = Command::new("python3")
        .arg(script)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("python3 not found")?;
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!(
                "{} did not finish within {timeout:?}:\n{}{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("{} failed ({}):\n{stdout}{}", script.display(), out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(stdout)
}

/// The seed's programs hard-code port 1977: one test at a time uses it.
fn hold_port_1977() -> Result<std::fs::File> {
    let lock_path = std::env::temp_dir().join("nym-client-port-1977.lock");
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
    // Blocks while another test (or test run) holds port 1977.
    lock.lock().map_err(|e| anyhow!("locking {}: {e}", lock_path.display()))?;
    Ok(lock)
}

fn python_with_modules() -> Result<()> {
    let check = Command::new("python3").args(["-c", "import websockets, base58"]).output();
    match check {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!("python3 with the 'websockets' and 'base58' modules is needed: pip install -r python-examples/requirements.txt"),
    }
}

/// Messages arrive for alice while no application is connected (text and
/// binary); then the seed's programs, unchanged, connect. Stored messages
/// are pushed only once a program waits for messages (after the answer to
/// its send), never where it expects an answer, and in its frame type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_python_examples_complete_against_a_client_holding_stored_messages() -> Result<()> {
    python_with_modules()?;
    let lock = hold_port_1977()?;
    let dir = shared_localnet();
    let mut alice = TestClient::init(&dir, "stored-alice", |c| {
        fast(c);
        c.socket.listening_port = 1977;
    })?;
    alice.port = 1977;
    alice.start_unprobed().await.context("a client on port 1977 (is something else using that port?)")?;
    let mut bob = TestClient::init(&dir, "stored-bob", fast)?;
    bob.start().await?;
    let mut b = bob.connect().await?;
    let work = tempfile::tempdir()?;
    let data = random_bytes(20 * 1024);
    std::fs::write(work.path().join("dummy_file"), &data)?;

    for (round, script) in ["text_send.py", "file_send.py"].into_iter().enumerate() {
        // While no application is connected: a text, a binary (not UTF-8) and
        // a JSON message, each sent once the one before is stored (so they
        // are stored in this order).
        let mut binary = binary_address(&alice.address)?;
        binary.extend([0xff, 0xfe, 0x00, round as u8]);
        let text = json!({"type": "send", "recipient": alice.address, "message": format!("stored text {round}")});
        let object = json!({"type": "send", "recipient": alice.address, "message": {"stored": round}});
        for send in [Err(text), Ok(binary), Err(object)] {
            let kept = alice.received_store().kept_count();
            match send {
                Ok(bytes) => request_binary(&mut b, bytes).await?,
                Err(json) => request(&mut b, &json).await?,
            };
            wait_for(Duration::from_secs(60), "alice to store the message", || alice.received_store().kept_count() > kept).await?;
        }
        // The oldest stored message is the one a program gets first.
        let first = alice.received_store().kept().next().map(|m| m.message.clone()).context("nothing stored")?;
        let first_text = String::from_utf8(first.clone());

        let out = run_python(&examples_dir().join(script), work.path(), Duration::from_secs(60))?;
        assert!(out.contains(&format!("our address is: {}", alice.address)), "{script}: {out}");
        if script == "text_send.py" {
            // A text program gets it as text.
            let first = first_text?;
            assert!(out.contains(&format!("received {first} from the mix network!")), "{out}");
        } else {
            // A binary program gets it as bytes, written as they are.
            assert!(out.contains("writing the file back to the disk!"), "{out}");
            assert_eq!(std::fs::read(work.path().join("received_file"))?, first);
        }
        let first_again = alice.received_store().kept().any(|m| m.message == first);
        assert!(!first_again, "what the program got is no longer kept");
    }
    alice.stop();
    bob.stop();
    drop(lock);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_python_examples_work_unchanged_on_port_1977() -> Result<()> {
    python_with_modules()?;
    let lock = hold_port_1977()?;

    let dir = shared_localnet();
    // Today's default rates: this is what a user of the README gets.
    let mut alice = TestClient::init(&dir, "alice", |c| c.socket.listening_port = 1977)?;
    alice.port = 1977;
    alice.start().await.context("a client on port 1977 (is something else using that port?)")?;

    let work = tempfile::tempdir()?;
    let out = run_python(&examples_dir().join("text_send.py"), work.path(), Duration::from_secs(60))?;
    assert!(out.contains(&format!("our address is: {}", alice.address)), "{out}");
    assert!(out.contains("received Hello Nym! from the mix network!"), "{out}");

    let data = random_bytes(100 * 1024);
    std::fs::write(work.path().join("dummy_file"), &data)?;
    let out = run_python(&examples_dir().join("file_send.py"), work.path(), Duration::from_secs(90))?;
    assert!(out.contains("writing the file back to the disk!"), "{out}");
    assert!(std::fs::read(work.path().join("received_file"))? == data, "received_file differs from dummy_file");

    alice.stop();
    drop(lock);
    Ok(())
}
