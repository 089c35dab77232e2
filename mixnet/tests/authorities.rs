//! Several directory authorities reach consensus (docs/topology-document.md):
//! every authority serves the same document signed by all of them; one
//! down, documents keep coming with the others' signatures; back, it catches
//! up; a lying authority (played here by the test, with its key, over HTTP)
//! changes nothing; late, misdirected and conflicting votes are refused;
//! closed by default, `--open` loudly open. Rounds of 1 s; every wait is on
//! a condition.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use nym_mixnet::directory::rounds::PeerRefusal;
use nym_mixnet::directory::{start_directory_on, DirectoryConfig, DirectoryHandle};
use nym_mixnet::http::DirectoryClient;
use nym_wire::address::encode_key;
use nym_wire::authority::{Authorities, Authority};
use nym_wire::signed::verify_topology;
use nym_wire::topology::{paths, GatewayJson, MixNodeJson, TopologyJson};
use nym_wire::vote::{paths as vote_paths, RoundSignature, VoteJson};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const ROUND: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(30);

struct Network {
    authorities: Authorities,
    data_dirs: Vec<PathBuf>,
    handles: Vec<Option<DirectoryHandle>>,
}

fn config(data: &Path, authorities: &Authorities) -> DirectoryConfig {
    let mut c = DirectoryConfig::new(data);
    c.open = true;
    c.authorities = Some(authorities.clone());
    c.round = ROUND;
    c.expiry = Duration::from_secs(120);
    c.topology_validity = Duration::from_secs(60);
    c
}

/// `real` authorities run in-process on listeners bound first; `extra` more
/// keys are listed (played by the test) at addresses that never answer.
async fn network(base: &Path, real: usize, extra: &[(&SigningKey, &std::net::TcpListener)]) -> Network {
    let mut listeners = Vec::new();
    let mut list = Vec::new();
    let mut data_dirs = Vec::new();
    for i in 0..real {
        let dir = base.join(format!("authority{i}"));
        let key = nym_mixnet::keyfiles::load_or_create_directory_key(&dir).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        list.push(Authority {
            key: key.verifying_key().to_bytes(),
            url: format!("http://{}", listener.local_addr().unwrap()),
        });
        listeners.push(listener);
        data_dirs.push(dir);
    }
    for (key, l) in extra {
        list.push(Authority {
            key: key.verifying_key().to_bytes(),
            url: format!("http://{}", l.local_addr().unwrap()),
        });
    }
    let authorities = Authorities::new(list, None).unwrap();
    let mut handles = Vec::new();
    for (dir, listener) in data_dirs.iter().zip(listeners) {
        handles.push(Some(
            start_directory_on(config(dir, &authorities), listener).await.unwrap(),
        ));
    }
    Network {
        authorities,
        data_dirs,
        handles,
    }
}

/// Three mixnodes and a gateway, signed now.
fn honest_nodes() -> (Vec<MixNodeJson>, Vec<GatewayJson>) {
    let seq = now_ms();
    let mixes = (1..=3u8)
        .map(|l| signed_mix(&identity(10 + l), l, &format!("127.0.0.1:{}", 3000 + l as u16), seq))
        .collect();
    let gateways = vec![signed_gateway(&identity(20), "127.0.0.1:3790", "127.0.0.1:9000", seq)];
    (mixes, gateways)
}

async fn announce(url: &str, mixes: &[MixNodeJson], gateways: &[GatewayJson]) {
    let c = DirectoryClient::new(url).unwrap();
    for m in mixes {
        c.post_json(paths::MIXNODES, m).await.unwrap();
    }
    for g in gateways {
        c.post_json(paths::GATEWAYS, g).await.unwrap();
    }
}

/// The document `url` serves, if it verifies under `authorities`: the
/// document and the keys whose signatures are valid.
async fn served(url: &str, authorities: &Authorities) -> Option<(TopologyJson, Vec<[u8; 32]>)> {
    let text = DirectoryClient::new(url).unwrap().topology_text().await.ok()?;
    let v = verify_topology(&text, Some(authorities), now_ms(), nym_wire::VERSION).ok()?;
    let json: TopologyJson = serde_json::from_str(&text).ok()?;
    Some((json, v.document.signers.keys))
}

