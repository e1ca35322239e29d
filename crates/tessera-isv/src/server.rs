//! The production URL (HTTPS, or plain HTTP behind a TLS-terminating proxy), the loopback admin
//! listener, and the background tasks (job workers, nonce janitor), started together and stopped
//! together.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::service::TowerToHyperService;
use koogallery::wire::CallbackResponse;
use tessera_types::IsvResultCode;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::service::IsvService;
use crate::status::StatusReport;

/// MKT waits 5 s; answer within this or say `000005` so MKT retries rather than times out.
pub const CALLBACK_DEADLINE: StdDuration = StdDuration::from_millis(4_500);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file could not be read.
    #[error("cannot read TLS file {path}")]
    TlsFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error("TLS configuration is invalid: {0}")]
    Tls(String),
}

/// A running ISV: its listeners and background tasks.
#[derive(Debug)]
pub struct RunningIsv {
    /// Where the production interface listens.
    pub addr: SocketAddr,
    /// Where the admin listener listens, if configured.
    pub admin_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningIsv {
    /// Stops everything at once, the way a crash would: in-flight jobs keep their lease and are
    /// taken over after it expires. (Connections end with their accept loop.)
    pub fn kill(self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Waits until a task ends (they run forever unless killed).
    pub async fn wait(mut self) {
        if let Some(first) = self.tasks.pop() {
            let _ = first.await;
        }
    }
}

/// Listener options not in the config file (tests use port 0 and read back the address).
#[derive(Debug, Clone, Default)]
pub struct ListenOverrides {
    /// Production listener address instead of `server.listen`.
    pub listen: Option<SocketAddr>,
    /// Admin listener address instead of `server.admin_listen`.
    pub admin_listen: Option<SocketAddr>,
}

/// Loads the TLS certificate chain and key into a rustls server config (ALPN h2, http/1.1).
///
/// # Errors
/// When a file cannot be read or holds no usable certificate or key.
pub fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ServerError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| ServerError::TlsFile {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = zeroize::Zeroizing::new(read(key)?);
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(
            "no certificate in the certificate file".into(),
        ));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| ServerError::Tls(format!("key PEM: {e}")))?
        .ok_or_else(|| ServerError::Tls("no private key in the key file".into()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The production-interface router: one path, every activity.
pub fn callback_router(service: IsvService) -> Router {
    let path = service.config().server.path.clone();
    Router::new()
        .route(&path, any(handle_callback))
        .with_state(service)
}

/// The admin router: `GET /status` (JSON) and `GET /healthz`.
pub fn admin_router(service: IsvService) -> Router {
    Router::new()
        .route("/status", get(handle_status))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(service)
}

fn json_200(response: &CallbackResponse) -> Response {
    let body = serde_json::to_vec(response)
        .unwrap_or_else(|_| br#"{"resultCode":"000005","resultMsg":"internal error"}"#.to_vec());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        body,
    )
        .into_response()
}

async fn handle_callback(
    State(service): State<IsvService>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Response {
    if method != Method::POST {
        return json_200(&CallbackResponse::new(IsvResultCode::InvalidParams));
    }
    let limit = service.config().server.max_body_bytes;
    // Read one byte more than allowed so "too large" is told from "exactly at the limit".
    let Ok(bytes) = axum::body::to_bytes(body, limit.saturating_add(1)).await else {
        tracing::warn!("callback body too large or unreadable");
        return json_200(&CallbackResponse::new(IsvResultCode::InvalidParams));
    };
    let query = uri.query().map(str::to_owned);
    let answer = tokio::time::timeout(
        CALLBACK_DEADLINE,
        service.handle_callback(query.as_deref(), &bytes),
    )
    .await
    .unwrap_or_else(|_| {
        tracing::error!("callback missed its deadline");
        CallbackResponse::new(IsvResultCode::InternalError)
    });
    json_200(&answer)
}

async fn handle_status(State(service): State<IsvService>) -> Response {
    match StatusReport::collect(service.store()).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "status report failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

async fn serve_loop(listener: TcpListener, router: Router, tls: Option<TlsAcceptor>) {
    // Connections live in this set, so stopping the loop stops them too.
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(StdDuration::from_millis(50)).await;
                continue;
            }
        };
        let router = router.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let service = TowerToHyperService::new(router);
            let builder = ConnBuilder::new(TokioExecutor::new());
            let result = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls_stream) => {
                        builder
                            .serve_connection(TokioIo::new(tls_stream), service)
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Binds the listeners and starts the server and its background tasks on the current runtime.
///
/// # Errors
/// When a listener cannot bind or the TLS files are unusable.
pub async fn start(
    service: IsvService,
    overrides: &ListenOverrides,
) -> Result<RunningIsv, ServerError> {
    let config = service.config().clone();
    let tls = if config.server.plain_http {
        None
    } else {
        let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key) else {
            return Err(ServerError::Tls(
                "tls_cert and tls_key are required unless plain_http".into(),
            ));
        };
        Some(TlsAcceptor::from(Arc::new(tls_config(cert, key)?)))
    };
    let listener = bind(overrides.listen.unwrap_or(config.server.listen)).await?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.server.listen,
        source,
    })?;
    let mut tasks = Vec::new();
    let admin_addr = match overrides.admin_listen.or(config.server.admin_listen) {
        Some(a) => {
            let admin = bind(a).await?;
            let bound = admin
                .local_addr()
                .map_err(|source| ServerError::Bind { addr: a, source })?;
            tasks.push(tokio::spawn(serve_loop(
                admin,
                admin_router(service.clone()),
                None,
            )));
            Some(bound)
        }
        None => None,
    };
    for _ in 0..config.jobs.workers {
        tasks.push(tokio::spawn(service.clone().run_worker()));
    }
    tasks.push(tokio::spawn(
        service
            .clone()
            .run_nonce_janitor(StdDuration::from_secs(60)),
    ));
    tasks.push(tokio::spawn(serve_loop(
        listener,
        callback_router(service),
        tls,
    )));
    tracing::info!(%addr, tls = !config.server.plain_http, "production interface listening");
    Ok(RunningIsv {
        addr,
        admin_addr,
        tasks,
    })
}
