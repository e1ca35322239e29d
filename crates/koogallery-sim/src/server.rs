//! HTTPS serving: TLS via tokio-rustls, HTTP/1.1 and HTTP/2 (ALPN) via hyper-util's auto
//! builder, the axum router as the service. Host faults (primary down, untrusted certificate)
//! act here, before any HTTP is spoken; a handler can ask for its connection to be dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::faults::HostRole;
use crate::sim::SimCore;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Per-connection context handed to handlers as a request extension.
#[derive(Debug, Clone)]
pub struct ConnCtx {
    /// Which listener the connection arrived on.
    pub role: HostRole,
    /// The peer.
    pub peer: SocketAddr,
    drop_now: Arc<Notify>,
}

impl ConnCtx {
    /// Closes the connection without an answer; the calling handler should then never return.
    pub fn drop_connection(&self) {
        self.drop_now.notify_one();
    }
}

/// Accepts connections on `listener` until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    role: HostRole,
    core: Arc<SimCore>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Usually EMFILE or a reset before accept; pause briefly instead of spinning.
                tracing::warn!(error = %e, ?role, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let hosts = core.faults.hosts();
        if role == HostRole::Primary && hosts.primary_down {
            tracing::debug!(%peer, "primary host is down (fault): dropping connection");
            drop(stream);
            continue;
        }
        let tls = if role == HostRole::Primary && hosts.primary_untrusted_certificate {
            core.pki.untrusted.clone()
        } else {
            core.pki.trusted.clone()
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        let mut host_faults = core.faults.watch_hosts();
        host_faults.mark_unchanged();
        // A primary connection ends when the primary goes down or its certificate changes, as
        // it would when a real host fails or is replaced.
        let host_changed = async move {
            if role != HostRole::Primary {
                return std::future::pending().await;
            }
            let _ = host_faults
                .wait_for(|h| {
                    h.primary_down
                        || h.primary_untrusted_certificate != hosts.primary_untrusted_certificate
                })
                .await;
        };
        tokio::spawn(async move {
            tokio::select! {
                () = serve_connection(stream, peer, role, tls, router, shutdown) => {}
                () = host_changed => tracing::debug!(%peer, "host fault changed: closing connection"),
            }
        });
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    role: HostRole,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let tls_stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let drop_now = Arc::new(Notify::new());
    let ctx = ConnCtx {
        role,
        peer,
        drop_now: drop_now.clone(),
    };
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ctx.clone());
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
    let builder = Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(tls_stream), service);
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = drop_now.notified() => {
            tracing::debug!(%peer, "dropping connection (fault)");
        }
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
}
