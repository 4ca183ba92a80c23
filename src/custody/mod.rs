//! Custody of private keys: generated from the OS CSPRNG, encrypted at rest
//! with XChaCha20-Poly1305 under a versioned master key, decrypted only into
//! the process that signs, and every decryption audit-logged HIGH.
//!
//! Status changes of hot wallets (rotate, activate, revoke) live in
//! `wallet::lifecycle`, which also moves their work.
//!
//! The ciphertext is bound to its wallet's address and key version (AEAD
//! associated data), so a key blob copied onto another row does not decrypt.

use std::collections::BTreeMap;
use std::path::Path;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use entity::wallets;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Environment variable holding the master key(s).
pub const MASTER_KEY_ENV: &str = "HAVEND_MASTER_KEY";
const NONCE_LEN: usize = 24;

/// Hot wallet status: created, or the target of a rotation; takes no users
/// and signs nothing until `wallet activate` found its roles and gas on chain.
pub const STANDBY: &str = "standby";
/// Wallet status: signs new work.
pub const ACTIVE: &str = "active";
/// Wallet status: replaced; finishes its signed work, takes no new work.
pub const ROTATED: &str = "rotated";
/// Wallet status: signs nothing more.
pub const REVOKED: &str = "revoked";
/// Wallet kind: one of havend's signing hot wallets.
pub const HOT: &str = "hot";
/// Wallet kind: a user's custodial wallet.
pub const USER: &str = "user";

/// Why a custody operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CustodyError {
    /// No master key was given.
    #[error("no master key: set {MASTER_KEY_ENV} or custody.master_key_file")]
    NoMasterKey,
    /// The master key text cannot be read.
    #[error("invalid master key: {0}")]
    InvalidMasterKey(String),
    /// The key cannot decrypt a wallet: wrong master key or tampered data.
    #[error("master key version {version} cannot decrypt wallet {address}: wrong master key or tampered key data")]
    WrongMasterKey {
        /// The wallet.
        address: String,
        /// The key version tried.
        version: i32,
    },
    /// The wallet's key version is not among the loaded master keys.
    #[error("wallet {address} is encrypted with master key version {version}, which is not loaded")]
    MissingKeyVersion {
        /// The wallet.
        address: String,
        /// Its key version.
        version: i32,
    },
    /// No such wallet.
    #[error("no wallet {0}")]
    NotFound(String),
    /// Reading or writing the master key file failed.
    #[error("master key file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// The master keys, by version; new encryptions use the highest.
