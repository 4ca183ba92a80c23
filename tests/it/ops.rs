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

/// Under load from concurrent partners, SIGTERM: the daemon stops taking
/// requests, answers those in flight, exits 0, and every event it answered
/// 2xx is in the database (invariant 1 across a shutdown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_and_loses_no_acknowledged_event() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let port = free_port();
    let dir = config_dir(port, "[partners.aurora]\nsecrets = [\"load-secret\"]\n");
    let mut child = Command::new(HAVEND).args(["run", "--config"]).arg(dir.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    assert!(eventually(Duration::from_secs(20), || async { post_signed(port, "load-secret").await == 200 }).await, "the daemon serves");

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..16 {
        let (client, acked, sent) = (client.clone(), acked.clone(), sent.clone());
        senders.spawn(async move {
            for i in 0.. {
                let id = format!("bk_load_{sender}_{i}");
                let body = booking_created(&id);
                let mut request = http::Request::post(format!("http://127.0.0.1:{port}/webhooks/aurora/booking-created"));
                for (name, value) in sign_with(Partner::Aurora, Scheme::HavenHmac, "load-secret", &body, now()) {
                    request = request.header(name, value);
                }
                let request = request.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
                match client.request(request).await {
                    Ok(response) if response.status().is_success() => acked.lock().unwrap().push(id),
                    // 503 while draining: not acknowledged, the partner retries.
                    Ok(_) => {}
                    // The listener is closed: this partner stops.
                    Err(_) => return,
                }
            }
        });
    }
    // Load for a while, then SIGTERM in the middle of it.
    assert!(eventually(Duration::from_secs(30), || async { acked.lock().unwrap().len() >= 300 }).await, "the load is acknowledged");
    signal(&child, "TERM");
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    let stopped_in = started.elapsed();
    let drained = tokio::time::timeout(Duration::from_secs(30), async { while senders.join_next().await.is_some() {} }).await;

    assert!(status.success(), "exit 0 after SIGTERM under load: {status:?}");
    assert!(drained.is_ok(), "every sender saw the listener close");
    let acked = acked.lock().unwrap().clone();
    let db = sea_orm::Database::connect(format!("sqlite://{}", dir.path().join("data/havend.db").display())).await.unwrap();
    use sea_orm::EntityTrait;
    let stored: std::collections::HashSet<String> = entity::webhook_events::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.partner_event_id)
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.iter().any(|key| key.ends_with(&format!(":{id}")) || key == *id)).collect();
    eprintln!("sigterm under load: {} sent, {} acknowledged, {} stored, stopped in {stopped_in:?}", sent.load(Ordering::Relaxed), acked.len(), stored.len());
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
}

