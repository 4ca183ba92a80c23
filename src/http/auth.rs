//! API key authentication for `/api/*`: `Authorization: Bearer <key>` or
//! `X-API-Key: <key>`, matched by SHA-256 against the configured keys in
//! constant time (every configured key is compared, whichever matches).

use std::collections::BTreeMap;

use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::config::api::{ApiKey, Scope, hash_key};

/// The header some clients use instead of `Authorization`.
pub const X_API_KEY: &str = "x-api-key";

/// Who is calling: the configured key's name (the scope of idempotency keys,
/// sessions and the audit log) and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's name in the config.
    pub key_name: String,
    /// Its scope.
    pub scope: Scope,
}

/// The caller behind the request's key, if it may call an endpoint needing
/// `needed`: 401 without a key or with an unknown one, 403 with a key of
/// too small a scope.
pub fn authenticate(headers: &HeaderMap, keys: &BTreeMap<String, ApiKey>, needed: Scope) -> Result<Caller, ApiError> {
    let presented = presented_key(headers).ok_or_else(|| ApiError::unauthenticated("an API key is required (Authorization: Bearer <key> or X-API-Key)"))?;
    let digest = hash_key(presented);
    let mut found: Option<(&String, Scope)> = None;
    for (name, key) in keys {
        let Some(stored) = key.digest() else { continue };
        if bool::from(stored.ct_eq(&digest)) {
            found = Some((name, key.scope));
        }
    }
    let (name, scope) = found.ok_or_else(|| ApiError::unauthenticated("unknown API key"))?;
    if !scope.allows(needed) {
        return Err(ApiError::forbidden(format!("the API key {name:?} has scope {}; this endpoint needs {}", scope.as_str(), needed.as_str())));
    }
    Ok(Caller { key_name: name.clone(), scope })
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    bearer.or_else(|| headers.get(X_API_KEY).and_then(|v| v.to_str().ok()).map(str::trim)).filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> BTreeMap<String, ApiKey> {
        BTreeMap::from([
            ("backend".to_owned(), ApiKey::from_raw("tok_secret", Scope::Token)),
            ("ops".to_owned(), ApiKey::from_raw("adm_secret", Scope::Admin)),
        ])
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn bearer_and_x_api_key_both_identify_the_key() {
        let caller = authenticate(&headers("authorization", "Bearer tok_secret"), &keys(), Scope::Token).unwrap();
        assert_eq!(caller, Caller { key_name: "backend".into(), scope: Scope::Token });
        let caller = authenticate(&headers(X_API_KEY, "adm_secret"), &keys(), Scope::Admin).unwrap();
        assert_eq!(caller.key_name, "ops");
    }

    #[test]
    fn missing_or_unknown_keys_are_401_and_a_small_scope_is_403() {
        assert_eq!(authenticate(&HeaderMap::new(), &keys(), Scope::Token).unwrap_err().status, 401);
        assert_eq!(authenticate(&headers("authorization", "Bearer nope"), &keys(), Scope::Token).unwrap_err().status, 401);
        assert_eq!(authenticate(&headers("authorization", "Basic dG9rX3NlY3JldA=="), &keys(), Scope::Token).unwrap_err().status, 401);
        assert_eq!(authenticate(&headers("authorization", "Bearer tok_secret"), &keys(), Scope::Admin).unwrap_err().status, 403);
    }
}
