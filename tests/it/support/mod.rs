//! Test harness: a real havend listener on 127.0.0.1:0 against a real
//! PostgreSQL (own database per test) or SQLite (own file per test), an HTTP
//! client, signing helpers, and a TCP proxy to cut the database off.

pub mod chain;
pub mod gate;
pub mod proxy;
pub mod receivers;
pub mod rpc_proxy;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use havend::Daemon;
use havend::config::{ApiKey, Config, PartnerConfig, Scope, Secret};
use havend::webhooks::{Partner, Scheme};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sea_orm::{ColumnTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;

/// Where the test databases live; override with HAVEND_TEST_POSTGRES_URL.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const AURORA_SECRET: &str = "aurora-secret-current";
pub const AURORA_OLD_SECRET: &str = "aurora-secret-previous";
pub const TRIBE_SECRET: &str = "tribe-secret";
pub const STRIPE_SECRET: &str = "whsec_stripe_test_secret";
/// Hi.Events is configured with Standard Webhooks in tests, so every scheme is exercised.
pub const HI_EVENTS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The database a test daemon runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Generates one test per backend from `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
    };
}

/// A fresh, empty database for one test.
pub struct TestDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("havend.db").display());
                TestDatabase { url, _dir: Some(dir) }
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let admin = Database::connect(&admin_url).await.expect("PostgreSQL is reachable for tests");
                let name = format!("havend_it_{}", uuid::Uuid::new_v4().simple());
                admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
                admin.close().await.ok();
                let base = admin_url.rsplit_once('/').unwrap().0;
                TestDatabase { url: format!("{base}/{name}"), _dir: None }
            }
        }
    }
}

impl TestDatabase {
    /// Another handle on the same database (a second daemon), owning nothing.
    pub fn shared(url: &str) -> TestDatabase {
        TestDatabase { url: url.to_owned(), _dir: None }
    }
}

pub fn postgres_admin_url() -> String {
    std::env::var("HAVEND_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// A token-scope API key every test daemon accepts (its name: [`TOKEN_KEY_NAME`]).
pub const TOKEN_KEY: &str = "tok_test_0123456789";
/// The name of [`TOKEN_KEY`] in the config.
pub const TOKEN_KEY_NAME: &str = "backend";
/// A second token-scope key (idempotency keys are scoped per API key).
pub const OTHER_TOKEN_KEY: &str = "tok_other_0123456789";
/// The name of [`OTHER_TOKEN_KEY`].
pub const OTHER_TOKEN_KEY_NAME: &str = "backend-2";
/// An admin-scope API key every test daemon accepts.
pub const ADMIN_KEY: &str = "adm_test_0123456789";
/// The name of [`ADMIN_KEY`].
pub const ADMIN_KEY_NAME: &str = "ops";

/// The partners every test daemon knows, with their secrets and schemes.
pub fn test_partners() -> Vec<(Partner, Scheme, Vec<&'static str>)> {
    vec![
        (Partner::Aurora, Scheme::HavenHmac, vec![AURORA_SECRET, AURORA_OLD_SECRET]),
        (Partner::Tribe, Scheme::HavenHmac, vec![TRIBE_SECRET]),
        (Partner::Stripe, Scheme::Stripe, vec![STRIPE_SECRET]),
        (Partner::HiEvents, Scheme::StandardWebhooks, vec![HI_EVENTS_SECRET]),
    ]
}

/// A test config: partners above, short timeouts so outages surface quickly.
pub fn test_config(database_url: &str, data_dir: &std::path::Path) -> Config {
    let mut config = Config { data_dir: data_dir.to_owned(), ..Config::default() };
    config.database.url = Some(Secret::new(database_url));
    config.database.acquire_timeout_ms = 1_000;
    config.database.max_connections = 8;
    config.intake.store_timeout_ms = 3_000;
    config.api_keys.insert(TOKEN_KEY_NAME.into(), ApiKey::from_raw(TOKEN_KEY, Scope::Token));
    config.api_keys.insert(OTHER_TOKEN_KEY_NAME.into(), ApiKey::from_raw(OTHER_TOKEN_KEY, Scope::Token));
    config.api_keys.insert(ADMIN_KEY_NAME.into(), ApiKey::from_raw(ADMIN_KEY, Scope::Admin));
    for (partner, scheme, secrets) in test_partners() {
        config.partners.insert(
            partner,
            PartnerConfig {
                scheme: Some(scheme),
                secrets: secrets.into_iter().map(Secret::new).collect(),
                ..PartnerConfig::default()
            },
        );
    }
    config
}

/// A havend listener on 127.0.0.1:0 plus a direct connection to its database.
pub struct TestDaemon {
    pub daemon: Option<Daemon>,
    pub addr: SocketAddr,
    pub db: DatabaseConnection,
    pub client: Client<HttpConnector, Full<Bytes>>,
    /// Temporary directories that must live as long as the daemon (key files).
    pub keep: Vec<tempfile::TempDir>,

    _database: TestDatabase,
    _data_dir: tempfile::TempDir,
}

/// An HTTP answer: status, headers and parsed JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub json: Value,
}

impl TestDaemon {
    pub async fn start(backend: Backend) -> TestDaemon {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts with a config adjusted by `customize`.
    pub async fn start_with(backend: Backend, customize: impl FnOnce(&mut Config)) -> TestDaemon {
        let database = TestDatabase::create(backend).await;
        Self::start_on(database, database_url_of, customize).await
    }

    /// Starts on `database`, pointing the daemon at the URL `route` gives
    /// (a proxy in front of it, say), while the test keeps a direct connection.
    pub async fn start_on(
        database: TestDatabase,
        route: impl FnOnce(&TestDatabase) -> String,
        customize: impl FnOnce(&mut Config),
    ) -> TestDaemon {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&route(&database), data_dir.path());
        customize(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let daemon = Daemon::start(config, listener).await.expect("daemon starts");
        let addr = daemon.local_addr();
        let db = Database::connect(&database.url).await.unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        TestDaemon {
            daemon: Some(daemon),
            addr,
            db,
            client,
            keep: Vec::new(),
            _database: database,
            _data_dir: data_dir,
        }
    }

    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    /// POSTs `body` to `path` with `headers`.
    pub async fn post(&self, path: &str, headers: &[(String, String)], body: impl Into<Bytes>) -> Answer {
        let mut request = http::Request::post(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        self.send(request.body(Full::new(body.into())).unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(http::Request::get(format!("http://{}{path}", self.addr)).body(Full::new(Bytes::new())).unwrap())
            .await
    }

    pub async fn send(&self, request: http::Request<Full<Bytes>>) -> Answer {
        let response = self.client.request(request).await.expect("request reaches havend");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, headers, json }
    }

    /// Signs `body` as `partner` (with its first test secret) and POSTs it.
    pub async fn deliver(&self, partner: Partner, event: Option<&str>, body: &str) -> Answer {
        let headers = sign(partner, body, now());
        self.post(&webhook_path(partner, event), &headers, body.to_owned()).await
    }

    /// Rows in the inbox, in all.
    pub async fn stored(&self) -> u64 {
        entity::webhook_events::Entity::find().count(&self.db).await.unwrap()
    }

    /// The inbox row of one partner event, if stored.
    pub async fn event(&self, partner: Partner, partner_event_id: &str) -> Option<entity::webhook_events::Model> {
        entity::webhook_events::Entity::find()
            .filter(entity::webhook_events::Column::Partner.eq(partner.as_str()))
            .filter(entity::webhook_events::Column::PartnerEventId.eq(partner_event_id))
            .one(&self.db)
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.shutdown().await;
        }
    }
}

pub fn database_url_of(database: &TestDatabase) -> String {
    database.url.clone()
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn webhook_path(partner: Partner, event: Option<&str>) -> String {
    match event {
        Some(event) => format!("/webhooks/{partner}/{event}"),
        None => format!("/webhooks/{partner}"),
    }
}

/// The headers `partner` sends with `body`, signed with its first test secret at `timestamp`.
pub fn sign(partner: Partner, body: &str, timestamp: i64) -> Vec<(String, String)> {
    let (_, scheme, secrets) = test_partners().into_iter().find(|(p, _, _)| *p == partner).unwrap();
    sign_with(partner, scheme, secrets[0], body, timestamp)
}

pub fn sign_with(partner: Partner, scheme: Scheme, secret: &str, body: &str, timestamp: i64) -> Vec<(String, String)> {
    let mut headers = scheme
        .sign(partner, &Secret::new(secret), body.as_bytes(), timestamp, &format!("msg_{}", uuid::Uuid::new_v4().simple()))
        .unwrap();
    headers.push(("content-type".into(), "application/json".into()));
    headers
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A valid `booking-created` body for booking `id`.
pub fn booking_created(id: &str) -> String {
    format!(r#"{{"id":"{id}","guest_id":"guest_001","total_price":"330.50","nights":2}}"#)
}

/// Asserts the SPEC section 3 error shape and returns the error code.
pub fn assert_error_shape(answer: &Answer) -> String {
    let json = &answer.json;
    for field in ["error", "message", "user_message", "error_id", "request_id", "timestamp"] {
        assert!(json[field].is_string(), "error field {field} missing in {json}");
    }
    assert!(json["details"].is_object(), "details missing in {json}");
    assert_eq!(
        answer.headers.get("x-request-id").and_then(|v| v.to_str().ok()),
        json["request_id"].as_str(),
        "request id echoed"
    );
    json["error"].as_str().unwrap().to_owned()
}

/// Opens a raw TCP connection to `addr` and writes `bytes` (a request, or
/// the first part of one) — for what an HTTP client library will not send.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// The start of a POST to `path` that declares `length` body bytes and sends `sent` of them.
pub fn partial_post(path: &str, length: usize, sent: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: havend\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{sent}")
        .into_bytes()
}

/// Whether the server closes `stream` (EOF or reset) within `timeout`.
pub async fn closed_within(stream: &mut tokio::net::TcpStream, timeout: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    tokio::time::timeout(timeout, stream.read_to_end(&mut buf)).await.is_ok()
}

/// A request body fed through a channel, so a test decides when (and
/// whether) the rest of it arrives; sent chunked, without a Content-Length.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(hyper::body::Frame::data(bytes))))
    }
}

impl TestDaemon {
    /// A daemon without a chain whose one hot wallet is active (intents
    /// queue), polling every 100 ms, with `tweak` applied.
    pub async fn start_with_active_wallet(backend: Backend, tweak: impl FnOnce(&mut Config) + Send + 'static) -> TestDaemon {
        let key_dir = tempfile::tempdir().unwrap();
        let key_file = key_dir.path().join("master.key");
        std::fs::write(&key_file, chain::TEST_MASTER_KEY).unwrap();
        let mut daemon = TestDaemon::start_with(backend, move |config| {
            config.custody.master_key_file = Some(key_file);
            config.processor.poll_interval_ms = 100;
            tweak(config);
        })
        .await;
        daemon.keep.push(key_dir);
        let keys = havend::custody::MasterKeys::parse(chain::TEST_MASTER_KEY).unwrap();
        let hot = havend::custody::create_wallet(&daemon.db, &keys, havend::custody::HOT, "test").await.unwrap();
        entity::wallets::Entity::update_many()
            .col_expr(entity::wallets::Column::Status, sea_orm::sea_query::Expr::value(havend::custody::ACTIVE))
            .filter(entity::wallets::Column::Id.eq(hot.id))
            .exec(&daemon.db)
            .await
            .unwrap();
        daemon
    }

    /// Starts from a config directory, as `havend run --config DIR` does, with
    /// the config actor reloading it. `havend.toml` points at this test's
    /// database and data directory (plus `daemon_extra`); `partners.toml` is
    /// `partners`. Returns the daemon and the directory to edit.
    pub async fn start_with_config_dir(backend: Backend, daemon_extra: &str, partners: &str) -> (TestDaemon, std::path::PathBuf) {
        let database = TestDatabase::create(backend).await;
        let data_dir = tempfile::tempdir().unwrap();
        let config_dir = tempfile::tempdir().unwrap();
        let daemon_file = format!(
            "data_dir = {:?}\n{daemon_extra}\n[database]\nurl = {:?}\nmax_connections = 8\n",
            data_dir.path().display().to_string(),
            database.url,
        );
        std::fs::write(config_dir.path().join("havend.toml"), daemon_file).unwrap();
        std::fs::write(config_dir.path().join("partners.toml"), partners).unwrap();
        let source = havend::config::ConfigSource::dir(config_dir.path());
        let config = source.load().expect("the test config loads");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let daemon = Daemon::start_with_reload(config, source, listener).await.expect("daemon starts");
        let addr = daemon.local_addr();
        let db = Database::connect(&database.url).await.unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        let path = config_dir.path().to_owned();
        let daemon = TestDaemon {
            daemon: Some(daemon),
            addr,
            db,
            client,
            keep: vec![config_dir],
            _database: database,
            _data_dir: data_dir,
        };
        (daemon, path)
    }
}

/// Replaces `path` the way editors save: write a temporary file beside it, then rename it over.
pub fn replace_file(path: &std::path::Path, text: &str) {
    let temporary = path.with_extension("toml.tmp~");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// The stalls armed per failpoint: `fail::cfg` replaces a failpoint's whole
/// setting, and tests (the PostgreSQL and SQLite variants of one, say) run
/// at once in this process, so each stall is added to the others.
static STALLS: std::sync::LazyLock<std::sync::Mutex<std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>>> =
    std::sync::LazyLock::new(Default::default);

/// Arms `failpoint` (one read by `havend::hooks::stall_for`) to stall
/// `target` (a user, an idempotency key) for `ms`, keeping the stalls other
/// tests armed on it.
pub fn arm_stall(failpoint: &str, target: &str, ms: u64) {
    let mut stalls = STALLS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let armed = stalls.entry(failpoint.to_owned()).or_default();
    armed.insert(target.to_owned(), ms);
    apply_stalls(failpoint, armed);
}

/// Stops stalling `target` at `failpoint`; other targets stay armed.
pub fn disarm_stall(failpoint: &str, target: &str) {
    let mut stalls = STALLS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let armed = stalls.entry(failpoint.to_owned()).or_default();
    armed.remove(target);
    apply_stalls(failpoint, armed);
}

fn apply_stalls(failpoint: &str, armed: &std::collections::BTreeMap<String, u64>) {
    if armed.is_empty() {
        fail::remove(failpoint);
    } else {
        let targets: Vec<String> = armed.iter().map(|(target, ms)| format!("{target}={ms}")).collect();
        fail::cfg(failpoint, &format!("return({})", targets.join(","))).unwrap();
    }
}
