//! Outbound endpoints of the test's own, for alert delivery: an HTTP
//! receiver that answers a scripted sequence of statuses, and a minimal SMTP
//! server (EHLO/MAIL/RCPT/DATA/QUIT), in plain text or implicit TLS.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request a [`WebhookReceiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub json: Value,
}

/// An HTTP endpoint answering `script`'s statuses in turn, then 200.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    pub async fn start(script: Vec<u16>) -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, script) = (log.clone(), script.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                        let (log, script) = (log.clone(), script.clone());
                        async move {
                            let path = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            log.lock().unwrap().push(Received { path, json });
                            let status = script.lock().unwrap().next().unwrap_or(200);
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder().status(status).body(Full::new(Bytes::from_static(b"ok"))).unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        WebhookReceiver { addr, received, task }
    }

    /// A URL whose path and query stand for a webhook's secret token.
    pub fn url(&self, secret: &str) -> String {
        format!("http://{}/services/{secret}?token={secret}", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One message an [`SmtpServer`] accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
    /// `user:password` from AUTH PLAIN, if the client logged in.
    pub auth: Option<String>,
    /// Whether the session was encrypted when the mail was handed over.
    pub tls: bool,
}

/// How an [`SmtpServer`] secures its sessions.
#[derive(Clone)]
pub enum SmtpSecurity {
    Plain,
    /// TLS from the first byte (SMTPS).
    Implicit(tokio_rustls::TlsAcceptor),
    /// Plain, offering STARTTLS (RFC 3207).
    Starttls(tokio_rustls::TlsAcceptor),
}

/// A minimal SMTP server: enough of RFC 5321 for one client to hand over
/// mail, plus AUTH PLAIN (RFC 4954), which it accepts for any credentials,
/// and STARTTLS.
pub struct SmtpServer {
    pub addr: SocketAddr,
    pub mail: mpsc::UnboundedReceiver<Mail>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpServer {
    pub async fn start(security: SmtpSecurity) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mail) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, security) = (tx.clone(), security.clone());
                tokio::spawn(async move {
                    match security {
                        SmtpSecurity::Plain => {
                            let _ = session(stream, tx, None, true).await;
                        }
                        SmtpSecurity::Implicit(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = session(stream, tx, None, true).await;
                            }
                        }
                        SmtpSecurity::Starttls(acceptor) => {
                            if let Ok(Some(plain)) = session(stream, tx.clone(), Some(()), true).await
                                && let Ok(stream) = acceptor.accept(plain).await
                            {
                                // After STARTTLS the client starts over with EHLO, without a new greeting.
                                let _ = session(stream, tx, None, false).await;
                            }
                        }
                    }
                });
            }
        });
        SmtpServer { addr, mail, task }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one session; with `offer_starttls`, returns the plain stream
/// when the client asks for STARTTLS, for the caller to wrap in TLS.
async fn session<S: AsyncRead + AsyncWrite + Unpin + IsTls>(
    stream: S,
    tx: mpsc::UnboundedSender<Mail>,
    offer_starttls: Option<()>,
    greet: bool,
) -> std::io::Result<Option<S>> {
    let tls = stream.is_tls();
    let mut stream = BufReader::new(stream);
    if greet {
        stream.get_mut().write_all(b"220 test.invalid ESMTP havend-test\r\n").await?;
    }
    let (mut from, mut to, mut auth) = (String::new(), Vec::new(), None);
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let command = line.trim_end().to_owned();
        let verb = command.split([' ', ':']).next().unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" if offer_starttls.is_some() => b"250-test.invalid\r\n250 STARTTLS\r\n",
            "EHLO" => b"250-test.invalid\r\n250 AUTH PLAIN\r\n",
            "HELO" => b"250 test.invalid\r\n",
            "STARTTLS" if offer_starttls.is_some() => {
                stream.get_mut().write_all(b"220 Ready to start TLS\r\n").await?;
                return Ok(Some(stream.into_inner()));
            }
            "AUTH" => {
                use base64::Engine;
                let initial = command.split(' ').nth(2).unwrap_or_default();
                let decoded = base64::engine::general_purpose::STANDARD.decode(initial).unwrap_or_default();
                let parts: Vec<_> = decoded.split(|b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
                auth = parts.get(1..3).map(|p| p.join(":"));
                b"235 Authentication succeeded\r\n"
            }
            "MAIL" => {
                from = command[10..].trim().trim_matches(['<', '>']).to_owned();
                b"250 OK\r\n"
            }
            "RCPT" => {
                to.push(command[8..].trim().trim_matches(['<', '>']).to_owned());
                b"250 OK\r\n"
            }
            "DATA" => {
                stream.get_mut().write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if stream.read_line(&mut line).await? == 0 {
                        return Ok(None);
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    // Dot-stuffing (RFC 5321 section 4.5.2).
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let mail = Mail { from: std::mem::take(&mut from), to: std::mem::take(&mut to), data, auth: auth.clone(), tls };
                let _ = tx.send(mail);
                b"250 OK queued\r\n"
            }
            "RSET" | "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                stream.get_mut().write_all(b"221 Bye\r\n").await?;
                stream.get_mut().shutdown().await?;
                return Ok(None);
            }
            _ => b"502 Command not implemented\r\n",
        };
        stream.get_mut().write_all(reply).await?;
    }
}

/// Whether a session's stream is encrypted.
trait IsTls {
    fn is_tls(&self) -> bool;
}

impl IsTls for tokio::net::TcpStream {
    fn is_tls(&self) -> bool {
        false
    }
}

impl IsTls for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn is_tls(&self) -> bool {
        true
    }
}

/// A self-signed certificate for 127.0.0.1: the server's TLS acceptor and
/// the PEM to trust (`ca_file`).
pub fn self_signed_tls() -> (tokio_rustls::TlsAcceptor, String) {
    use tokio_rustls::rustls;
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), pem)
}
