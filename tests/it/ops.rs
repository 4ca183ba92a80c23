//! Operating havend: Prometheus metrics, SIGHUP reload of the real binary,
//! and systemd's notification protocol (READY, WATCHDOG, STOPPING).

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use havend::webhooks::{Partner, Scheme};

use crate::support::*;

const HAVEND: &str = env!("CARGO_BIN_EXE_havend");

/// The samples of a Prometheus text exposition, as `(series, value)`;
/// panics on a line that is neither a comment nor a well-formed sample.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(comment.starts_with("HELP ") || comment.starts_with("TYPE "), "unexpected comment {line:?}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad name in {line:?}");
        assert!(name_end == series.len() || series.ends_with('}'), "unclosed labels in {line:?}");
        samples.push((series.to_owned(), value));
    }
    samples
}

/// The value of the sample whose series names `metric` and contains every label in `labels`.
fn sample(samples: &[(String, f64)], metric: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| series.split('{').next() == Some(metric) && labels.iter().all(|label| series.contains(label)))
        .map(|(_, value)| value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_count_a_received_webhook() {
    let daemon = TestDaemon::start(Backend::Sqlite).await;
    let scrape = || async {
        let response = daemon
            .client
            .request(http::Request::get(format!("http://{}/metrics", daemon.addr)).body(Default::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        use http_body_util::BodyExt;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        parse_prometheus(std::str::from_utf8(&body).unwrap())
    };
    let stored = [r#"partner="aurora""#, r#"outcome="stored""#];
    let refused = [r#"partner="aurora""#, r#"outcome="invalid_signature""#];
    let before = scrape().await;

    assert_eq!(daemon.deliver(Partner::Aurora, Some("booking-created"), &booking_created("bk_metrics")).await.status, 200);
    let body = booking_created("bk_metrics_bad");
    let forged = sign_with(Partner::Aurora, Scheme::HavenHmac, "not-the-secret", &body, now());
    assert_eq!(daemon.post("/webhooks/aurora/booking-created", &forged, body).await.status, 401);

    let after = scrape().await;
    // Other tests in this process share the recorder, so counters only grow by at least ours.
    assert!(sample(&after, "havend_webhooks_received_total", &stored) >= sample(&before, "havend_webhooks_received_total", &stored) + 1.0);
    assert!(sample(&after, "havend_webhooks_received_total", &refused) >= sample(&before, "havend_webhooks_received_total", &refused) + 1.0);
    let acks = [r#"partner="aurora""#];
    assert!(sample(&after, "havend_webhook_ack_seconds_count", &acks) >= sample(&before, "havend_webhook_ack_seconds_count", &acks) + 2.0);
    assert!(after.iter().any(|(series, _)| series.starts_with("havend_webhook_ack_seconds_bucket{") && series.contains(r#"le="0.005""#)));
    daemon.stop().await;
}

/// A config directory for the real binary on SQLite, listening on `port`.
fn config_dir(port: u16, partners: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    std::fs::write(dir.path().join("havend.toml"), format!("data_dir = {data:?}\n[server]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
    std::fs::write(dir.path().join("partners.toml"), partners).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn signal(child: &Child, name: &str) {
    assert!(Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap().success());
}

async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let request = http::Request::get(format!("http://127.0.0.1:{port}{path}")).body(http_body_util::Full::new(bytes::Bytes::new())).unwrap();
    let response = client.request(request).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn post_signed(port: u16, secret: &str) -> u16 {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let body = booking_created(&format!("bk_{}", uuid::Uuid::new_v4().simple()));
    let mut request = http::Request::post(format!("http://127.0.0.1:{port}/webhooks/aurora/booking-created"));
    for (name, value) in sign_with(Partner::Aurora, Scheme::HavenHmac, secret, &body, now()) {
        request = request.header(name, value);
    }
    let request = request.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap();
    client.request(request).await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// `partners.toml` is a symlink to a file outside the watched directory (as
/// configuration management often lays it out): editing the target makes no
/// event in the directory, and SIGHUP (`systemctl reload`) applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_real_binary() {
    let port = free_port();
    let dir = config_dir(port, "");
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("partners.toml");
    std::fs::write(&target, "[partners.aurora]\nsecrets = [\"hup-old\"]\n").unwrap();
    std::fs::remove_file(dir.path().join("partners.toml")).unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("partners.toml")).unwrap();
    let mut child = Command::new(HAVEND).args(["run", "--config"]).arg(dir.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();

    let up = eventually(Duration::from_secs(20), || async { post_signed(port, "hup-old").await == 200 }).await;
    assert!(up, "the daemon serves with the old secret");
    std::fs::write(&target, "[partners.aurora]\nsecrets = [\"hup-new\"]\n").unwrap();
    signal(&child, "HUP");
    let applied = eventually(Duration::from_secs(5), || async { post_signed(port, "hup-new").await == 200 }).await;
    let old_status = post_signed(port, "hup-old").await;
    let metrics = http_get(port, "/metrics").await.map(|(_, body)| body).unwrap_or_default();
    signal(&child, "TERM");
    let status = child.wait().unwrap();

    assert!(applied, "SIGHUP applied the new secret");
    assert_eq!(old_status, 401, "and the old one is refused");
    let samples = parse_prometheus(&metrics);
    assert_eq!(sample(&samples, "havend_config_reloads_total", &[r#"trigger="sighup""#, r#"outcome="applied""#]), 1.0, "{metrics}");
    assert!(status.success(), "still exits cleanly on SIGTERM");
}

/// Reads datagrams from `socket` until one contains `line`, or `timeout` passes.
fn wait_for(socket: &UnixDatagram, line: &str, timeout: Duration, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(length) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
            let found = message.lines().any(|l| l == line);
            seen.push(message);
            if found {
                return true;
            }
        }
    }
    false
}

/// Under systemd-like supervision: READY=1 once it serves, WATCHDOG=1 pings
/// at half of `WATCHDOG_USEC`, STOPPING=1 on SIGTERM, then exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_speaks_systemds_notify_protocol() {
    let port = free_port();
    let dir = config_dir(port, "[partners.aurora]\nsecrets = [\"notify-secret\"]\n");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut child = Command::new(HAVEND)
        .args(["run", "--config"])
        .arg(dir.path())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let ready = wait_for(&socket, "READY=1", Duration::from_secs(20), &mut seen);
    let serving = ready && http_get(port, "/health").await.is_some_and(|(status, _)| status == 200);
    let started = Instant::now();
    let pings = (0..3).all(|_| wait_for(&socket, "WATCHDOG=1", Duration::from_secs(2), &mut seen));
    let three_pings_took = started.elapsed();
    signal(&child, "TERM");
    let stopping = wait_for(&socket, "STOPPING=1", Duration::from_secs(10), &mut seen);
    let status = child.wait().unwrap();

    assert!(ready, "READY=1 is sent: {seen:?}");
    assert!(serving, "and the listener serves by then");
    assert!(pings && three_pings_took < Duration::from_secs(1), "WATCHDOG=1 every ~100 ms: {three_pings_took:?} {seen:?}");
    assert!(stopping, "STOPPING=1 on SIGTERM: {seen:?}");
    assert!(status.success(), "exit 0 after SIGTERM");
}
