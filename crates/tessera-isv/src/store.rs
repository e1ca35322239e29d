//! Durable state: instances, issued Licenses, the job queue, the callback nonce cache and the
//! Model A code table.
//!
//! One set of SQL serves both backends through `sqlx::Any`: the statements use only what SQLite
//! (≥ 3.35) and PostgreSQL share (`$n` placeholders, `ON CONFLICT … DO UPDATE … WHERE`, times as
//! `BIGINT` Unix milliseconds). Only the DDL differs, so each backend has its own forward-only
//! migration directory with the same numbering.

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names a backend this build does not support.
    #[error("unsupported database URL scheme (use sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// Connecting to the database failed.
    #[error("cannot open the database")]
    Connect(#[source] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("cannot migrate the database schema")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    /// A stored row holds a value this build cannot read.
    #[error("corrupt row in {table}: {what}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        what: String,
    },
}

/// Which database backend a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file (WAL mode).
    Sqlite,
    /// A PostgreSQL server shared by several ISV instances.
    Postgres,
}

/// Instance lifecycle as KooGallery drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStatus {
    /// Normal use.
    Active,
    /// `updateInstanceStatus FREEZE`: no new Licenses until UNFREEZE.
    Frozen,
    /// `releaseInstance`: gone for good.
    Released,
}

impl InstanceStatus {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Frozen => "FROZEN",
            Self::Released => "RELEASED",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "FROZEN" => Some(Self::Frozen),
            "RELEASED" => Some(Self::Released),
            _ => None,
        }
    }
}

/// A Model B instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Our id, returned to newInstance.
    pub instance_id: String,
    /// The order that created it.
    pub order_id: String,
    /// Its order line.
    pub order_line_id: String,
    /// `businessId` of the first newInstance call.
    pub business_id: String,
    /// `testFlag == "1"`.
    pub test: bool,
    /// Lifecycle state.
    pub status: InstanceStatus,
    /// KooGallery productId, once the order has been queried.
    pub product_id: Option<String>,
    /// SKU code, once the order has been queried.
    pub sku_code: Option<String>,
    /// `chargingMode` of the order line.
    pub charging_mode: Option<String>,
    /// `orderType` of the order (`NEW`, `TRIAL`, …).
    pub order_type: Option<String>,
    /// `linearValue`: how many distinct devices may hold a License.
    pub linear_value: Option<i64>,
    /// Order creation time.
    pub order_created_ms: Option<i64>,
    /// Current expiry (from the order, then from refreshInstance).
    pub expire_ms: Option<i64>,
    /// When the order details were fetched; `None` while the query job is pending.
    pub order_fetched_ms: Option<i64>,
    /// Order of the latest refreshInstance.
    pub last_order_id: Option<String>,
    /// `scene` of the latest refreshInstance.
    pub last_scene: Option<String>,
    /// Creation time.
    pub created_ms: i64,
    /// Last change.
    pub updated_ms: i64,
}

/// Order details fetched by the order-query job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDetails {
    /// KooGallery productId.
    pub product_id: Option<String>,
    /// SKU code.
    pub sku_code: Option<String>,
    /// Charging mode.
    pub charging_mode: Option<String>,
    /// Order type.
    pub order_type: Option<String>,
    /// Quantity attribute.
    pub linear_value: Option<i64>,
    /// Order creation time.
    pub order_created_ms: Option<i64>,
    /// Order-line expiry.
    pub expire_ms: Option<i64>,
}

/// An issued License, keyed by (eventId, fingerprint hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedLicense {
    /// The getLicenseAsync `eventId`.
    pub event_id: String,
    /// Hex SHA-256 of the fingerprint string.
    pub fingerprint_hash: String,
    /// The fingerprint as received.
    pub fingerprint: String,
    /// The instance it was issued for.
    pub instance_id: String,
    /// The License's own id.
    pub license_id: String,
    /// `FILE` or `CHARACTERS`.
    pub delivery: String,
    /// The exact bytes uploaded (and re-uploaded on a repeat).
    pub body: Vec<u8>,
    /// Hex SHA-256 of `body`.
    pub sha256: String,
    /// Validity start.
    pub not_before_ms: i64,
    /// Validity end; `None` is perpetual.
    pub not_after_ms: Option<i64>,
    /// When it was signed.
    pub issued_ms: i64,
    /// When MKT acknowledged the upload.
    pub uploaded_ms: Option<i64>,
}