#[derive(Clone)]
pub struct MasterKeys {
    keys: BTreeMap<i32, Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeys").field("versions", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl MasterKeys {
    /// Reads `hex` (version 1) or `version:hex,version:hex` (rotation: the
    /// highest version encrypts, all decrypt). Each key is 32 bytes of hex.
    pub fn parse(text: &str) -> Result<MasterKeys, CustodyError> {
        let mut keys = BTreeMap::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (version, hex_key) = match item.split_once(':') {
                Some((v, k)) => (v.trim().parse::<i32>().map_err(|_| CustodyError::InvalidMasterKey(format!("bad version {v:?}")))?, k.trim()),
                None => (1, item),
            };
            let bytes = Zeroizing::new(hex::decode(hex_key.trim_start_matches("0x")).map_err(|_| CustodyError::InvalidMasterKey("not hex".into()))?);
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| CustodyError::InvalidMasterKey("must be 32 bytes (64 hex digits)".into()))?;
            keys.insert(version, Zeroizing::new(key));
        }
        if keys.is_empty() {
            return Err(CustodyError::NoMasterKey);
        }
        Ok(MasterKeys { keys })
    }

    /// From `HAVEND_MASTER_KEY`, else from `file`. Never generated here.
    pub fn load(file: Option<&Path>) -> Result<MasterKeys, CustodyError> {
        if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
            return MasterKeys::parse(&text);
        }
        let Some(path) = file else { return Err(CustodyError::NoMasterKey) };
        let text = std::fs::read_to_string(path).map_err(|source| CustodyError::File { path: path.display().to_string(), source })?;
        MasterKeys::parse(&text)
    }

    /// Dev mode only: creates `path` with a fresh key (mode 0600) if it does
    /// not exist yet. An existing file is never replaced, since the wallets
    /// encrypted under it would be lost.
    pub fn create_dev_file(path: &Path) -> Result<(), CustodyError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let file_error = |source| CustodyError::File { path: path.display().to_string(), source };
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(mut file) => file.write_all(format!("1:{}\n", hex::encode(key.as_ref())).as_bytes()).map_err(file_error),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(error) => Err(file_error(error)),
        }
    }

    /// A random master key in the `version:hex` form (`havend wallet new-master-key`).
    pub fn generate_text(version: i32) -> String {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        format!("{version}:{}", hex::encode(key.as_ref()))
    }

    /// The version new encryptions use.
    pub fn current_version(&self) -> i32 {
        *self.keys.keys().next_back().expect("at least one key is loaded")
    }

    fn cipher(&self, version: i32, address: &str) -> Result<XChaCha20Poly1305, CustodyError> {
        let key = self.keys.get(&version).ok_or_else(|| CustodyError::MissingKeyVersion { address: address.into(), version })?;
        Ok(XChaCha20Poly1305::new(key.as_ref().into()))
    }

    /// Encrypts a private key for `address` under the current version.
    fn encrypt(&self, address: &str, secret: &[u8]) -> Result<(i32, Vec<u8>), CustodyError> {
        let version = self.current_version();
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(address, version);
        let ciphertext = self
            .cipher(version, address)?
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: secret, aad: &aad })
            .map_err(|_| CustodyError::InvalidMasterKey("encryption failed".into()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        Ok((version, blob))
    }

    /// Decrypts a wallet's key.
    fn decrypt(&self, wallet: &wallets::Model) -> Result<PrivateKeySigner, CustodyError> {
        let wrong = || CustodyError::WrongMasterKey { address: wallet.address.clone(), version: wallet.key_version };
        if wallet.encrypted_key.len() <= NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, ciphertext) = wallet.encrypted_key.split_at(NONCE_LEN);
        let aad = associated_data(&wallet.address, wallet.key_version);
        let secret = Zeroizing::new(
            self.cipher(wallet.key_version, &wallet.address)?
                .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
                .map_err(|_| wrong())?,
        );
        PrivateKeySigner::from_slice(&secret).map_err(|_| wrong())
    }
}

fn associated_data(address: &str, version: i32) -> Vec<u8> {
    format!("havend-wallet:{}:{version}", address.to_ascii_lowercase()).into_bytes()
}

/// A fresh key from the OS CSPRNG.
fn generate_signer() -> PrivateKeySigner {
    loop {
        let mut secret = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(secret.as_mut());
        // A 32-byte string is a valid secp256k1 scalar with overwhelming probability.
        if let Ok(signer) = PrivateKeySigner::from_slice(secret.as_ref()) {
            return signer;
        }
    }
}

/// Records a wallet operation in `wallet_audit_logs`.
pub async fn audit(
    db: &impl ConnectionTrait,
    wallet_id: Option<Uuid>,
    action: &str,
    severity: &str,
    actor: &str,
    details: serde_json::Value,
) -> Result<(), DbErr> {
    audit_row(wallet_id, action, severity, actor, &details).insert(db).await.map(|_| ())
}

/// The audit row [`audit`] writes.
fn audit_row(wallet_id: Option<Uuid>, action: &str, severity: &str, actor: &str, details: &serde_json::Value) -> entity::wallet_audit_logs::ActiveModel {
    entity::wallet_audit_logs::ActiveModel {
        id: Set(Uuid::now_v7()),
        wallet_id: Set(wallet_id),
        action: Set(action.into()),
        severity: Set(severity.into()),
        actor: Set(actor.into()),
        details: Set(details.to_string()),
        created_at: Set(chrono::Utc::now()),
    }
}

/// A wallet's audit log, oldest first.
pub async fn audit_log(db: &impl ConnectionTrait, wallet_id: Uuid) -> Result<Vec<entity::wallet_audit_logs::Model>, DbErr> {
    use entity::wallet_audit_logs::{Column, Entity};
    Entity::find().filter(Column::WalletId.eq(wallet_id)).order_by_asc(Column::CreatedAt).all(db).await
}

/// Creates a wallet with a new key: a hot wallet in `standby` (it takes no
/// users until activated), a user's wallet `active`.
pub async fn create_wallet(
    db: &impl ConnectionTrait,
    keys: &MasterKeys,
    kind: &str,
    actor: &str,
) -> Result<wallets::Model, CustodyError> {
    let new = new_wallet(keys, kind, actor)?;
    let wallet = new.wallet.insert(db).await?;
    new.audit.insert(db).await?;
    Ok(wallet)
}

