//! The state database: SQLite through `sqlx`, one file in the state dir.
//!
//! WAL journal with `synchronous=FULL`: a write the agent acknowledged has been fsynced, so a
//! `kill -9` or power cut right after the reply loses nothing. Migrations are forward-only and
//! embedded in the binary. Rows an attacker would like to edit (a code's last good check, its
//! status and expiry; the trusted-time mark) carry an HMAC-SHA256 keyed by the state MAC key from
//! the secrets store; a row whose MAC fails is reported and treated as tampered (no grace).

use std::path::Path;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::KeyInit as _;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use tessera_types::StateReason;
use tessera_types::state::FeatureState;

use crate::enforcement::{CodeStatus, LicenseFacts, Refusal};
use crate::leases::Lease;
use crate::trusted_time::TrustedTime;

/// A database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite refused or failed.
    #[error("state database {op} failed")]
    Sql {
        /// What was attempted.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("state database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

fn sql(op: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
    move |source| DbError::Sql { op, source }
}

/// An activated authorization code as stored (the code itself is in the secrets store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRow {
    /// Product.
    pub product_id: String,
    /// First characters and length of the code, for status.
    pub code_hint: String,
    /// Last status.
    pub status: CodeStatus,
    /// Validity end, as the marketplace last said.
    pub expires_at: Option<OffsetDateTime>,
    /// Seats bought.
    pub amount: Option<u32>,
    /// Activation time.
    pub activated_at: OffsetDateTime,
    /// Last successful online check.
    pub last_good_check: OffsetDateTime,
    /// Whether the last attempt failed for a transport/server reason.
    pub offline: bool,
    /// Last attempt, successful or not.
    pub last_attempt_at: Option<OffsetDateTime>,
    /// Last failure, safe to show.
    pub last_error: Option<String>,
    /// UTC day number of the last usage report.
    pub usage_day: Option<i64>,
    /// Whether the row's MAC verified when it was read (always true for rows built in memory).
    pub integrity_ok: bool,
}

/// An imported License as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseRow {
    /// Product.
    pub product_id: String,
    /// `file` or `string`.
    pub kind: String,
    /// The License text.
    pub content: String,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Import time.
    pub imported_at: OffsetDateTime,
    /// The verification verdict.
    pub facts: LicenseFacts,
}

/// A cached update manifest verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    /// Product.
    pub product_id: String,
    /// The verified manifest body.
    pub body: String,
    /// When fetched.
    pub fetched_at: OffsetDateTime,
    /// Until when the manifest says it is valid.
    pub valid_until: Option<OffsetDateTime>,
    /// Whether a newer version than the installed one exists.
    pub available: bool,
    /// The newest version.
    pub latest_version: Option<String>,
    /// Whether the upgrade is forced.
    pub forced: bool,
}

const SEALED_PREFIX: &str = "sealed:v1:";

/// The state database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: SqlitePool,
    mac_key: std::sync::Arc<Zeroizing<Vec<u8>>>,
}

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_ms(v: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn opt_ms(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(ms)
}

fn reason_str(r: StateReason) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn reason_from(s: &str) -> StateReason {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).unwrap_or(StateReason::Unknown)
}