/// Job state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting to run (possibly leased by a worker right now).
    Pending,
    /// Finished.
    Done,
    /// Gave up after the attempt cap; needs an operator.
    Dead,
}

impl JobState {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "done" => Some(Self::Done),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// A queued job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Row id.
    pub id: i64,
    /// What to do (see `jobs::JobKind`).
    pub kind: String,
    /// Uniqueness key: one job per logical task.
    pub dedupe_key: String,
    /// JSON arguments.
    pub payload: String,
    /// State.
    pub state: JobState,
    /// Attempts started so far (claimed count).
    pub attempts: i64,
    /// Earliest next run.
    pub run_at_ms: i64,
    /// Worker currently holding the lease.
    pub lease_owner: Option<String>,
    /// Lease expiry.
    pub lease_until_ms: Option<i64>,
    /// Last failure.
    pub last_error: Option<String>,
}

/// A Model A authorization code as the callbacks left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseCode {
    /// The code.
    pub license_code: String,
    /// `ALIVE`, `FROZEN` or `RELEASED`.
    pub status: String,
    /// Expiry from refreshLicenseCode.
    pub expire_ms: Option<i64>,
    /// Latest renewal order.
    pub order_id: Option<String>,
    /// Latest `scene`.
    pub last_scene: Option<String>,
    /// Last change.
    pub updated_ms: i64,
}

/// A renewal as refreshInstance / refreshLicenseCode carry it.
#[derive(Debug, Clone, Copy)]
pub struct RenewalRecord<'a> {
    /// The new expiry.
    pub expire_ms: i64,
    /// The renewal (or renewal-cancellation) order.
    pub order_id: &'a str,
    /// Its line.
    pub order_line_id: &'a str,
    /// `scene`.
    pub scene: &'a str,
    /// A new productId, when the period type changed.
    pub product_id: Option<&'a str>,
}

/// What [`Store::issue_once`] needs besides the License itself.
#[derive(Debug, Clone, Copy)]
pub struct IssueRequest<'a> {
    /// The instance.
    pub instance_id: &'a str,
    /// The getLicenseAsync `eventId`.
    pub event_id: &'a str,
    /// Hex SHA-256 of the fingerprint.
    pub fingerprint_hash: &'a str,
    /// Distinct fingerprints the instance may hold Licenses for.
    pub quota: i64,
    /// Kind of the upload job.
    pub job_kind: &'a str,
    /// Dedupe key of the upload job.
    pub job_key: &'a str,
    /// Payload of the upload job.
    pub job_payload: &'a str,
    /// Current time.
    pub now_ms: i64,
}

/// The result of [`Store::issue_once`].
#[derive(Debug)]
pub enum IssueOutcome<E> {
    /// A License was already stored for the key; the same bytes are uploaded again.
    Existing(IssuedLicense),
    /// A new License was signed and stored with its upload job.
    Issued(IssuedLicense),
    /// The instance's quota of distinct fingerprints is used up.
    QuotaExhausted {
        /// Fingerprints already licensed.
        used: i64,
    },
    /// The instance does not exist.
    NoInstance,
    /// Signing failed; nothing was stored.
    SignFailed(E),
}

/// Counts per job state, for status output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Pending jobs.
    pub pending: i64,
    /// Finished jobs.
    pub done: i64,
    /// Dead-lettered jobs.
    pub dead: i64,
}

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

const INSTANCE_COLUMNS: &str = "instance_id, order_id, order_line_id, business_id, test_flag, status, \
     product_id, sku_code, charging_mode, order_type, linear_value, order_created_ms, expire_ms, \
     order_fetched_ms, last_order_id, last_scene, created_ms, updated_ms";

const LICENSE_COLUMNS: &str = "event_id, fingerprint_hash, fingerprint, instance_id, license_id, \
     delivery, body, sha256, not_before_ms, not_after_ms, issued_ms, uploaded_ms";