/// A wallet made but not yet stored: its row (the key encrypted) and its
/// `create` audit row.
pub struct NewWallet {
    /// The wallet's id.
    pub id: Uuid,
    /// Its checksummed address.
    pub address: String,
    /// The `wallets` row.
    pub wallet: wallets::ActiveModel,
    /// The `wallet_audit_logs` row.
    pub audit: entity::wallet_audit_logs::ActiveModel,
}

/// Generates a key and encrypts it into the rows [`create_wallet`] stores
/// (the processor's batches store many at once).
pub fn new_wallet(keys: &MasterKeys, kind: &str, actor: &str) -> Result<NewWallet, CustodyError> {
    let signer = generate_signer();
    let address = signer.address().to_checksum(None);
    let secret = Zeroizing::new(signer.to_bytes().to_vec());
    let (version, blob) = keys.encrypt(&address, &secret)?;
    let now = chrono::Utc::now();
    let id = Uuid::now_v7();
    let wallet = wallets::ActiveModel {
        id: Set(id),
        address: Set(address.clone()),
        kind: Set(kind.into()),
        status: Set(if kind == HOT { STANDBY } else { ACTIVE }.into()),
        encrypted_key: Set(blob),
        key_version: Set(version),
        first_nonce: Set(0),
        next_nonce: Set(0),
        owner: Set(None),
        epoch: Set(0),
        rotated_to: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        heartbeat_at: Set(None),
        halted: Set(None),
    };
    let audit = audit_row(Some(id), "create", "LOW", actor, &json!({ "address": address, "kind": kind }));
    Ok(NewWallet { id, address, wallet, audit })
}

/// Finds a wallet by id or address.
pub async fn find(db: &impl ConnectionTrait, id_or_address: &str) -> Result<wallets::Model, CustodyError> {
    let by_id = Uuid::parse_str(id_or_address).ok();
    let query = match by_id {
        Some(id) => wallets::Entity::find_by_id(id),
        None => {
            let address: Address = id_or_address.parse().map_err(|_| CustodyError::NotFound(id_or_address.into()))?;
            wallets::Entity::find().filter(wallets::Column::Address.eq(address.to_checksum(None)))
        }
    };
    query.one(db).await?.ok_or_else(|| CustodyError::NotFound(id_or_address.into()))
}

/// Every hot wallet, oldest first.
pub async fn list_hot(db: &impl ConnectionTrait) -> Result<Vec<wallets::Model>, DbErr> {
    wallets::Entity::find()
        .filter(wallets::Column::Kind.eq(HOT))
        .order_by_asc(wallets::Column::CreatedAt)
        .all(db)
        .await
}

/// Decrypts a wallet's key for signing, audit-logged HIGH. The signer stays
/// in the caller's memory; it is never logged or returned over an API.
pub async fn unlock(
    db: &impl ConnectionTrait,
    keys: &MasterKeys,
    wallet: &wallets::Model,
    actor: &str,
    purpose: &str,
) -> Result<PrivateKeySigner, CustodyError> {
    let signer = keys.decrypt(wallet)?;
    audit(db, Some(wallet.id), "decrypt", "HIGH", actor, json!({ "purpose": purpose })).await?;
    Ok(signer)
}

/// Explicit, audited export of a private key (hex), for an operator.
pub async fn export(db: &impl ConnectionTrait, keys: &MasterKeys, wallet: &wallets::Model, actor: &str) -> Result<Zeroizing<String>, CustodyError> {
    let signer = keys.decrypt(wallet)?;
    audit(db, Some(wallet.id), "export", "HIGH", actor, json!({ "address": wallet.address })).await?;
    Ok(Zeroizing::new(format!("0x{}", hex::encode(signer.to_bytes()))))
}

