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

/// `sign-webhook --event` signs `"{timestamp}.{event}.{body}"`, what a
/// `sign_event = true` partner sends; without it the body alone is signed.
#[test]
fn sign_webhook_with_event_signs_what_a_sign_event_partner_sends() {
    use havend::config::Secret;
    use havend::webhooks::signature::{Signed, Window};
    use havend::webhooks::{Partner, Scheme};

    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("booking.json");
    let body = booking_created("bk_cli_event");
    std::fs::write(&body_file, &body).unwrap();
    let headers = |extra: &[&str]| {
        let output = Command::new(HAVEND)
            .args(["sign-webhook", "--partner", "aurora", "--secret", "cli-secret", "--body"])
            .arg(&body_file)
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let mut map = http::HeaderMap::new();
        for line in String::from_utf8(output.stdout).unwrap().lines() {
            let (name, value) = line.split_once(": ").unwrap();
            map.insert(http::HeaderName::try_from(name).unwrap(), value.parse().unwrap());
        }
        map
    };
    let window = Window { past_secs: 300, future_secs: 60 };
    let verify = |headers: &http::HeaderMap, signed: Signed<'_>| {
        Scheme::HavenHmac.verify(Partner::Aurora, headers, signed, &[Secret::new("cli-secret")], now(), window)
    };
    let bound = headers(&["--event", "booking-created"]);
    assert!(verify(&bound, Signed::event_and_body("booking-created", body.as_bytes())).is_ok());
    assert!(verify(&bound, Signed::event_and_body("booking-cancelled", body.as_bytes())).is_err());
    assert!(verify(&headers(&[]), body.as_bytes().into()).is_ok());

    let stripe = Command::new(HAVEND)
        .args(["sign-webhook", "--partner", "stripe", "--secret", "whsec_x", "--event", "e", "--body"])
        .arg(&body_file)
        .output()
        .unwrap();
    assert!(!stripe.status.success(), "--event is refused for a scheme that cannot sign it");
}

/// RPC providers put API keys in the URL's path or query: `check-config` and
/// the dev banner show only its scheme, host and port.
#[test]
fn check_config_and_dev_banner_show_only_the_rpc_host() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "127.0.0.1:0", "");
    let rpc_url = "https://eth-mainnet.g.alchemy.com/v2/KEY123?token=KEY456";
    let chain = format!("\n[chain]\nrpc_url = {rpc_url:?}\ntoken = \"0x0000000000000000000000000000000000000001\"\nchain_id = 1\n");
    let mut daemon_file = std::fs::read_to_string(dir.path().join("havend.toml")).unwrap();
    daemon_file.push_str(&chain);
    std::fs::write(dir.path().join("havend.toml"), daemon_file).unwrap();

    let output = Command::new(HAVEND).arg("check-config").arg(dir.path()).output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(printed.contains("https://eth-mainnet.g.alchemy.com/[redacted]"), "{printed}");
    assert!(!printed.contains("KEY123") && !printed.contains("KEY456"), "{printed}");

    let config = havend::config::Config::load(dir.path()).unwrap();
    let banner = havend::dev::banner(&config).unwrap();
    assert!(banner.contains("https://eth-mainnet.g.alchemy.com/[redacted]"), "{banner}");
    assert!(!banner.contains("KEY123") && !banner.contains("KEY456"), "{banner}");
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
    // `down` reverts the newest migration only, whichever that is.
    let newest = status.lines().rev().find_map(|line| line.strip_prefix("pending ")).expect("migrations listed").to_owned();
    let up = migrate("up");
    assert!(up.contains("applied m20261123_000001_create_webhook_events"), "{up}");
    assert!(up.contains("applied m20261123_000002_create_chain_tables"), "{up}");
    assert!(up.contains("applied m20261124_000003_create_rewards_tables"), "{up}");
    let down = migrate("down");
    assert!(down.contains("applied m20261123_000002_create_chain_tables"), "{down}");
    assert!(down.contains("applied m20261124_000003_create_rewards_tables"), "{down}");
    assert!(down.contains("applied m20261124_000020_wallet_lifecycle"), "{down}");
    assert!(down.contains(&format!("pending {newest}")), "{down}");
    let up_again = migrate("up");
    assert!(up_again.contains(&format!("applied {newest}")), "the newest migration re-applies after its down: {up_again}");
}

