//! What of a URL may be shown. RPC providers put API keys in the path, the
//! query or the user info; Slack-style webhooks are themselves the
//! credential; database URLs carry a password. Every log line, error,
//! alert and config view that names a URL goes through here. A leaf: it
//! depends on nothing else in havend.

use alloy::transports::http::reqwest::Url;

pub use crate::signing::REDACTED;

/// `scheme://host[:port]` of `url`, or `None` when it does not parse or
/// names no host.
fn origin_of(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

/// A webhook URL reduced to `scheme://host[:port]`, the only part of it
/// that is logged or stored: the path and query are the credential.
pub fn url_origin(url: &str) -> String {
    Url::parse(url).ok().as_ref().and_then(origin_of).unwrap_or_else(|| REDACTED.to_owned())
}

/// An RPC URL reduced to its scheme, host and port, for `check-config`,
/// logs, errors and the dev banner; a `/[redacted]` suffix says that a user
/// info, path, query or fragment was left out. A URL that does not parse is
/// shown as [`REDACTED`] entirely.
pub fn rpc_url(url: &str) -> String {
    let Ok(parsed) = Url::parse(url) else { return REDACTED.to_owned() };
    let Some(mut shown) = origin_of(&parsed) else { return REDACTED.to_owned() };
    let hidden = !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.path() != "/"
        || parsed.query().is_some()
        || parsed.fragment().is_some();
    if hidden {
        shown.push('/');
        shown.push_str(REDACTED);
    }
    shown
}

/// `text` (an error message) with every `http(s)://` URL in it reduced as
/// [`rpc_url`] does: transport errors quote the endpoint.
pub fn urls_in(text: &str) -> String {
    text.split_inclusive(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .map(|piece| {
            let end = piece.trim_end_matches(|c: char| c.is_whitespace() || c == '(' || c == ')');
            if end.starts_with("http://") || end.starts_with("https://") {
                format!("{}{}", rpc_url(end), &piece[end.len()..])
            } else {
                piece.to_owned()
            }
        })
        .collect()
}

/// A database URL with the password of `scheme://user:password@host/…`
/// replaced by [`REDACTED`]; the rest (host, database) helps an operator.
pub fn password_in(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:{REDACTED}{}", &url[..scheme_end], &rest[..colon], &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_origin_drops_path_query_and_user_info() {
        for (url, origin) in [
            ("https://hooks.slack.com/services/T000/B000/XXXX", "https://hooks.slack.com"),
            ("http://127.0.0.1:8123/hook?token=abc", "http://127.0.0.1:8123"),
            ("https://user:pw@example.com/x", "https://example.com"),
            ("not a url", "[redacted]"),
        ] {
            assert_eq!(url_origin(url), origin, "{url}");
        }
    }

    #[test]
    fn rpc_url_shows_only_scheme_host_and_port() {
        for (url, shown) in [
            ("https://eth-mainnet.g.alchemy.com/v2/KEY123", "https://eth-mainnet.g.alchemy.com/[redacted]"),
            ("https://rpc.example.com/?apikey=KEY123", "https://rpc.example.com/[redacted]"),
            ("https://user:KEY123@node.example.com:8545", "https://node.example.com:8545/[redacted]"),
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
            ("http://[::1]:8545/", "http://[::1]:8545"),
            ("not a url KEY123", REDACTED),
        ] {
            assert_eq!(rpc_url(url), shown, "{url}");
        }
    }

    #[test]
    fn transport_errors_do_not_quote_the_endpoints_key() {
        let text = "error sending request for url (https://eth.example/v3/SECRETKEY?x=1) after 5s";
        let shown = urls_in(text);
        assert!(!shown.contains("SECRETKEY") && shown.contains("https://eth.example") && shown.ends_with(") after 5s"), "{shown}");
    }

    #[test]
    fn a_database_password_is_hidden_and_urls_without_one_are_left_alone() {
        assert_eq!(password_in("postgres://havend:s3cret@db:5432/havend"), "postgres://havend:[redacted]@db:5432/havend");
        assert_eq!(password_in("sqlite://./data/havend.db"), "sqlite://./data/havend.db");
        assert_eq!(password_in("postgres://u@h/db"), "postgres://u@h/db");
    }
}
