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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_python_examples_work_unchanged_on_port_1977() -> Result<()> {
    let check = Command::new("python3").args(["-c", "import websockets, base58"]).output();
    match check {
        Ok(o) if o.status.success() => {}
        _ => bail!("python3 with the 'websockets' and 'base58' modules is needed: pip install -r python-examples/requirements.txt"),
    }
    let lock_path = std::env::temp_dir().join("nym-client-port-1977.lock");
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
    // Blocks while another test run holds port 1977.
    lock.lock().map_err(|e| anyhow!("locking {}: {e}", lock_path.display()))?;

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