/// The newcomer's path: `havend dev`, paste the printed curl, and the
/// printed `havend user` shows the guest's tokens on chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_ends_with_the_guests_tokens_on_chain() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    write_config(dir.path(), &format!("127.0.0.1:{port}"), "[partners.aurora]\nsecrets = [\"dev-secret\"]\n");
    let log_path = dir.path().join("havend-dev.log");
    let mut child = Command::new(HAVEND)
        .args(["dev", "--config"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let stdout = child.stdout.take().unwrap();
    let (banner_tx, banner_rx) = tokio::sync::oneshot::channel();
    // Reads the banner, then keeps draining stdout so the daemon never writes into a closed pipe.
    std::thread::spawn(move || {
        let mut banner = String::new();
        let mut banner_tx = Some(banner_tx);
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            banner.push_str(&line);
            banner.push('\n');
            if line.contains("/api/v1/token/mint")
                && let Some(tx) = banner_tx.take()
            {
                let _ = tx.send(banner.clone());
            }
        }
    });
    let banner = tokio::time::timeout(Duration::from_secs(120), banner_rx).await.expect("the banner is printed").unwrap_or_else(|_| panic!("havend dev exited: {}", log()));
    let command_after = |marker: &str| {
        banner.lines().map(str::trim).find(|l| l.starts_with(marker)).unwrap_or_else(|| panic!("no {marker:?} in {banner}")).to_owned()
    };
    let curl = command_after("curl -sS");
    let sent = Command::new("sh").arg("-c").arg(&curl).output().unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap_or_default();
    assert_eq!(answer["received"], true, "the printed curl is accepted: {answer} {}", String::from_utf8_lossy(&sent.stderr));

    let user_args: Vec<String> = command_after("havend user").split_whitespace().skip(1).map(str::to_owned).collect();
    let last = std::sync::Arc::new(std::sync::Mutex::new(serde_json::Value::Null));
    let on_chain = eventually(Duration::from_secs(60), || {
        let output = Command::new(HAVEND).args(&user_args).arg("--config").arg(dir.path()).output().unwrap();
        let user: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        let done = user["on_chain"] == "793.2" && user["confirmed"] == "793.2";
        *last.lock().unwrap() = user;
        async move { done }
    })
    .await;
    // The token API's curl, twice: one mint of 25 HNV, then its replay.
    let mint = command_after("curl -sS -H 'Authorization");
    for _ in 0..2 {
        let sent = Command::new("sh").arg("-c").arg(&mint).output().unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap_or_default();
        assert_eq!(answer["status"], "queued", "the printed mint is accepted: {answer}");
    }
    let topped_up = eventually(Duration::from_secs(60), || {
        let output = Command::new(HAVEND).args(&user_args).arg("--config").arg(dir.path()).output().unwrap();
        let user: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        let done = user["on_chain"] == "818.2";
        *last.lock().unwrap() = user;
        async move { done }
    })
    .await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    use http_body_util::BodyExt;
    // `/health` serves the chain as the background refresher last read it
    // (at most a second ago): look until the reading after the top-up.
    let mut health = serde_json::Value::Null;
    for _ in 0..50 {
        let answer = client
            .request(http::Request::get(format!("http://127.0.0.1:{port}/health")).body(http_body_util::Full::new(bytes::Bytes::new())).unwrap())
            .await
            .unwrap_or_else(|error| panic!("havend dev stopped serving ({error}); on chain: {}; its log:\n{}", last.lock().unwrap(), log()));
        health = serde_json::from_slice(&answer.into_body().collect().await.unwrap().to_bytes()).unwrap_or_default();
        if health["circulating_supply"] == "818.2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(on_chain, "the guest holds 330.50 CAD x 2 x 1.2 on chain: {}", last.lock().unwrap());
    assert!(topped_up, "the API mint added 25 HNV once: {}", last.lock().unwrap());
    assert_eq!((health["blockchain"].as_str(), health["circulating_supply"].as_str()), (Some("ok"), Some("818.2")), "{health}");
    assert!(status.success());
    assert!(dir.path().join("data/master.key").exists(), "dev mode made its master key once");
}
