//! Load generator: sends signed webhooks (or token API mints) to a running
//! havend and prints acknowledged requests/s and latency percentiles.
//!
//! Targets: `webhook` (signed Aurora bookings, each new), `mint` (token API
//! mints, each with a fresh Idempotency-Key) and `mint-replay` (mints cycling
//! over `--keys` Idempotency-Keys: after the first round every request is a
//! replay of a stored response).
//!
//! Closed loop (`--concurrency C`): C connections send back to back.
//! Open loop (`--rate R`): requests start on a fixed schedule and latency is
//! measured from the scheduled start, so a stall is not hidden by the
//! generator slowing down with the server (coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use havend::config::Secret;
use havend::webhooks::{Partner, Scheme};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Mutex;

/// What the benchmark sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    /// Signed Aurora `booking-created` webhooks.
    Webhook,
    /// `POST /api/v1/token/mint`, a fresh Idempotency-Key each.
    Mint,
    /// `POST /api/v1/token/mint` over a fixed set of Idempotency-Keys (replays).
    MintReplay,
}

/// Sends signed Aurora `booking-created` webhooks or token API mints to a running havend.
#[derive(Debug, Parser)]
#[command(name = "havend-bench")]
struct Args {
    /// havend's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// What to send.
    #[arg(long, value_enum, default_value = "webhook")]
    target: Target,
    /// Aurora's webhook secret as configured in havend (target `webhook`).
    #[arg(long, env = "HAVEND_AURORA_SECRET")]
    secret: Option<String>,
    /// A token-scope API key (targets `mint` and `mint-replay`).
    #[arg(long, env = "HAVEND_API_KEY")]
    api_key: Option<String>,
    /// Idempotency-Keys the `mint-replay` target cycles over.
    #[arg(long, default_value_t = 256)]
    keys: u64,
    /// Connections sending back to back (closed loop).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Requests per second on a fixed schedule (open loop) instead.
    #[arg(long)]
    rate: Option<u64>,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
}

struct Shared {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    target: Target,
    secret: Secret,
    api_key: String,
    keys: u64,
    run: String,
    counter: AtomicU64,
    histogram: Mutex<Histogram<u64>>,
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Shared {
    /// Sends one new event; records its latency from `started` when `measure`.
    async fn send_one(&self, started: Instant, measure: bool) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let request = match self.target {
            Target::Webhook => self.webhook(n),
            Target::Mint => self.mint(n),
            Target::MintReplay => self.mint(n % self.keys),
        };
        let ok = match self.client.request(request).await {
            Ok(response) => {
                let status = response.status();
                let _ = response.into_body().collect().await;
                status.is_success()
            }
            Err(_) => false,
        };
        if !measure {
            return;
        }
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
            let micros = started.elapsed().as_micros() as u64;
            let _ = self.histogram.lock().await.record(micros.max(1));
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A mint of 1 HNV to one of 1,000 users under Idempotency-Key number `key`.
    fn mint(&self, key: u64) -> http::Request<Full<Bytes>> {
        let body = format!(r#"{{"user":"bench:user_{}","amount":"1","reason":"benchmark"}}"#, key % 1000);
        http::Request::post(&self.url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.api_key))
            .header("idempotency-key", format!("bench-{}-{key}", self.run))
            .body(Full::new(Bytes::from(body)))
            .expect("request is well-formed")
    }

    /// A new signed booking.
    fn webhook(&self, n: u64) -> http::Request<Full<Bytes>> {
        let body = format!(
            r#"{{"id":"bench_{}_{n}","guest_id":"guest_{}","total_price":"199.90","nights":2}}"#,
            self.run,
            n % 1000
        );
        let timestamp = chrono::Utc::now().timestamp();
        let headers = Scheme::HavenHmac
            .sign(Partner::Aurora, &self.secret, body.as_bytes(), timestamp, "")
            .expect("haven-hmac accepts any secret");
        let mut request = http::Request::post(&self.url).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.body(Full::new(Bytes::from(body))).expect("request is well-formed")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency.max(256))
        .build(connector);
    let base = args.url.trim_end_matches('/');
    let (url, secret, api_key) = match args.target {
        Target::Webhook => (format!("{base}/webhooks/aurora/booking-created"), args.secret.clone().context("--secret (or HAVEND_AURORA_SECRET) is needed for webhooks")?, String::new()),
        Target::Mint | Target::MintReplay => {
            (format!("{base}/api/v1/token/mint"), String::new(), args.api_key.clone().context("--api-key (or HAVEND_API_KEY) is needed for mints")?)
        }
    };
    let shared = Arc::new(Shared {
        client,
        url,
        target: args.target,
        secret: Secret::new(secret),
        api_key,
        keys: args.keys.max(1),
        run: uuid::Uuid::new_v4().simple().to_string(),
        counter: AtomicU64::new(0),
        histogram: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).context("histogram bounds")?),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });

    let warmup_end = Instant::now() + Duration::from_secs(args.warmup);
    let end = warmup_end + Duration::from_secs(args.seconds);
    match args.rate {
        None => closed_loop(&shared, args.concurrency, warmup_end, end).await,
        Some(rate) => open_loop(&shared, rate, warmup_end, end).await,
    }

    let histogram = shared.histogram.lock().await;
    let ok = shared.ok.load(Ordering::Relaxed);
    let failed = shared.failed.load(Ordering::Relaxed);
    let mode = match args.rate {
        None => format!("closed loop, concurrency {}", args.concurrency),
        Some(rate) => format!("open loop, {rate} req/s offered"),
    };
    println!("target:        {:?}", args.target);
    println!("mode:          {mode}");
    println!("acknowledged:  {ok} in {} s ({failed} failed)", args.seconds);
    println!("events/s:      {:.0}", ok as f64 / args.seconds as f64);
    for (label, quantile) in [("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999)] {
        println!("{label:<14} {:.2} ms", histogram.value_at_quantile(quantile) as f64 / 1000.0);
    }
    println!("max:           {:.2} ms", histogram.max() as f64 / 1000.0);
    Ok(())
}

async fn closed_loop(shared: &Arc<Shared>, concurrency: usize, warmup_end: Instant, end: Instant) {
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let shared = shared.clone();
            tokio::spawn(async move {
                while Instant::now() < end {
                    let started = Instant::now();
                    shared.send_one(started, started >= warmup_end).await;
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
}

async fn open_loop(shared: &Arc<Shared>, rate: u64, warmup_end: Instant, end: Instant) {
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let mut next = Instant::now();
    let mut in_flight = Vec::new();
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        let scheduled = next;
        let shared = shared.clone();
        in_flight.push(tokio::spawn(async move { shared.send_one(scheduled, scheduled >= warmup_end).await }));
        next += interval;
        in_flight.retain(|task: &tokio::task::JoinHandle<()>| !task.is_finished());
    }
    for task in in_flight {
        let _ = task.await;
    }
}