/// Re-encrypts every wallet under the current master key version (after a
/// new version was added); returns how many changed. Each key it decrypts is
/// audit-logged HIGH like any other decryption (SPEC section 4).
pub async fn reencrypt_all(db: &DatabaseConnection, keys: &MasterKeys, actor: &str) -> Result<usize, CustodyError> {
    let txn = crate::db::begin_write(db).await?;
    let current = keys.current_version();
    let mut changed = 0;
    for wallet in wallets::Entity::find().filter(wallets::Column::KeyVersion.ne(current)).all(&txn).await? {
        let signer = unlock(&txn, keys, &wallet, actor, "reencrypt").await?;
        let secret = Zeroizing::new(signer.to_bytes().to_vec());
        let (version, blob) = keys.encrypt(&wallet.address, &secret)?;
        let mut row: wallets::ActiveModel = wallet.clone().into();
        row.encrypted_key = Set(blob);
        row.key_version = Set(version);
        row.updated_at = Set(chrono::Utc::now());
        row.update(&txn).await?;
        audit(&txn, Some(wallet.id), "reencrypt", "MEDIUM", actor, json!({ "from_version": wallet.key_version, "to_version": version })).await?;
        changed += 1;
    }
    txn.commit().await?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet_with(keys: &MasterKeys) -> (wallets::Model, PrivateKeySigner) {
        let signer = generate_signer();
        let address = signer.address().to_checksum(None);
        let (version, blob) = keys.encrypt(&address, signer.to_bytes().as_slice()).unwrap();
        let now = chrono::Utc::now();
        let model = wallets::Model {
            id: Uuid::nil(),
            address,
            kind: HOT.into(),
            status: ACTIVE.into(),
            encrypted_key: blob,
            key_version: version,
            first_nonce: 0,
            next_nonce: 0,
            owner: None,
            epoch: 0,
            rotated_to: None,
            created_at: now,
            updated_at: now,
            heartbeat_at: None,
            halted: None,
        };
        (model, signer)
    }

    #[test]
    fn encrypted_key_decrypts_only_with_the_right_master_key() {
        let keys = MasterKeys::parse(&"11".repeat(32)).unwrap();
        let (wallet, signer) = wallet_with(&keys);
        assert!(!wallet.encrypted_key.windows(32).any(|w| w == signer.to_bytes().as_slice()));
        assert_eq!(keys.decrypt(&wallet).unwrap().address(), signer.address());
        let wrong = MasterKeys::parse(&"22".repeat(32)).unwrap();
        assert!(matches!(wrong.decrypt(&wallet), Err(CustodyError::WrongMasterKey { .. })));
    }

    #[test]
    fn ciphertext_is_bound_to_its_address() {
        let keys = MasterKeys::parse(&"11".repeat(32)).unwrap();
        let (mut wallet, _) = wallet_with(&keys);
        wallet.address = Address::repeat_byte(9).to_checksum(None);
        assert!(keys.decrypt(&wallet).is_err());
    }

    #[test]
    fn rotated_master_keys_decrypt_old_versions_and_encrypt_with_the_newest() {
        let old = MasterKeys::parse(&format!("1:{}", "11".repeat(32))).unwrap();
        let (wallet, signer) = wallet_with(&old);
        let both = MasterKeys::parse(&format!("1:{},2:{}", "11".repeat(32), "33".repeat(32))).unwrap();
        assert_eq!(both.current_version(), 2);
        assert_eq!(both.decrypt(&wallet).unwrap().address(), signer.address());
        assert!(MasterKeys::parse("1:abcd").is_err());
        assert!(MasterKeys::parse("").is_err());
    }

    #[tokio::test]
    async fn reencrypt_audits_every_decryption_high() {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::default();
        config.database.url =
            Some(crate::config::Secret::new(format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display())));
        let db = crate::db::connect(&config).await.unwrap();
        crate::db::migrate_up(&db).await.unwrap();
        let v1 = format!("1:{}", "11".repeat(32));
        let old = MasterKeys::parse(&v1).unwrap();
        let mut ids = Vec::new();
        for _ in 0..2 {
            ids.push(create_wallet(&db, &old, HOT, "test").await.unwrap().id);
        }
        let both = MasterKeys::parse(&format!("{v1},2:{}", "22".repeat(32))).unwrap();
        assert_eq!(reencrypt_all(&db, &both, "operator").await.unwrap(), 2);
        for id in ids {
            let decryptions = entity::wallet_audit_logs::Entity::find()
                .filter(entity::wallet_audit_logs::Column::WalletId.eq(id))
                .filter(entity::wallet_audit_logs::Column::Action.eq("decrypt"))
                .all(&db)
                .await
                .unwrap();
            assert_eq!(decryptions.len(), 1, "wallet {id}: one decryption, audited");
            assert_eq!((decryptions[0].severity.as_str(), decryptions[0].actor.as_str()), ("HIGH", "operator"));
            assert!(decryptions[0].details.contains("reencrypt"), "{}", decryptions[0].details);
        }
    }

    #[test]
    fn debug_output_shows_versions_not_keys() {
        let keys = MasterKeys::parse(&"ab".repeat(32)).unwrap();
        assert!(!format!("{keys:?}").contains("abab"));
    }
}
