//! A JSON-RPC proxy of the test's own in front of anvil: it records every
//! request havend makes (to count calls of one kind) and, like public RPC
//! providers, can refuse `eth_getLogs` over more than a few blocks.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// Forwards HTTP JSON-RPC from `url` to an upstream node.
pub struct RpcProxy {
    pub url: String,
    requests: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RpcProxy {
    /// Starts on 127.0.0.1:0 in front of `upstream`; with `max_log_range`,
    /// an `eth_getLogs` over more blocks than that (or up to `latest`) gets
    /// the error a public provider gives.
    pub async fn start(upstream: &str, max_log_range: Option<u64>) -> RpcProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
        let upstream: http::Uri = upstream.parse().unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let record = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (record, client, upstream) = (record.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                        let (record, client, upstream) = (record.clone(), client.clone(), upstream.clone());
                        async move {
                            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            record.lock().unwrap().push(parsed.clone());
                            if let Some(refusal) = refuse(&parsed, max_log_range) {
                                return Ok::<_, Infallible>(json_answer(refusal));
                            }
                            let forward = http::Request::post(upstream).header("content-type", "application/json").body(Full::new(body)).unwrap();
                            let answer = match client.request(forward).await {
                                Ok(answer) => answer.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default(),
                                Err(_) => return Ok(http::Response::builder().status(502).body(Full::new(Bytes::new())).unwrap()),
                            };
                            Ok(http::Response::builder().header("content-type", "application/json").body(Full::new(answer)).unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                });
            }
        });
        RpcProxy { url: format!("http://{addr}"), requests, task }
    }

    /// Requests seen so far (batches count once per call in them) that `matches`.
    pub fn count(&self, matches: impl Fn(&Value) -> bool) -> usize {
        self.requests.lock().unwrap().iter().flat_map(|r| r.as_array().cloned().unwrap_or_else(|| vec![r.clone()])).filter(|call| matches(call)).count()
    }
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// True for a call of `method`.
pub fn is_method(call: &Value, method: &str) -> bool {
    call["method"] == method
}

/// True for `eth_call` of `totalSupply()` at the head (what `/health` asks).
pub fn is_total_supply_call(call: &Value) -> bool {
    is_method(call, "eth_call")
        && call["params"][0]["input"].as_str().or(call["params"][0]["data"].as_str()).is_some_and(|input| input.starts_with("0x18160ddd"))
}

fn block_number(value: &Value) -> Option<u64> {
    match value.as_str()? {
        "earliest" => Some(0),
        hex => u64::from_str_radix(hex.strip_prefix("0x")?, 16).ok(),
    }
}

/// The provider's refusal of a too-wide `eth_getLogs`, if this is one.
fn refuse(call: &Value, max_log_range: Option<u64>) -> Option<Value> {
    let max = max_log_range?;
    if !is_method(call, "eth_getLogs") {
        return None;
    }
    let filter = &call["params"][0];
    let range = match (block_number(&filter["fromBlock"]), block_number(&filter["toBlock"])) {
        (Some(from), Some(to)) => to.saturating_sub(from) + 1,
        _ => u64::MAX,
    };
    (range > max).then(|| json!({ "jsonrpc": "2.0", "id": call["id"], "error": { "code": -32005, "message": format!("query exceeds max block range {max}") } }))
}

fn json_answer(value: Value) -> http::Response<Full<Bytes>> {
    http::Response::builder().header("content-type", "application/json").body(Full::new(Bytes::from(value.to_string()))).unwrap()
}