/// The metric names a PromQL expression reads: identifiers outside label
/// matchers, ranges and strings that are neither functions (followed by
/// `(`), keywords, nor the label lists of `by`/`without`/`on`/`ignoring`/`group_*`.
fn promql_metric_names(expr: &str) -> std::collections::BTreeSet<String> {
    const KEYWORDS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless", "inf", "nan"];
    // Aggregation operators may put their `by (…)` before the parenthesis.
    const AGGREGATIONS: &[&str] =
        &["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"];
    const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expr.chars().collect();
    // Index just past the closing `close` of the group opened at `start`, skipping quoted strings.
    let skip_group = |start: usize, close: char| {
        let mut i = start + 1;
        while i < chars.len() && chars[i] != close {
            if matches!(chars[i], '"' | '\'' | '`') {
                let quote = chars[i];
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        i + 1
    };
    let mut names = std::collections::BTreeSet::new();
    let mut label_list_next = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_group(i, c);
        } else if c == '{' {
            i = skip_group(i, '}');
        } else if c == '[' {
            i = skip_group(i, ']');
        } else if c == '(' && label_list_next {
            label_list_next = false;
            i = skip_group(i, ')');
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            if LABEL_LISTS.contains(&word.as_str()) {
                label_list_next = true;
            } else if !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) && !AGGREGATIONS.contains(&word.as_str()) && next != Some('(') {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn promql_metric_names_leaves_out_functions_labels_and_ranges() {
    let names = promql_metric_names(
        r#"histogram_quantile(0.99, sum by (partner, le) (rate(a_seconds_bucket{outcome!~"x|y}"}[$__rate_interval]))) / clamp_min(max without(le) (b_total offset 5m), 1e-9) or on(job) c + sum(d) by (x)"#,
    );
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["a_seconds_bucket", "b_total", "c", "d"]);
}

/// Every PromQL expression in `config/grafana-dashboard.json`.
fn dashboard_queries() -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                        _ => walk(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    walk(&dashboard, &mut queries);
    queries
}

/// The real binary signing for a hot wallet on anvil, after a webhook, a
/// SIGHUP and an alert: every metric the Grafana dashboard queries is in
/// what `/metrics` exports, and the dashboard covers every metric havend has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_grafana_dashboard_queries_is_exported() {
    use crate::support::chain::{Prepared, TestChain};

    let queries = dashboard_queries();
    let wanted: std::collections::BTreeSet<String> = queries.iter().flat_map(|q| promql_metric_names(q)).collect();
    assert!(queries.len() >= 10, "{queries:?}");
    let base = |name: &str| name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count").to_owned();
    for metric in havend::telemetry::metrics::ALL {
        assert!(wanted.iter().any(|name| base(name) == *metric), "the dashboard shows {metric}");
    }

    let chain = TestChain::start(None).await;
    let prepared = Prepared::new(Backend::Sqlite, &chain, 1).await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let daemon_file = format!(
        "data_dir = {data:?}\n[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = {url:?}\n[custody]\nmaster_key_file = {key:?}\n\
         [chain]\nrpc_url = {rpc:?}\ntoken = \"{token}\"\nchain_id = {chain_id}\nwallets = [\"{wallet}\"]\npoll_interval_ms = 100\n\
         [monitor]\ninterval_secs = 1\n[alerts]\npoll_interval_ms = 100\n",
        data = dir.path().join("data").display().to_string(),
        url = prepared.database.url,
        key = prepared.key_dir.path().join("master.key").display().to_string(),
        rpc = chain.url,
        token = chain.token,
        chain_id = chain.chain_id,
        wallet = prepared.wallets[0].address,
    );
    std::fs::write(dir.path().join("havend.toml"), daemon_file).unwrap();
    std::fs::write(dir.path().join("partners.toml"), "[partners.aurora]\nsecrets = [\"dash-secret\"]\n").unwrap();
    let mut child = Command::new(HAVEND).args(["run", "--config"]).arg(dir.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();

    assert!(eventually(Duration::from_secs(30), || async { post_signed(port, "dash-secret").await == 200 }).await, "the daemon serves");
    signal(&child, "HUP");
    let db = sea_orm::Database::connect(&prepared.database.url).await.unwrap();
    havend::alert::raise(&db, havend::alert::Severity::Info, "system_test", "dashboard test alert", serde_json::json!({})).await;

    let exported = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let all_there = eventually(Duration::from_secs(30), || {
        let (exported, wanted) = (exported.clone(), wanted.clone());
        async move {
            let Some(body) = scrape_metrics(port).await else { return false };
            let names: std::collections::BTreeSet<String> =
                parse_prometheus(&body).into_iter().map(|(series, _)| series.split('{').next().unwrap().to_owned()).collect();
            let done = wanted.is_subset(&names);
            *exported.lock().unwrap() = names;
            done
        }
    })
    .await;
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    let missing: Vec<String> = wanted.difference(&exported.lock().unwrap()).cloned().collect();
    assert!(all_there, "queried by the dashboard but not exported: {missing:?}");
    assert!(status.success());
}

async fn scrape_metrics(port: u16) -> Option<String> {
    http_get(port, "/metrics").await.filter(|(status, _)| *status == 200).map(|(_, body)| body)
}

/// A flood of unauthenticated `/health` requests is answered from the
/// background reading and costs no RPC: the node (behind a counting proxy)
/// sees no more `totalSupply()` calls than the refresher's own ticks (plus
/// one in flight at either end), however many requests were answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_requests_make_no_rpc_calls_beyond_the_background_refreshes() {
    use crate::support::chain::{Prepared, TestChain};
    use crate::support::rpc_proxy::{RpcProxy, is_total_supply_call};
    let chain = TestChain::start(None).await;
    let proxy = RpcProxy::start(&chain.url, None).await;
    let rpc_url = proxy.url.clone();
    let (daemon, _, _) = Prepared::new(Backend::Sqlite, &chain, 1).await.start_with(&chain, |db| db.url.clone(), move |config| config.rpc_url = rpc_url).await;
    let refreshes = || daemon.daemon().chain_health().expect("a chain is configured").refreshes;
    assert!(eventually(Duration::from_secs(10), || async { refreshes() >= 1 }).await, "the refresher reads the chain at start");

    let (calls_before, ticks_before) = (proxy.count(is_total_supply_call), refreshes());
    let mut answered = 0;
    for _ in 0..50 {
        let requests = (0..10).map(|_| daemon.get("/health"));
        for health in futures_util::future::join_all(requests).await {
            assert_eq!((health.status, health.json["blockchain"].as_str(), health.json["circulating_supply"].as_str()), (200, Some("ok"), Some("0")), "{:?}", health.json);
            answered += 1;
        }
    }
    let (calls, ticks) = (proxy.count(is_total_supply_call) - calls_before, refreshes() - ticks_before);
    assert_eq!(answered, 500);
    assert!(calls <= ticks as usize + 1, "{answered} health requests cost {calls} totalSupply calls over {ticks} refreshes");
    daemon.stop().await;
}
