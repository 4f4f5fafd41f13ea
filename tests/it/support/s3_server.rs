//! A real S3-compatible server for the off-site backup tests: moto's (from PyPI; `.ci/run`
//! installs it), one per test run, on a free port. It stops when the test process ends:
//! it runs until its standard input closes, which this process holds open.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

struct Server {
    endpoint: String,
    _child: Mutex<Child>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// The server (moto's `ThreadedMotoServer` on `argv[1]`; it says `ready`, then runs until its
/// standard input closes). The backup benchmark starts it the same way.
const RUN: &str = include_str!("moto.py");

/// The server's endpoint (`http://127.0.0.1:PORT`), started on first use.
pub fn endpoint() -> &'static str {
    &SERVER
        .get_or_init(|| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new("python3")
                .args(["-c", RUN, &port.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3 with moto (pip install 'moto[server]') for the S3 tests");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(
                line.trim(),
                "ready",
                "moto did not start: pip install 'moto[server]'"
            );
            Server {
                endpoint: format!("http://127.0.0.1:{port}"),
                _child: Mutex::new(child),
            }
        })
        .endpoint
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A new, empty bucket.
pub async fn bucket() -> String {
    let name = format!(
        "chatctl-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let created = client()
        .put(format!("{}/{name}", endpoint()))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{:?}", created.text().await);
    name
}

/// The environment chatctl needs to reach the server (moto takes any credentials).
pub fn env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint().to_owned()),
        ("AWS_ACCESS_KEY_ID", "chatctl-test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "chatctl-test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ]
}

/// Multipart uploads begun and neither completed nor aborted, in `bucket`.
pub async fn uploads_in_progress(bucket: &str) -> usize {
    let text = client()
        .get(format!("{}/{bucket}?uploads", endpoint()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.matches("<UploadId>").count()
}