const JOB_COLUMNS: &str = "id, kind, dedupe_key, payload, state, attempts, run_at_ms, lease_owner, \
     lease_until_ms, last_error";

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the database at `url`.
    ///
    /// # Errors
    /// When the URL scheme is unsupported, the database cannot be reached, or migrating fails.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            // `mode=rwc` creates the file on first start.
            let url = if rest.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let options = AnyPoolOptions::new().max_connections(match backend {
            // SQLite serialises writers anyway; a few readers are enough.
            Backend::Sqlite => 4,
            Backend::Postgres => 8,
        });
        let pool = options
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets the admin CLI read while the server writes; the busy timeout
                        // makes concurrent writers wait instead of failing.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(StoreError::Connect)?;
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        migrator.run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(Self { pool, backend })
    }

    /// The backend in use.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---------------------------------------------------------------- instances

    /// Records a newInstance idempotently on (orderId, orderLineId): returns the instance id
    /// stored for that pair, creating it with `new_instance_id` when it is new. The bool says
    /// whether this call created it.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn create_instance(
        &self,
        order_id: &str,
        order_line_id: &str,
        business_id: &str,
        test: bool,
        new_instance_id: &str,
        now_ms: i64,
    ) -> Result<(String, bool), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO instances (instance_id, order_id, order_line_id, business_id, test_flag, \
             status, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, 'ACTIVE', $6, $6) \
             ON CONFLICT (order_id, order_line_id) DO NOTHING",
        )
        .bind(new_instance_id)
        .bind(order_id)
        .bind(order_line_id)
        .bind(business_id)
        .bind(i64::from(test))
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        let row = sqlx::query(
            "SELECT instance_id FROM instances WHERE order_id = $1 AND order_line_id = $2",
        )
        .bind(order_id)
        .bind(order_line_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("instance_id")?, inserted))
    }

    /// One instance.
    ///
    /// # Errors
    /// On a database failure or a corrupt row.
    pub async fn instance(&self, instance_id: &str) -> Result<Option<Instance>, StoreError> {
        let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE instance_id = $1");
        let row = sqlx::query(&sql)
            .bind(instance_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(instance_from_row).transpose()
    }

    /// Every instance, newest first.
    ///
    /// # Errors
    /// On a database failure or a corrupt row.
    pub async fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances ORDER BY created_ms DESC, instance_id"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(instance_from_row).collect()
    }

    /// Stores the order details fetched for an instance. An expiry already set by a
    /// refreshInstance is newer than the original order's and is kept.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn set_order_details(
        &self,
        instance_id: &str,
        d: &OrderDetails,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE instances SET product_id = COALESCE(product_id, $2), sku_code = $3, \
             charging_mode = $4, linear_value = $5, order_created_ms = $6, \
             expire_ms = CASE WHEN last_scene IS NULL THEN $7 ELSE expire_ms END, \
             order_fetched_ms = $8, updated_ms = $8, order_type = $9 WHERE instance_id = $1",
        )
        .bind(instance_id)
        .bind(d.product_id.as_deref())
        .bind(d.sku_code.as_deref())
        .bind(d.charging_mode.as_deref())
        .bind(d.linear_value)
        .bind(d.order_created_ms)
        .bind(d.expire_ms)
        .bind(now_ms)
        .bind(d.order_type.as_deref())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Applies a refreshInstance: new expiry, the renewal order and scene, and the product when
    /// the period type changed. Returns whether the instance exists (and is not released).
    ///
    /// # Errors
    /// On a database failure.
    pub async fn refresh_instance(
        &self,
        instance_id: &str,
        r: &RenewalRecord<'_>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE instances SET expire_ms = $2, last_order_id = $3, last_order_line_id = $4, \
             last_scene = $5, product_id = COALESCE($6, product_id), updated_ms = $7 \
             WHERE instance_id = $1 AND status <> 'RELEASED'",
        )
        .bind(instance_id)
        .bind(r.expire_ms)
        .bind(r.order_id)
        .bind(r.order_line_id)
        .bind(r.scene)
        .bind(r.product_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Sets an instance's status unless it is released (release is final). Returns whether a
    /// live instance was found; setting the status it already has counts as found.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn set_instance_status(
        &self,
        instance_id: &str,
        status: InstanceStatus,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE instances SET status = $2, updated_ms = $3 \
             WHERE instance_id = $1 AND status <> 'RELEASED'",
        )
        .bind(instance_id)
        .bind(status.as_str())
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    // ---------------------------------------------------------------- licenses

    /// The License issued for (eventId, fingerprint hash), if any.
    ///
    /// # Errors
    /// On a database failure or a corrupt row.
    pub async fn license(
        &self,
        event_id: &str,
        fingerprint_hash: &str,
    ) -> Result<Option<IssuedLicense>, StoreError> {
        let sql = format!(
            "SELECT {LICENSE_COLUMNS} FROM licenses WHERE event_id = $1 AND fingerprint_hash = $2"
        );
        let row = sqlx::query(&sql)
            .bind(event_id)
            .bind(fingerprint_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(license_from_row).transpose()
    }

    /// Every License of an instance, oldest first.
    ///
    /// # Errors
    /// On a database failure or a corrupt row.
    pub async fn licenses_of(&self, instance_id: &str) -> Result<Vec<IssuedLicense>, StoreError> {
        let sql = format!(
            "SELECT {LICENSE_COLUMNS} FROM licenses WHERE instance_id = $1 \
             ORDER BY issued_ms, event_id"
        );
        let rows = sqlx::query(&sql)
            .bind(instance_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(license_from_row).collect()
    }

    /// Stores a freshly signed License unless one exists for the same key, and returns the
    /// stored one: when two workers race, both end up uploading the same bytes.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn insert_license(&self, l: &IssuedLicense) -> Result<IssuedLicense, StoreError> {
        sqlx::query(
            "INSERT INTO licenses (event_id, fingerprint_hash, fingerprint, instance_id, license_id, \
             delivery, body, sha256, not_before_ms, not_after_ms, issued_ms, uploaded_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL) \
             ON CONFLICT (event_id, fingerprint_hash) DO NOTHING",
        )
        .bind(&l.event_id)
        .bind(&l.fingerprint_hash)
        .bind(&l.fingerprint)
        .bind(&l.instance_id)
        .bind(&l.license_id)
        .bind(&l.delivery)
        .bind(&l.body)
        .bind(&l.sha256)
        .bind(l.not_before_ms)
        .bind(l.not_after_ms)
        .bind(l.issued_ms)
        .execute(&self.pool)
        .await?;
        self.license(&l.event_id, &l.fingerprint_hash)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                table: "licenses",
                what: "row vanished right after insert".into(),
            })
    }

    /// Issues a License for (eventId, fingerprint) exactly once, atomically with its upload job.
    ///
    /// In one transaction: the instance row is locked (a row lock on PostgreSQL, the write lock
    /// on SQLite) so concurrent requests for one instance see each other's quota use; a License
    /// already stored for the key is returned as is (and its upload job re-armed, since MKT
    /// re-sends only when delivery failed); otherwise, if `quota` distinct fingerprints already
    /// hold Licenses and this one does not, nothing is issued; otherwise `sign` runs and its
    /// License is stored together with the job that uploads it.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn issue_once<E>(
        &self,
        request: &IssueRequest<'_>,
        sign: impl FnOnce() -> Result<IssuedLicense, E>,
    ) -> Result<IssueOutcome<E>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let locked =
            sqlx::query("UPDATE instances SET updated_ms = updated_ms WHERE instance_id = $1")
                .bind(request.instance_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if locked != 1 {
            return Ok(IssueOutcome::NoInstance);
        }
        let sql = format!(
            "SELECT {LICENSE_COLUMNS} FROM licenses WHERE event_id = $1 AND fingerprint_hash = $2"
        );
        let existing = sqlx::query(&sql)
            .bind(request.event_id)
            .bind(request.fingerprint_hash)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            let license = license_from_row(&row)?;
            rearm_in(
                &mut tx,
                request.job_kind,
                request.job_key,
                request.job_payload,
                request.now_ms,
            )
            .await?;
            tx.commit().await?;
            return Ok(IssueOutcome::Existing(license));
        }
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT fingerprint_hash) AS n, \
             COALESCE(SUM(CASE WHEN fingerprint_hash = $2 THEN 1 ELSE 0 END), 0) AS mine \
             FROM licenses WHERE instance_id = $1",
        )
        .bind(request.instance_id)
        .bind(request.fingerprint_hash)
        .fetch_one(&mut *tx)
        .await?;
        let used: i64 = row.try_get("n")?;
        let mine: i64 = row.try_get("mine")?;
        if mine == 0 && used >= request.quota {
            return Ok(IssueOutcome::QuotaExhausted { used });
        }
        let l = match sign() {
            Ok(l) => l,
            Err(e) => return Ok(IssueOutcome::SignFailed(e)),
        };
        sqlx::query(
            "INSERT INTO licenses (event_id, fingerprint_hash, fingerprint, instance_id, license_id, \
             delivery, body, sha256, not_before_ms, not_after_ms, issued_ms, uploaded_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL)",
        )
        .bind(&l.event_id)
        .bind(&l.fingerprint_hash)
        .bind(&l.fingerprint)
        .bind(&l.instance_id)
        .bind(&l.license_id)
        .bind(&l.delivery)
        .bind(&l.body)
        .bind(&l.sha256)
        .bind(l.not_before_ms)
        .bind(l.not_after_ms)
        .bind(l.issued_ms)
        .execute(&mut *tx)
        .await?;
        rearm_in(
            &mut tx,
            request.job_kind,
            request.job_key,
            request.job_payload,
            request.now_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(IssueOutcome::Issued(l))
    }

    /// Marks a License as acknowledged by MKT.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn mark_uploaded(
        &self,
        event_id: &str,
        fingerprint_hash: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE licenses SET uploaded_ms = $3 WHERE event_id = $1 AND fingerprint_hash = $2",
        )
        .bind(event_id)
        .bind(fingerprint_hash)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Distinct fingerprints already licensed on an instance, and whether `fingerprint_hash` is
    /// one of them (a device that already holds a License does not use more quota).
    ///
    /// # Errors
    /// On a database failure.
    pub async fn quota_use(
        &self,
        instance_id: &str,
        fingerprint_hash: &str,
    ) -> Result<(i64, bool), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT fingerprint_hash) AS n, \
             COALESCE(SUM(CASE WHEN fingerprint_hash = $2 THEN 1 ELSE 0 END), 0) AS mine \
             FROM licenses WHERE instance_id = $1",
        )
        .bind(instance_id)
        .bind(fingerprint_hash)
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        let mine: i64 = row.try_get("mine")?;
        Ok((n, mine > 0))
    }

    // ---------------------------------------------------------------- jobs

    /// Enqueues a job unless one with the same `dedupe_key` exists. Returns whether it was new.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn enqueue(
        &self,
        kind: &str,
        dedupe_key: &str,
        payload: &str,
        run_at_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO jobs (kind, dedupe_key, payload, state, attempts, run_at_ms, created_ms, \
             updated_ms) VALUES ($1, $2, $3, 'pending', 0, $4, $5, $5) \
             ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(kind)
        .bind(dedupe_key)
        .bind(payload)
        .bind(run_at_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Enqueues a job, or sends a finished or dead one with that key back to the queue with a
    /// fresh attempt budget (MKT re-sent the request, so the work must be done again).
    ///
    /// # Errors
    /// On a database failure.
    pub async fn enqueue_or_rearm(
        &self,
        kind: &str,
        dedupe_key: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        rearm_in(&mut conn, kind, dedupe_key, payload, now_ms).await
    }

    /// Claims the next due job for `owner` until `lease_until_ms`. A job whose lease has run out
    /// (its worker died) is due again. The claim is a compare-and-set on the lease, so two
    /// instances sharing the database never run the same job at once.
    ///
    /// # Errors
    /// On a database failure or a corrupt row.
    pub async fn claim_job(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Job>, StoreError> {
        // A lost race just means trying the next candidate; a few rounds are plenty.
        for _ in 0..4 {
            let candidate = sqlx::query(
                "SELECT id FROM jobs WHERE state = 'pending' AND run_at_ms <= $1 \
                 AND (lease_until_ms IS NULL OR lease_until_ms <= $1) \
                 ORDER BY run_at_ms, id LIMIT 1",
            )
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
            let Some(candidate) = candidate else {
                return Ok(None);
            };
            let id: i64 = candidate.try_get("id")?;
            let won = sqlx::query(
                "UPDATE jobs SET lease_owner = $2, lease_until_ms = $3, attempts = attempts + 1, \
                 updated_ms = $4 WHERE id = $1 AND state = 'pending' \
                 AND (lease_until_ms IS NULL OR lease_until_ms <= $4)",
            )
            .bind(id)
            .bind(owner)
            .bind(lease_until_ms)
            .bind(now_ms)
            .execute(&self.pool)
            .await?
            .rows_affected()
                == 1;
            if won {
                return self.job(id).await;
            }
        }
        Ok(None)
    }

    /// One job by id.
    ///
    /// # Errors
    /// On a database failure or a corrupt row.
    pub async fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Jobs, optionally of one state, oldest first.
    ///
    /// # Errors
    /// On a database failure or a corrupt row.
    pub async fn jobs(&self, state: Option<JobState>) -> Result<Vec<Job>, StoreError> {
        let rows = match state {
            Some(s) => {
                let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE state = $1 ORDER BY id");
                sqlx::query(&sql)
                    .bind(s.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id");
                sqlx::query(&sql).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(job_from_row).collect()
    }

    /// Counts per state.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn job_counts(&self) -> Result<JobCounts, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut c = JobCounts::default();
        for r in rows {
            let state: String = r.try_get("state")?;
            let n: i64 = r.try_get("n")?;
            match JobState::parse(&state) {
                Some(JobState::Pending) => c.pending = n,
                Some(JobState::Done) => c.done = n,
                Some(JobState::Dead) => c.dead = n,
                None => {
                    return Err(StoreError::Corrupt {
                        table: "jobs",
                        what: format!("unknown state {state:?}"),
                    });
                }
            }
        }
        Ok(c)
    }

    /// Finishes a job held by `owner`. Returns false when the lease was lost meanwhile.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn finish_job(
        &self,
        id: i64,
        owner: &str,
        state: JobState,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET state = $3, lease_owner = NULL, lease_until_ms = NULL, \
             last_error = $4, updated_ms = $5 WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .bind(state.as_str())
        .bind(error)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Releases a job held by `owner` for another attempt at `run_at_ms`.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn retry_job(
        &self,
        id: i64,
        owner: &str,
        run_at_ms: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET lease_owner = NULL, lease_until_ms = NULL, run_at_ms = $3, \
             last_error = $4, updated_ms = $5 WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .bind(run_at_ms)
        .bind(error)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Sends a dead job back to the queue with a fresh attempt budget (operator action).
    ///
    /// # Errors
    /// On a database failure.
    pub async fn revive_job(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET state = 'pending', attempts = 0, run_at_ms = $2, updated_ms = $2 \
             WHERE id = $1 AND state = 'dead'",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    // ---------------------------------------------------------------- nonces

    /// Remembers a callback nonce until `expires_ms`. Returns false when the nonce is already
    /// remembered and not yet expired: a replay. Atomic, so two instances sharing the database
    /// cannot both accept the same nonce.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn remember_nonce(
        &self,
        nonce: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO nonces (nonce, expires_ms) VALUES ($1, $3) \
             ON CONFLICT (nonce) DO UPDATE SET expires_ms = $3 WHERE nonces.expires_ms <= $2",
        )
        .bind(nonce)
        .bind(now_ms)
        .bind(expires_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Deletes expired nonces; returns how many.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn purge_nonces(&self, now_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM nonces WHERE expires_ms <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    // ---------------------------------------------------------------- Model A codes

    /// refreshLicenseCode: records the new expiry (creating the code's row: MKT is the authority
    /// on which codes exist). A released code stays released.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn refresh_code(
        &self,
        code: &str,
        r: &RenewalRecord<'_>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO license_codes (license_code, status, expire_ms, order_id, order_line_id, \
             product_id, last_scene, updated_ms) VALUES ($1, 'ALIVE', $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (license_code) DO UPDATE SET expire_ms = $2, order_id = $3, \
             order_line_id = $4, product_id = COALESCE($5, license_codes.product_id), \
             last_scene = $6, updated_ms = $7 WHERE license_codes.status <> 'RELEASED'",
        )
        .bind(code)
        .bind(r.expire_ms)
        .bind(r.order_id)
        .bind(r.order_line_id)
        .bind(r.product_id)
        .bind(r.scene)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// updateLicenseCodeStatus: returns whether the code is known and not released.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn set_code_status(
        &self,
        code: &str,
        status: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE license_codes SET status = $2, updated_ms = $3 \
             WHERE license_code = $1 AND status <> 'RELEASED'",
        )
        .bind(code)
        .bind(status)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// releaseLicenseCode: marks the code released (recording it if unknown, so a later
    /// refresh cannot bring it back). Idempotent.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn release_code(
        &self,
        code: &str,
        order_id: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO license_codes (license_code, status, order_id, updated_ms) \
             VALUES ($1, 'RELEASED', $2, $3) ON CONFLICT (license_code) DO UPDATE SET \
             status = 'RELEASED', order_id = COALESCE($2, license_codes.order_id), updated_ms = $3 \
             WHERE license_codes.status <> 'RELEASED'",
        )
        .bind(code)
        .bind(order_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every Model A code.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn codes(&self) -> Result<Vec<LicenseCode>, StoreError> {
        let rows = sqlx::query(
            "SELECT license_code, status, expire_ms, order_id, last_scene, updated_ms \
             FROM license_codes ORDER BY license_code",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LicenseCode {
                    license_code: r.try_get("license_code")?,
                    status: r.try_get("status")?,
                    expire_ms: r.try_get("expire_ms")?,
                    order_id: r.try_get("order_id")?,
                    last_scene: r.try_get("last_scene")?,
                    updated_ms: r.try_get("updated_ms")?,
                })
            })
            .collect()
    }
}

async fn rearm_in(
    conn: &mut sqlx::AnyConnection,
    kind: &str,
    dedupe_key: &str,
    payload: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO jobs (kind, dedupe_key, payload, state, attempts, run_at_ms, created_ms, \
         updated_ms) VALUES ($1, $2, $3, 'pending', 0, $4, $4, $4) \
         ON CONFLICT (dedupe_key) DO UPDATE SET state = 'pending', attempts = 0, \
         run_at_ms = $4, last_error = NULL, updated_ms = $4 WHERE jobs.state <> 'pending'",
    )
    .bind(kind)
    .bind(dedupe_key)
    .bind(payload)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

fn instance_from_row(r: &AnyRow) -> Result<Instance, StoreError> {
    let status: String = r.try_get("status")?;
    let test: i64 = r.try_get("test_flag")?;
    Ok(Instance {
        instance_id: r.try_get("instance_id")?,
        order_id: r.try_get("order_id")?,
        order_line_id: r.try_get("order_line_id")?,
        business_id: r.try_get("business_id")?,
        test: test != 0,
        status: InstanceStatus::parse(&status).ok_or_else(|| StoreError::Corrupt {
            table: "instances",
            what: format!("unknown status {status:?}"),
        })?,
        product_id: r.try_get("product_id")?,
        sku_code: r.try_get("sku_code")?,
        charging_mode: r.try_get("charging_mode")?,
        order_type: r.try_get("order_type")?,
        linear_value: r.try_get("linear_value")?,
        order_created_ms: r.try_get("order_created_ms")?,
        expire_ms: r.try_get("expire_ms")?,
        order_fetched_ms: r.try_get("order_fetched_ms")?,
        last_order_id: r.try_get("last_order_id")?,
        last_scene: r.try_get("last_scene")?,
        created_ms: r.try_get("created_ms")?,
        updated_ms: r.try_get("updated_ms")?,
    })
}

fn license_from_row(r: &AnyRow) -> Result<IssuedLicense, StoreError> {
    Ok(IssuedLicense {
        event_id: r.try_get("event_id")?,
        fingerprint_hash: r.try_get("fingerprint_hash")?,
        fingerprint: r.try_get("fingerprint")?,
        instance_id: r.try_get("instance_id")?,
        license_id: r.try_get("license_id")?,
        delivery: r.try_get("delivery")?,
        body: r.try_get("body")?,
        sha256: r.try_get("sha256")?,
        not_before_ms: r.try_get("not_before_ms")?,
        not_after_ms: r.try_get("not_after_ms")?,
        issued_ms: r.try_get("issued_ms")?,
        uploaded_ms: r.try_get("uploaded_ms")?,
    })
}

fn job_from_row(r: &AnyRow) -> Result<Job, StoreError> {
    let state: String = r.try_get("state")?;
    Ok(Job {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        dedupe_key: r.try_get("dedupe_key")?,
        payload: r.try_get("payload")?,
        state: JobState::parse(&state).ok_or_else(|| StoreError::Corrupt {
            table: "jobs",
            what: format!("unknown state {state:?}"),
        })?,
        attempts: r.try_get("attempts")?,
        run_at_ms: r.try_get("run_at_ms")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_until_ms: r.try_get("lease_until_ms")?,
        last_error: r.try_get("last_error")?,
    })
}