impl Db {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    ///
    /// # Errors
    /// When the file cannot be opened or a migration fails.
    pub async fn open(path: &Path, mac_key: Zeroizing<Vec<u8>>) -> Result<Self, DbError> {
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(sql("configure"))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .min_connections(1)
            .connect_with(opts)
            .await
            .map_err(sql("open"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(DbError::Migrate)?;
        Ok(Self {
            pool,
            mac_key: std::sync::Arc::new(mac_key),
        })
    }

    /// Closes the pool (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// `PRAGMA integrity_check` says `ok`.
    ///
    /// # Errors
    /// When the check cannot run.
    pub async fn integrity_ok(&self) -> Result<bool, DbError> {
        let row = sqlx::query("PRAGMA integrity_check")
            .fetch_one(&self.pool)
            .await
            .map_err(sql("integrity check"))?;
        let verdict: String = row.try_get(0).map_err(sql("integrity check"))?;
        Ok(verdict == "ok")
    }

    fn content_cipher(&self) -> ChaCha20Poly1305 {
        let hk = hkdf::Hkdf::<Sha256>::new(None, &self.mac_key);
        let mut key = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's output limit, so expand cannot fail.
        let _ = hk.expand(b"tessera-agent/license-content/v1", key.as_mut());
        ChaCha20Poly1305::new(Key::from_slice(key.as_ref()))
    }

    /// License text as stored: sealed with a key derived from the state key (which lives in the
    /// secrets store), bound to its product, so the database never holds a License in clear.
    fn seal_content(&self, product_id: &str, content: &str) -> String {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .content_cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: content.as_bytes(),
                    aad: product_id.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", BASE64.encode(blob))
    }

    /// The stored text back; `None` when a sealed value does not open (another key, or edited).
    fn open_content(&self, product_id: &str, stored: &str) -> Option<String> {
        let Some(b64) = stored.strip_prefix(SEALED_PREFIX) else {
            // Rows written before sealing was introduced.
            return Some(stored.to_owned());
        };
        let blob = BASE64.decode(b64).ok()?;
        if blob.len() < 12 {
            return None;
        }
        let (nonce, ct) = blob.split_at(12);
        let plain = self
            .content_cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: product_id.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }

    fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        // HMAC accepts keys of any length, so new_from_slice cannot fail.
        let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key) else {
            return Vec::new();
        };
        for p in parts {
            m.update(&u64::try_from(p.len()).unwrap_or(u64::MAX).to_be_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }

    fn verify_mac(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key) else {
            return false;
        };
        for p in parts {
            m.update(&u64::try_from(p.len()).unwrap_or(u64::MAX).to_be_bytes());
            m.update(p);
        }
        m.verify_slice(tag).is_ok()
    }

    fn code_mac_parts(r: &CodeRow) -> Vec<Vec<u8>> {
        vec![
            b"code.v1".to_vec(),
            r.product_id.as_bytes().to_vec(),
            r.status.as_str().as_bytes().to_vec(),
            opt_ms(r.expires_at).unwrap_or(-1).to_be_bytes().to_vec(),
            ms(r.activated_at).to_be_bytes().to_vec(),
            ms(r.last_good_check).to_be_bytes().to_vec(),
            [u8::from(r.offline)].to_vec(),
        ]
    }

    /// Inserts or replaces the code row of `row.product_id`.
    ///
    /// # Errors
    /// When the write fails.
    pub async fn put_code(&self, row: &CodeRow) -> Result<(), DbError> {
        let parts = Self::code_mac_parts(row);
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let mac = self.mac(&refs);
        sqlx::query(
            "INSERT OR REPLACE INTO codes (product_id, code_hint, status, expires_at, amount, \
             activated_at, last_good_check, offline, last_attempt_at, last_error, usage_day, mac) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.product_id)
        .bind(&row.code_hint)
        .bind(row.status.as_str())
        .bind(opt_ms(row.expires_at))
        .bind(row.amount.map(i64::from))
        .bind(ms(row.activated_at))
        .bind(ms(row.last_good_check))
        .bind(i64::from(row.offline))
        .bind(opt_ms(row.last_attempt_at))
        .bind(&row.last_error)
        .bind(row.usage_day)
        .bind(mac)
        .execute(&self.pool)
        .await
        .map_err(sql("code write"))?;
        Ok(())
    }

    /// Every code row, with its MAC verdict.
    ///
    /// # Errors
    /// When the read fails.
    pub async fn codes(&self) -> Result<Vec<CodeRow>, DbError> {
        let rows = sqlx::query(
            "SELECT product_id, code_hint, status, expires_at, amount, activated_at, \
             last_good_check, offline, last_attempt_at, last_error, usage_day, mac FROM codes \
             ORDER BY product_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(sql("code read"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let get = |e| DbError::Sql {
                op: "code read",
                source: e,
            };
            let status: String = r.try_get("status").map_err(get)?;
            let amount: Option<i64> = r.try_get("amount").map_err(get)?;
            let mut row = CodeRow {
                product_id: r.try_get("product_id").map_err(get)?,
                code_hint: r.try_get("code_hint").map_err(get)?,
                status: CodeStatus::from_wire(&status),
                expires_at: r
                    .try_get::<Option<i64>, _>("expires_at")
                    .map_err(get)?
                    .map(from_ms),
                amount: amount.and_then(|a| u32::try_from(a).ok()),
                activated_at: from_ms(r.try_get("activated_at").map_err(get)?),
                last_good_check: from_ms(r.try_get("last_good_check").map_err(get)?),
                offline: r.try_get::<i64, _>("offline").map_err(get)? != 0,
                last_attempt_at: r
                    .try_get::<Option<i64>, _>("last_attempt_at")
                    .map_err(get)?
                    .map(from_ms),
                last_error: r.try_get("last_error").map_err(get)?,
                usage_day: r.try_get("usage_day").map_err(get)?,
                integrity_ok: true,
            };
            let tag: Vec<u8> = r.try_get("mac").map_err(get)?;
            let parts = Self::code_mac_parts(&row);
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            row.integrity_ok = self.verify_mac(&refs, &tag);
            if !row.integrity_ok {
                tracing::warn!(product_id = %row.product_id, "code row failed its integrity check");
            }
            out.push(row);
        }
        Ok(out)
    }

    /// Inserts or replaces the License of `row.product_id`.
    ///
    /// # Errors
    /// When the write fails.
    pub async fn put_license(&self, row: &LicenseRow) -> Result<(), DbError> {
        let (verdict, reason, message, nb, na, features, verified_at) = match &row.facts {
            LicenseFacts::Verified {
                not_before,
                not_after,
                features,
                verified_at,
            } => (
                "verified",
                None,
                None,
                Some(ms(*not_before)),
                opt_ms(*not_after),
                serde_json::to_string(features).unwrap_or_else(|_| "[]".to_owned()),
                ms(*verified_at),
            ),
            LicenseFacts::Refused(r) => (
                "refused",
                Some(reason_str(r.reason)),
                Some(r.message.clone()),
                None,
                None,
                "[]".to_owned(),
                ms(row.imported_at),
            ),
        };
        sqlx::query(
            "INSERT OR REPLACE INTO licenses (product_id, kind, content, sha256, imported_at, \
             verdict, reason, message, not_before, not_after, features, verified_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.product_id)
        .bind(&row.kind)
        .bind(self.seal_content(&row.product_id, &row.content))
        .bind(&row.sha256)
        .bind(ms(row.imported_at))
        .bind(verdict)
        .bind(reason)
        .bind(message)
        .bind(nb)
        .bind(na)
        .bind(features)
        .bind(verified_at)
        .execute(&self.pool)
        .await
        .map_err(sql("License write"))?;
        Ok(())
    }

    /// Every stored License.
    ///
    /// # Errors
    /// When the read fails.
    pub async fn licenses(&self) -> Result<Vec<LicenseRow>, DbError> {
        let rows = sqlx::query(
            "SELECT product_id, kind, content, sha256, imported_at, verdict, reason, message, \
             not_before, not_after, features, verified_at FROM licenses ORDER BY product_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(sql("License read"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let get = |e| DbError::Sql {
                op: "License read",
                source: e,
            };
            let verdict: String = r.try_get("verdict").map_err(get)?;
            let facts = if verdict == "verified" {
                let features: String = r.try_get("features").map_err(get)?;
                LicenseFacts::Verified {
                    not_before: from_ms(
                        r.try_get::<Option<i64>, _>("not_before")
                            .map_err(get)?
                            .unwrap_or(0),
                    ),
                    not_after: r
                        .try_get::<Option<i64>, _>("not_after")
                        .map_err(get)?
                        .map(from_ms),
                    features: serde_json::from_str::<Vec<FeatureState>>(&features)
                        .unwrap_or_default(),
                    verified_at: from_ms(r.try_get("verified_at").map_err(get)?),
                }
            } else {
                let reason: Option<String> = r.try_get("reason").map_err(get)?;
                LicenseFacts::Refused(Refusal {
                    reason: reason.as_deref().map_or(StateReason::Unknown, reason_from),
                    message: r
                        .try_get::<Option<String>, _>("message")
                        .map_err(get)?
                        .unwrap_or_default(),
                })
            };
            let product_id: String = r.try_get("product_id").map_err(get)?;
            let stored: String = r.try_get("content").map_err(get)?;
            let content = self.open_content(&product_id, &stored).unwrap_or_else(|| {
                tracing::warn!(product_id = %product_id, "a stored License does not open with this state key; it will be refused");
                String::new()
            });
            out.push(LicenseRow {
                product_id,
                kind: r.try_get("kind").map_err(get)?,
                content,
                sha256: r.try_get("sha256").map_err(get)?,
                imported_at: from_ms(r.try_get("imported_at").map_err(get)?),
                facts,
            });
        }
        Ok(out)
    }

    fn time_mac_parts(t: &TrustedTime) -> [Vec<u8>; 4] {
        [
            b"trusted_time.v1".to_vec(),
            ms(t.high_water).to_be_bytes().to_vec(),
            i64::try_from(t.offset.whole_milliseconds())
                .unwrap_or(0)
                .to_be_bytes()
                .to_vec(),
            opt_ms(t.tampered_at).unwrap_or(-1).to_be_bytes().to_vec(),
        ]
    }

    fn lease_mac_parts(l: &Lease) -> [Vec<u8>; 6] {
        [
            b"lease.v1".to_vec(),
            l.id.as_bytes().to_vec(),
            l.holder.as_bytes().to_vec(),
            l.product_id.as_bytes().to_vec(),
            l.feature.as_bytes().to_vec(),
            ms(l.expires_at).to_be_bytes().to_vec(),
        ]
    }

    /// Replaces the stored leases with `leases`, in one transaction.
    ///
    /// # Errors
    /// When the write fails (the previous set stays).
    pub async fn put_leases(&self, leases: &[Lease]) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await.map_err(sql("lease write"))?;
        sqlx::query("DELETE FROM leases")
            .execute(&mut *tx)
            .await
            .map_err(sql("lease write"))?;
        for l in leases {
            let parts = Self::lease_mac_parts(l);
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            sqlx::query(
                "INSERT INTO leases (lease_id, holder, product_id, feature, expires_at, mac) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&l.id)
            .bind(&l.holder)
            .bind(&l.product_id)
            .bind(&l.feature)
            .bind(ms(l.expires_at))
            .bind(self.mac(&refs))
            .execute(&mut *tx)
            .await
            .map_err(sql("lease write"))?;
        }
        tx.commit().await.map_err(sql("lease write"))
    }

    /// The stored leases whose MAC verifies (others are dropped: a lease grants a seat).
    ///
    /// # Errors
    /// When the read fails.
    pub async fn leases(&self) -> Result<Vec<Lease>, DbError> {
        let rows = sqlx::query(
            "SELECT lease_id, holder, product_id, feature, expires_at, mac FROM leases",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(sql("lease read"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let get = |e| DbError::Sql {
                op: "lease read",
                source: e,
            };
            let lease = Lease {
                id: r.try_get("lease_id").map_err(get)?,
                holder: r.try_get("holder").map_err(get)?,
                product_id: r.try_get("product_id").map_err(get)?,
                feature: r.try_get("feature").map_err(get)?,
                expires_at: from_ms(r.try_get("expires_at").map_err(get)?),
            };
            let tag: Vec<u8> = r.try_get("mac").map_err(get)?;
            let parts = Self::lease_mac_parts(&lease);
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            if self.verify_mac(&refs, &tag) {
                out.push(lease);
            } else {
                tracing::warn!(product_id = %lease.product_id, "a stored lease failed its integrity check; dropped");
            }
        }
        Ok(out)
    }

    /// Stores the trusted-time record.
    ///
    /// # Errors
    /// When the write fails.
    pub async fn put_trusted_time(&self, t: &TrustedTime) -> Result<(), DbError> {
        let parts = Self::time_mac_parts(t);
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        sqlx::query(
            "INSERT OR REPLACE INTO trusted_time (id, high_water, offset_ms, tampered_at, mac) \
             VALUES (1, ?, ?, ?, ?)",
        )
        .bind(ms(t.high_water))
        .bind(i64::try_from(t.offset.whole_milliseconds()).unwrap_or(0))
        .bind(opt_ms(t.tampered_at))
        .bind(self.mac(&refs))
        .execute(&self.pool)
        .await
        .map_err(sql("trusted time write"))?;
        Ok(())
    }

    /// The trusted-time record and whether its MAC verified; `None` on first start.
    ///
    /// # Errors
    /// When the read fails.
    pub async fn trusted_time(&self) -> Result<Option<(TrustedTime, bool)>, DbError> {
        let row = sqlx::query(
            "SELECT high_water, offset_ms, tampered_at, mac FROM trusted_time WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(sql("trusted time read"))?;
        let Some(r) = row else { return Ok(None) };
        let get = |e| DbError::Sql {
            op: "trusted time read",
            source: e,
        };
        let t = TrustedTime {
            high_water: from_ms(r.try_get("high_water").map_err(get)?),
            offset: Duration::milliseconds(r.try_get("offset_ms").map_err(get)?),
            tampered_at: r
                .try_get::<Option<i64>, _>("tampered_at")
                .map_err(get)?
                .map(from_ms),
        };
        let tag: Vec<u8> = r.try_get("mac").map_err(get)?;
        let parts = Self::time_mac_parts(&t);
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        Ok(Some((t, self.verify_mac(&refs, &tag))))
    }

    /// Caches a verified manifest verdict.
    ///
    /// # Errors
    /// When the write fails.
    pub async fn put_manifest(&self, m: &ManifestRow) -> Result<(), DbError> {
        sqlx::query(
            "INSERT OR REPLACE INTO manifests (product_id, body, fetched_at, valid_until, available, \
             latest_version, forced) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.product_id)
        .bind(&m.body)
        .bind(ms(m.fetched_at))
        .bind(opt_ms(m.valid_until))
        .bind(i64::from(m.available))
        .bind(&m.latest_version)
        .bind(i64::from(m.forced))
        .execute(&self.pool)
        .await
        .map_err(sql("manifest write"))?;
        Ok(())
    }

    /// The cached manifest verdict of `product_id`.
    ///
    /// # Errors
    /// When the read fails.
    pub async fn manifest(&self, product_id: &str) -> Result<Option<ManifestRow>, DbError> {
        let row = sqlx::query(
            "SELECT product_id, body, fetched_at, valid_until, available, latest_version, forced \
             FROM manifests WHERE product_id = ?",
        )
        .bind(product_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(sql("manifest read"))?;
        let Some(r) = row else { return Ok(None) };
        let get = |e| DbError::Sql {
            op: "manifest read",
            source: e,
        };
        Ok(Some(ManifestRow {
            product_id: r.try_get("product_id").map_err(get)?,
            body: r.try_get("body").map_err(get)?,
            fetched_at: from_ms(r.try_get("fetched_at").map_err(get)?),
            valid_until: r
                .try_get::<Option<i64>, _>("valid_until")
                .map_err(get)?
                .map(from_ms),
            available: r.try_get::<i64, _>("available").map_err(get)? != 0,
            latest_version: r.try_get("latest_version").map_err(get)?,
            forced: r.try_get::<i64, _>("forced").map_err(get)? != 0,
        }))
    }

    /// Records an upgrade answer (`source`: `app` for UpgradeNotify, `user` for the CLI/tray).
    ///
    /// # Errors
    /// When the write fails.
    pub async fn record_upgrade_answer(
        &self,
        product_id: &str,
        at: OffsetDateTime,
        source: &str,
        accept: bool,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO upgrade_answers (product_id, at, source, accept) VALUES (?, ?, ?, ?)",
        )
        .bind(product_id)
        .bind(ms(at))
        .bind(source)
        .bind(i64::from(accept))
        .execute(&self.pool)
        .await
        .map_err(sql("upgrade answer write"))?;
        Ok(())
    }

    /// The upgrade answers recorded for `product_id`, oldest first: (source, accept).
    ///
    /// # Errors
    /// When the read fails.
    pub async fn upgrade_answers(&self, product_id: &str) -> Result<Vec<(String, bool)>, DbError> {
        let rows = sqlx::query(
            "SELECT source, accept FROM upgrade_answers WHERE product_id = ? ORDER BY id",
        )
        .bind(product_id)
        .fetch_all(&self.pool)
        .await
        .map_err(sql("upgrade answer read"))?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    r.try_get("source").map_err(sql("upgrade answer read"))?,
                    r.try_get::<i64, _>("accept")
                        .map_err(sql("upgrade answer read"))?
                        != 0,
                ))
            })
            .collect()
    }

    /// Records an application's own License verification result.
    ///
    /// # Errors
    /// When the write fails.
    pub async fn record_verify_report(
        &self,
        product_id: &str,
        at: OffsetDateTime,
        ok: bool,
        message: &str,
    ) -> Result<(), DbError> {
        sqlx::query("INSERT INTO verify_reports (product_id, at, ok, message) VALUES (?, ?, ?, ?)")
            .bind(product_id)
            .bind(ms(at))
            .bind(i64::from(ok))
            .bind(message)
            .execute(&self.pool)
            .await
            .map_err(sql("verify report write"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).unwrap()
    }

    fn code(pid: &str) -> CodeRow {
        CodeRow {
            product_id: pid.into(),
            code_hint: "PL12…(20)".into(),
            status: CodeStatus::Alive,
            expires_at: Some(t(86_400)),
            amount: Some(2),
            activated_at: t(0),
            last_good_check: t(10),
            offline: false,
            last_attempt_at: Some(t(10)),
            last_error: None,
            usage_day: Some(20_833),
            integrity_ok: true,
        }
    }

    #[tokio::test]
    async fn rows_round_trip_and_a_forged_row_fails_its_mac() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        let db = Db::open(&path, Zeroizing::new(vec![7; 32])).await.unwrap();
        assert!(db.integrity_ok().await.unwrap());
        db.put_code(&code("p1")).await.unwrap();
        assert_eq!(db.codes().await.unwrap(), vec![code("p1")]);

        let tt = TrustedTime {
            high_water: t(99),
            offset: Duration::seconds(-600),
            tampered_at: None,
        };
        db.put_trusted_time(&tt).await.unwrap();
        assert_eq!(db.trusted_time().await.unwrap(), Some((tt, true)));

        // an attacker moves the last good check forward with sqlite3
        sqlx::query("UPDATE codes SET last_good_check = last_good_check + 864000000")
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query("UPDATE trusted_time SET high_water = 0")
            .execute(&db.pool)
            .await
            .unwrap();
        assert!(!db.codes().await.unwrap()[0].integrity_ok);
        assert!(!db.trusted_time().await.unwrap().unwrap().1);
        db.close().await;

        // another MAC key (secrets lost) cannot vouch for old rows either
        let db = Db::open(&path, Zeroizing::new(vec![8; 32])).await.unwrap();
        db.put_code(&code("p2")).await.unwrap();
        let rows = db.codes().await.unwrap();
        assert!(!rows[0].integrity_ok);
        assert!(rows[1].integrity_ok);
    }

    #[tokio::test]
    async fn leases_round_trip_and_forged_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("a.db"), Zeroizing::new(vec![5; 32]))
            .await
            .unwrap();
        let lease = |id: &str| Lease {
            id: id.into(),
            holder: "session-1".into(),
            product_id: "p".into(),
            feature: "solver".into(),
            expires_at: t(900),
        };
        db.put_leases(&[lease("a"), lease("b")]).await.unwrap();
        db.put_leases(&[lease("b"), lease("c")]).await.unwrap();
        let mut ids: Vec<String> = db
            .leases()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["b", "c"]);
        sqlx::query("UPDATE leases SET expires_at = expires_at + 3600000 WHERE lease_id = 'c'")
            .execute(&db.pool)
            .await
            .unwrap();
        let kept = db.leases().await.unwrap();
        assert_eq!(kept, vec![lease("b")]);
    }

    #[tokio::test]
    async fn license_content_is_sealed_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("a.db"), Zeroizing::new(vec![3; 32]))
            .await
            .unwrap();
        let row = LicenseRow {
            product_id: "p".into(),
            kind: "string".into(),
            content: "CANARY-LICENSE-BODY-0123456789".into(),
            sha256: "ab".into(),
            imported_at: t(0),
            facts: LicenseFacts::Refused(Refusal {
                reason: StateReason::SignatureInvalid,
                message: "m".into(),
            }),
        };
        db.put_license(&row).await.unwrap();
        assert_eq!(db.licenses().await.unwrap()[0].content, row.content);
        let stored: String = sqlx::query_scalar("SELECT content FROM licenses")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert!(stored.starts_with(SEALED_PREFIX), "{stored}");
        assert!(!stored.contains("CANARY"));
        // moved under another product id, it no longer opens
        assert_eq!(db.open_content("q", &stored), None);
        // another state key cannot open it
        db.close().await;
        let other = Db::open(&dir.path().join("a.db"), Zeroizing::new(vec![4; 32]))
            .await
            .unwrap();
        assert_eq!(other.licenses().await.unwrap()[0].content, "");
    }

    #[tokio::test]
    async fn licenses_manifests_and_answers_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("a.db"), Zeroizing::new(vec![1; 32]))
            .await
            .unwrap();
        let verified = LicenseRow {
            product_id: "p".into(),
            kind: "file".into(),
            content: "LIC".into(),
            sha256: "ab".into(),
            imported_at: t(0),
            facts: LicenseFacts::Verified {
                not_before: t(0),
                not_after: Some(t(100)),
                features: vec![FeatureState {
                    name: "solver".into(),
                    seats: Some(2),
                    in_use: 0,
                    version_ceiling: Some("3".into()),
                }],
                verified_at: t(1),
            },
        };
        let refused = LicenseRow {
            product_id: "q".into(),
            facts: LicenseFacts::Refused(Refusal {
                reason: StateReason::BindingMismatch,
                message: "bound elsewhere".into(),
            }),
            ..verified.clone()
        };
        db.put_license(&verified).await.unwrap();
        db.put_license(&refused).await.unwrap();
        assert_eq!(db.licenses().await.unwrap(), vec![verified, refused]);

        let m = ManifestRow {
            product_id: "p".into(),
            body: "{}".into(),
            fetched_at: t(5),
            valid_until: Some(t(500)),
            available: true,
            latest_version: Some("2.0".into()),
            forced: false,
        };
        db.put_manifest(&m).await.unwrap();
        assert_eq!(db.manifest("p").await.unwrap(), Some(m));
        assert_eq!(db.manifest("zz").await.unwrap(), None);
        db.record_upgrade_answer("p", t(6), "app", true)
            .await
            .unwrap();
        db.record_upgrade_answer("p", t(7), "user", false)
            .await
            .unwrap();
        assert_eq!(
            db.upgrade_answers("p").await.unwrap(),
            vec![("app".to_owned(), true), ("user".to_owned(), false)]
        );
        db.record_verify_report("p", t(8), false, "bad")
            .await
            .unwrap();
    }
}