/// Polls until `check` holds for what every URL serves; the documents.
async fn wait_for(
    urls: &[String],
    authorities: &Authorities,
    what: &str,
    check: impl Fn(&[(TopologyJson, Vec<[u8; 32]>)]) -> bool,
) -> Vec<(TopologyJson, Vec<[u8; 32]>)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut docs = Vec::new();
        for u in urls {
            if let Some(d) = served(u, authorities).await {
                docs.push(d);
            }
        }
        if docs.len() == urls.len() && check(&docs) {
            return docs;
        }
        let last = docs
            .iter()
            .map(|(d, k)| (d.round, d.mix_nodes.len(), k.len()))
            .collect::<Vec<_>>();
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for {what}; last (round, mixnodes, signatures): {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn same_document(docs: &[(TopologyJson, Vec<[u8; 32]>)]) -> bool {
    docs.windows(2).all(|w| w[0].0.signed_bytes() == w[1].0.signed_bytes())
}

fn ids(doc: &TopologyJson) -> Vec<String> {
    let mut v: Vec<String> = doc.mix_nodes.iter().map(|m| m.identity_key.clone()).collect();
    v.extend(doc.gateway_nodes.iter().map(|g| g.identity_key.clone()));
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_authorities_sign_one_document_keep_going_with_one_down_and_it_catches_up() {
    let data = tempfile::tempdir().unwrap();
    let mut net = network(data.path(), 3, &[]).await;
    let urls: Vec<String> = net.authorities.list().iter().map(|a| a.url.clone()).collect();
    let (mixes, gateways) = honest_nodes();
    for u in &urls {
        announce(u, &mixes, &gateways).await;
    }
    let a = net.authorities.clone();
    let docs = wait_for(&urls, &a, "one document with 3 signatures everywhere", |d| {
        same_document(d) && d.iter().all(|(doc, keys)| keys.len() == 3 && doc.mix_nodes.len() == 3)
    })
    .await;
    let (doc, _) = &docs[0];
    assert_eq!(doc.gateway_nodes.len(), 1);
    assert_eq!(doc.issued_at, doc.round * 1000, "times come from the round");
    assert_eq!(doc.expires_at, doc.issued_at + 60_000);
    for (i, (d, _)) in docs.iter().enumerate() {
        assert_eq!(d.served_by, a.list()[i].key_b58(), "servedBy is the serving authority");
    }

    // one down: the two others keep issuing, with their 2 signatures
    let down = net.handles[2].take().unwrap();
    let down_addr = down.addr;
    down.shutdown().await;
    let round_down = rounds_now();
    let two = &urls[..2];
    let docs = wait_for(
        two,
        &a,
        "documents with 2 signatures after one authority went down",
        |d| {
            same_document(d)
                && d.iter()
                    .all(|(doc, keys)| keys.len() == 2 && doc.round > round_down + 1 && doc.mix_nodes.len() == 3)
        },
    )
    .await;
    assert!(docs.iter().all(|(_, keys)| !keys.contains(&a.list()[2].key)));

    // back, with the same data dir: it serves at once (caught up from its
    // peers), then signs the next rounds' documents with the others
    let listener = TcpListener::bind(down_addr).await.unwrap();
    let back = start_directory_on(config(&net.data_dirs[2], &a), listener)
        .await
        .unwrap();
    net.handles[2] = Some(back);
    wait_for(
        &urls[2..],
        &a,
        "the returning authority serving a caught-up document",
        |d| d[0].1.len() >= 2,
    )
    .await;
    let docs = wait_for(&urls, &a, "3 signatures again after it came back", |d| {
        same_document(d) && d.iter().all(|(doc, keys)| keys.len() == 3 && doc.mix_nodes.len() == 3)
    })
    .await;
    assert_eq!(ids(&docs[0].0).len(), 4);
    let rounds = net.handles[0].as_ref().unwrap().state.rounds().unwrap();
    assert!(
        rounds
            .counters
            .rounds_completed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
    for h in net.handles.into_iter().flatten() {
        h.shutdown().await;
    }
}

fn rounds_now() -> u64 {
    now_ms() / ROUND.as_millis() as u64
}

/// Waits for the start of a fresh round (within its first 150 ms); its number.
async fn fresh_round() -> u64 {
    let r = rounds_now();
    loop {
        let now = now_ms();
        if now / 1000 > r && now % 1000 < 150 {
            return now / 1000;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn vote(liar: &SigningKey, round: u64, mixes: &[MixNodeJson], gateways: &[GatewayJson]) -> VoteJson {
    let mut v = VoteJson {
        round,
        epoch_length_secs: nym_wire::epoch::DEFAULT_EPOCH_SECS,
        mix_nodes: mixes.to_vec(),
        gateway_nodes: gateways.to_vec(),
        ..Default::default()
    };
    v.sign(liar);
    v
}

async fn post_vote(url: &str, v: &VoteJson) -> Result<(), nym_mixnet::http::Refusal> {
    DirectoryClient::new(url)
        .unwrap()
        .announce(vote_paths::VOTES, v)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_authority_changes_nothing_and_its_late_or_conflicting_votes_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let liar = SigningKey::from_bytes(&[77; 32]);
    // its listed address never answers: the honest ones' requests to it time out
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let net = network(data.path(), 2, &[(&liar, &silent)]).await;
    let a = net.authorities.clone();
    let urls: Vec<String> = a.list()[..2].iter().map(|x| x.url.clone()).collect();
    let (mixes, gateways) = honest_nodes();
    for u in &urls {
        announce(u, &mixes, &gateways).await;
    }
    let honest = wait_for(&urls, &a, "the honest document", |d| {
        same_document(d) && d.iter().all(|(doc, k)| k.len() == 2 && doc.mix_nodes.len() == 3)
    })
    .await;
    let honest_ids = ids(&honest[0].0);

    // the liar lists an extra identity only it knows and omits an honest
    // mixnode, sending its vote to both honest authorities in time
    let extra = signed_mix(&identity(66), 1, "127.0.0.1:3666", now_ms());
    let lie = |round| {
        vote(
            &liar,
            round,
            &[mixes[1].clone(), mixes[2].clone(), extra.clone()],
            &gateways,
        )
    };
    let r = fresh_round().await;
    for u in &urls {
        post_vote(u, &lie(r)).await.expect("a vote in time is taken");
    }
    let docs = wait_for(&urls, &a, "the document of the round the liar voted in", |d| {
        same_document(d) && d.iter().all(|(doc, _)| doc.round >= r)
    })
    .await;
    assert_eq!(
        ids(&docs[0].0),
        honest_ids,
        "the extra node is not listed, the omitted one is"
    );
    assert!(docs
        .iter()
        .all(|(_, k)| k.len() == 2 && !k.contains(&liar.verifying_key().to_bytes())));

    // it signs a different document (one listing its extra node): ignored
    let mut forged = docs[0].0.clone();
    forged.mix_nodes.push(extra.clone());
    let s = forged.signature_by(&liar);
    let sig = RoundSignature {
        round: forged.round,
        key: s.key,
        signature: s.signature,
    };
    let refusal = DirectoryClient::new(&urls[0])
        .unwrap()
        .announce(vote_paths::SIGNATURES, &sig)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refusal.status, 409, "{refusal}");
    let rounds0 = net.handles[0].as_ref().unwrap().state.rounds().unwrap().clone();
    assert!(rounds0.counters.signature_refusals(PeerRefusal::Mismatch) >= 1);

    // it votes differently to each honest authority: they compare the votes
    // they hold after the deadline, drop it for the round, and agree
    let r = fresh_round().await;
    post_vote(&urls[0], &lie(r)).await.expect("first vote");
    post_vote(&urls[1], &vote(&liar, r, &[extra.clone()], &[]))
        .await
        .expect("a different first vote elsewhere");
    let docs = wait_for(&urls, &a, "the document of the round the liar equivocated in", |d| {
        same_document(d) && d.iter().all(|(doc, k)| doc.round >= r && k.len() == 2)
    })
    .await;
    assert_eq!(ids(&docs[0].0), honest_ids);
    for h in net.handles.iter().flatten() {
        let rounds = h.state.rounds().unwrap();
        assert_eq!(
            rounds.equivocators(r),
            vec![liar.verifying_key().to_bytes()],
            "both caught it"
        );
    }

    // a second, different vote to the same authority: refused as equivocation
    let r = fresh_round().await;
    post_vote(&urls[0], &lie(r)).await.expect("first vote");
    post_vote(&urls[0], &lie(r)).await.expect("an identical resend is fine");
    let e = post_vote(&urls[0], &vote(&liar, r, &[], &[])).await.unwrap_err();
    assert!(e.status == 409 && e.reason.contains("second, different vote"), "{e}");

    // a late vote (after a third of the round) and one for another round
    let r = fresh_round().await;
    while now_ms() % 1000 < 400 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if rounds_now() == r {
        let e = post_vote(&urls[1], &lie(r)).await.unwrap_err();
        assert!(e.status == 409 && e.reason.contains("deadline"), "{e}");
        assert!(
            rounds0.counters.vote_refusals(PeerRefusal::Late)
                + net.handles[1]
                    .as_ref()
                    .unwrap()
                    .state
                    .rounds()
                    .unwrap()
                    .counters
                    .vote_refusals(PeerRefusal::Late)
                >= 1
        );
    }
    let e = post_vote(&urls[1], &lie(rounds_now() + 5)).await.unwrap_err();
    assert!(e.status == 409 && e.reason.contains("round"), "{e}");
    // a key not in the file
    let stranger = SigningKey::from_bytes(&[88; 32]);
    let e = post_vote(&urls[1], &vote(&stranger, rounds_now(), &[], &[]))
        .await
        .unwrap_err();
    assert_eq!(e.status, 403, "{e}");
    // a vote whose signature does not verify
    let mut broken = lie(rounds_now());
    broken.round += 1;
    let e = post_vote(&urls[1], &broken).await.unwrap_err();
    assert_eq!(e.status, 400, "{e}");

    // through all of it, the honest document never listed the extra node
    let docs = wait_for(&urls, &a, "a later honest document", |d| same_document(d)).await;
    assert_eq!(ids(&docs[0].0), honest_ids);
    for h in net.handles.into_iter().flatten() {
        h.shutdown().await;
    }
}

/// Starts `nym-directory` with `args`; its URL, its log lines (on stdout,
/// after the URL, key and metrics lines) as they come, and its metrics URL.
fn spawn_directory(procs: &mut Procs, args: &[&str]) -> (String, std::sync::mpsc::Receiver<String>, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nym-directory"))
        .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    procs.0.push(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    let url = lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("directory: ")
        .unwrap()
        .to_string();
    let _key = lines.next().unwrap().unwrap();
    let metrics = lines
        .next()
        .and_then(|l| l.ok())
        .and_then(|l| l.strip_prefix("metrics: ").map(str::to_string));
    let (tx, rx) = std::sync::mpsc::channel();
    // keep draining, so the directory never blocks on a full pipe
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (url, rx, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_by_default_and_open_only_when_told_loudly() {
    let data = tempfile::tempdir().unwrap();
    let mut procs = Procs(Vec::new());
    let node = signed_mix(&identity(30), 1, "127.0.0.1:3030", now_ms());

    let d = data.path().join("closed").display().to_string();
    let (url, _, metrics) = spawn_directory(&mut procs, &["--data-dir", &d]);
    let refusal = DirectoryClient::new(&url)
        .unwrap()
        .announce(paths::MIXNODES, &node)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refusal.status, 403, "{refusal}");
    assert!(
        refusal.reason.contains("--admit") && refusal.reason.contains("--open"),
        "{refusal}"
    );
    let text = http_get(metrics.as_deref().unwrap()).await;
    assert!(text.contains("nym_directory_open 0"), "{text}");
    assert!(text.contains("reason=\"closed\"} 1"), "{text}");

    let d = data.path().join("open").display().to_string();
    let (url, log, metrics) = spawn_directory(&mut procs, &["--data-dir", &d, "--open"]);
    DirectoryClient::new(&url)
        .unwrap()
        .announce(paths::MIXNODES, &node)
        .await
        .unwrap()
        .expect("admitted");
    let deadline = Instant::now() + WAIT;
    loop {
        let line = log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("an OPEN warning in the log");
        if line.contains("OPEN") && line.contains("Sybil") {
            break;
        }
    }
    let text = http_get(metrics.as_deref().unwrap()).await;
    assert!(text.contains("nym_directory_open 1"), "{text}");
    assert_eq!(
        DirectoryClient::new(&url)
            .unwrap()
            .topology()
            .await
            .unwrap()
            .mix_nodes
            .len(),
        1
    );
}

async fn http_get(url: &str) -> String {
    let url = url.strip_prefix("http://").unwrap();
    let (host, path) = url
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((url, "/metrics".into()));
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn print_key_prints_the_key_it_then_serves_with_and_an_unlisted_key_is_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().join("a");
    let print = || {
        let out = Command::new(env!("CARGO_BIN_EXE_nym-directory"))
            .arg("--data-dir")
            .arg(&d)
            .arg("--print-key")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let key = print();
    assert_eq!(print(), key, "made on first use, then kept");
    let mut procs = Procs(Vec::new());
    let mut child = Command::new(env!("CARGO_BIN_EXE_nym-directory"))
        .args(["--listen", "127.0.0.1:0", "--open", "--data-dir"])
        .arg(&d)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    procs.0.push(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    assert!(lines.next().unwrap().unwrap().starts_with("directory: "));
    assert_eq!(lines.next().unwrap().unwrap(), format!("directory key: {key}"));

    let other = encode_key(SigningKey::from_bytes(&[5; 32]).verifying_key().as_bytes());
    let file = data.path().join("authorities");
    std::fs::write(&file, format!("{other} http://127.0.0.1:1\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nym-directory"))
        .args(["--listen", "127.0.0.1:0", "--open", "--data-dir"])
        .arg(&d)
        .arg("--authorities")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&key) && err.contains("not in the authorities file"),
        "{err}"
    );
}
