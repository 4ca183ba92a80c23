//! Cross-app sessions for the ticketing integration (SPEC section 3).
//!
//! An API client asks for a session for one of its users; the token (32
//! bytes from the OS CSPRNG, URL-safe base64) goes to the partner app, which
//! checks it with its shared secret. Only the token's SHA-256 is stored
//! ([`store`]), so the table alone grants nothing.
//!
//! This file holds the pure parts: making and hashing tokens, comparing the
//! shared secret, and the permission model.
//!
//! # Permission model
//! A session speaks for exactly one user and may only **read** that user's
//! own resources:
//! - `read` on `user:<ref>` when `<ref>` is the session's user;
//! - `read` on `wallet:<address>` when `<address>` is that user's custodial
//!   wallet (compared case-insensitively).
//!
//! Every other permission (`write`, `redeem`, …), another user's resource, or
//! a resource of an unknown kind is refused (`{"allowed": false}`).

pub mod store;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Random bytes in a session token (256 bits).
pub const TOKEN_BYTES: usize = 32;
/// The only permission a session grants.
pub const READ: &str = "read";

/// A new session token: [`TOKEN_BYTES`] from the OS CSPRNG, URL-safe base64
/// without padding (43 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored for a token: its SHA-256 in lowercase hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `presented` is one of the configured shared secrets (several are
/// allowed, for rotation). Both sides are hashed first so the comparison is
/// constant-time regardless of length, and every secret is compared.
pub fn shared_secret_matches(presented: &str, secrets: &[Secret]) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let mut matched = subtle::Choice::from(0);
    for secret in secrets {
        matched |= Sha256::digest(secret.expose().as_bytes()).ct_eq(&presented);
    }
    bool::from(matched)
}

/// Who a session speaks for, as the permission model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The session's user reference.
    pub user_ref: String,
    /// The user's custodial wallet address, when havend knows the user.
    pub address: Option<String>,
}

/// Whether a session for `subject` may do `permission` on `resource` (see
/// the module's permission model).
pub fn allowed(subject: &Subject, permission: &str, resource: &str) -> bool {
    if permission != READ {
        return false;
    }
    match resource.split_once(':') {
        Some(("user", reference)) => reference == subject.user_ref,
        Some(("wallet", address)) => subject.address.as_deref().is_some_and(|own| own.eq_ignore_ascii_case(address)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_url_safe_and_distinct() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{a}");
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), TOKEN_BYTES);
    }

    #[test]
    fn a_token_is_stored_as_its_sha256_only() {
        let token = new_token();
        let hash = hash_token(&token);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&token));
        assert_eq!(hash, hash_token(&token), "stable");
        assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn any_configured_shared_secret_matches_and_nothing_else() {
        let secrets = vec![Secret::new("current-secret-0123"), Secret::new("previous-secret-0123")];
        assert!(shared_secret_matches("current-secret-0123", &secrets));
        assert!(shared_secret_matches("previous-secret-0123", &secrets));
        assert!(!shared_secret_matches("current-secret-012", &secrets));
        assert!(!shared_secret_matches("", &secrets));
        assert!(!shared_secret_matches("anything", &[]));
    }

    #[test]
    fn a_session_reads_only_its_own_user_and_wallet() {
        let subject = Subject { user_ref: "aurora:guest_1".into(), address: Some("0xAbCd".into()) };
        assert!(allowed(&subject, "read", "user:aurora:guest_1"));
        assert!(allowed(&subject, "read", "wallet:0xabcd"));
        assert!(!allowed(&subject, "write", "user:aurora:guest_1"));
        assert!(!allowed(&subject, "READ", "user:aurora:guest_1"));
        assert!(!allowed(&subject, "read", "user:aurora:guest_2"));
        assert!(!allowed(&subject, "read", "wallet:0xother"));
        assert!(!allowed(&subject, "read", "transactions"));
        assert!(!allowed(&subject, "read", "aurora:guest_1"));
        let unknown = Subject { user_ref: "aurora:guest_1".into(), address: None };
        assert!(!allowed(&unknown, "read", "wallet:0xabcd"));
        assert!(!allowed(&unknown, "read", "wallet:"));
    }
}
