//! The real `havend` binary: config checking, signing, serving and SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

const HAVEND: &str = env!("CARGO_BIN_EXE_havend");

fn write_config(dir: &std::path::Path, listen: &str, partners: &str) {
    std::fs::write(
        dir.join("havend.toml"),
        format!("data_dir = {:?}\n[server]\nlisten = \"{listen}\"\n", dir.join("data").display().to_string()),
    )
    .unwrap();
    std::fs::write(dir.join("partners.toml"), partners).unwrap();
}

#[test]
fn check_config_prints_redacted_config_and_fails_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "127.0.0.1:0", "[partners.aurora]\nsecrets = [\"super-secret-value\"]\n");
    let ok = Command::new(HAVEND).arg("check-config").arg(dir.path()).output().unwrap();
    let printed = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(printed.contains("[redacted]") && !printed.contains("super-secret-value"), "{printed}");

    std::fs::write(dir.path().join("partners.toml"), "[partners.aurora]\nsecrets = []\n").unwrap();
    let bad = Command::new(HAVEND).arg("check-config").arg(dir.path()).output().unwrap();
    let error = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(error.contains("partners.toml: partners.aurora.secrets"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_stores_a_webhook_signed_by_sign_webhook_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    write_config(dir.path(), &format!("127.0.0.1:{port}"), "[partners.aurora]\nsecrets = [\"binary-secret\"]\n");
    let body_file = dir.path().join("booking.json");
    std::fs::write(&body_file, booking_created("bk_bin")).unwrap();

    let mut child = Command::new(HAVEND)
        .args(["run", "--config"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let signed = Command::new(HAVEND)
        .args(["sign-webhook", "--partner", "aurora", "--secret", "binary-secret", "--body"])
        .arg(&body_file)
        .output()
        .unwrap();
    assert!(signed.status.success());
    let headers: Vec<(String, String)> = String::from_utf8(signed.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once(": ").map(|(n, v)| (n.to_owned(), v.to_owned())))
        .collect();

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let url = format!("http://127.0.0.1:{port}/webhooks/aurora/booking-created");
    let body = std::fs::read(&body_file).unwrap();
    let accepted = eventually(Duration::from_secs(20), || {
        let mut request = http::Request::post(&url);
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(http_body_util::Full::new(bytes::Bytes::from(body.clone()))).unwrap();
        let client = client.clone();
        async move { client.request(request).await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    assert!(accepted, "the daemon accepted the signed webhook");

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exited = eventually(Duration::from_secs(20), || {
        let status = child.try_wait().unwrap();
        async move { status.is_some() }
    })
    .await;
    assert!(exited, "SIGTERM stops the daemon");
    assert!(child.wait().unwrap().success(), "and it exits cleanly");

    let db = sea_orm::Database::connect(format!("sqlite://{}", dir.path().join("data/havend.db").display()))
        .await
        .unwrap();
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(entity::webhook_events::Entity::find().count(&db).await.unwrap(), 1);
}

#[test]
fn migrate_applies_lists_and_reverts_migrations() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "127.0.0.1:0", "");
    let migrate = |action: &str| {
        let output = Command::new(HAVEND).args(["migrate", "--config"]).arg(dir.path()).arg(action).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let status = migrate("status");
    assert!(status.contains("pending m20261123_000001_create_webhook_events"), "{status}");
    let up = migrate("up");
    assert!(up.contains("applied m20261123_000001_create_webhook_events"), "{up}");
    assert!(up.contains("applied m20261123_000002_create_chain_tables"), "{up}");
    let down = migrate("down");
    assert!(down.contains("applied m20261123_000002_create_chain_tables"), "{down}");
    assert!(down.contains("pending m20261124_000020_wallet_lifecycle"), "{down}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_starts_a_local_chain_and_serves_with_the_chain_in_health() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    write_config(dir.path(), &format!("127.0.0.1:{port}"), "[partners.aurora]\nsecrets = [\"dev-secret\"]\n");
    let child = Command::new(HAVEND)
        .args(["dev", "--config"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let health_url = format!("http://127.0.0.1:{port}/health");
    let last_health = std::sync::Arc::new(std::sync::Mutex::new(serde_json::Value::Null));
    let ready = eventually(Duration::from_secs(60), || {
        let client = client.clone();
        let request = http::Request::get(&health_url).body(http_body_util::Full::new(bytes::Bytes::new())).unwrap();
        let last_health = last_health.clone();
        async move {
            let Ok(response) = client.request(request).await else { return false };
            use http_body_util::BodyExt;
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let health: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let ok = health["blockchain"] == "ok";
            *last_health.lock().unwrap() = health;
            ok
        }
    })
    .await;
    let health = last_health.lock().unwrap().clone();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let output = child.wait_with_output().unwrap();
    assert!(ready, "dev mode serves with a chain: {health}");
    assert_eq!(health["circulating_supply"], "0");
    let banner = String::from_utf8_lossy(&output.stdout);
    assert!(banner.contains("curl -sS") && banner.contains("X-Aurora-Signature"), "{banner}");
    assert!(output.status.success());
    assert!(dir.path().join("data/master.key").exists(), "dev mode made its master key once");
}
