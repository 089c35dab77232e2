//! The directory HTTP client's raw topology fetch (`topology_text`, what a
//! client verifies itself): the document as the directory sent it, and
//! errors that name the URL for every way a fetch goes wrong.

use nym_mixnet::directory::{start_directory, DirectoryConfig};
use nym_mixnet::http::{DirectoryClient, MAX_TOPOLOGY_BYTES};
use nym_wire::authority::Authorities;
use nym_wire::topology::{paths, TopologyJson};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server that answers every request with `answer` (or, when None,
/// closes the connection unanswered).
async fn fake_directory(answer: Option<Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if let Some(a) = answer {
                    let _ = s.write_all(&a).await;
                }
            });
        }
    });
    addr
}

fn answer(status: &str, body: &[u8]) -> Vec<u8> {
    let head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
    [head.as_bytes(), body].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_text_is_the_document_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DirectoryConfig::new(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let directory = start_directory(config).await.unwrap();
    let client = DirectoryClient::new(&format!("{}/", directory.url())).unwrap();
    let text = client.topology_text().await.unwrap();
    let doc: TopologyJson = serde_json::from_str(&text).unwrap();
    doc.verify_signatures(Some(&Authorities::single(directory.directory_key(), directory.url()))).unwrap();
    assert_eq!(doc, client.topology().await.unwrap(), "the same (cached) document either way");
    directory.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_topology_fetch_names_the_url() {
    let url = |addr: SocketAddr| format!("http://{addr}{}", paths::TOPOLOGY);

    let addr = fake_directory(None).await;
    let e =
        format!("{:#}", DirectoryClient::new(&format!("http://{addr}")).unwrap().topology_text().await.unwrap_err());
    assert!(e.contains(&format!("cannot reach the directory at {}", url(addr))), "{e}");

    let addr = fake_directory(Some(answer("404 Not Found", b"no"))).await;
    let e =
        format!("{:#}", DirectoryClient::new(&format!("http://{addr}")).unwrap().topology_text().await.unwrap_err());
    assert!(e.contains(&format!("directory answered 404 Not Found for {}", url(addr))), "{e}");

    let addr = fake_directory(Some(answer("200 OK", &[0xff, 0xfe]))).await;
    let e =
        format!("{:#}", DirectoryClient::new(&format!("http://{addr}")).unwrap().topology_text().await.unwrap_err());
    assert!(e.contains(&format!("topology from {} is not UTF-8", url(addr))), "{e}");

    let addr = fake_directory(Some(answer("200 OK", &vec![b' '; MAX_TOPOLOGY_BYTES + 1]))).await;
    let e =
        format!("{:#}", DirectoryClient::new(&format!("http://{addr}")).unwrap().topology_text().await.unwrap_err());
    assert!(e.contains(&format!("topology from {} is too large", url(addr))), "{e}");

    // exactly the bound is read
    let addr = fake_directory(Some(answer("200 OK", &vec![b' '; MAX_TOPOLOGY_BYTES]))).await;
    let text = DirectoryClient::new(&format!("http://{addr}")).unwrap().topology_text().await.unwrap();
    assert_eq!(text.len(), MAX_TOPOLOGY_BYTES);

    let e = DirectoryClient::new("https://example.org").err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("must start with http://"), "{e}");
}
