//! `MarketClient` against small loopback HTTPS servers started by the tests (a test CA from
//! rcgen, HTTP/1.1 by hand): the APIG signature survives the trip, the server `Date` comes back,
//! the fallback host is used after a 5xx but not after a 4xx, oversized answers are refused, the
//! upload is a signed multipart, and a server from another CA is refused.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use koogallery::apig::{self, Credentials, ReceivedRequest};
use koogallery::client::{CaMode, MarketClient, MarketConfig, MarketError, ServedBy, http_date};
use koogallery::wire::{CodeStatus, HeartbeatRequest};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tessera_types::{Clock, ManualClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use url::Url;

const PRIMARY: &str = "mkt.myhuaweicloud.com";
const FALLBACK: &str = "mkt.myhuaweicloud.cn";

struct Pki {
    ca_pem: String,
    acceptor: TlsAcceptor,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![PRIMARY.to_owned(), FALLBACK.to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }
}

/// One received request.
#[derive(Clone)]
struct Seen {
    parts: http::request::Parts,
    body: Vec<u8>,
}

/// What the server answers: status, extra headers, body.
type Reply = (u16, Vec<(String, String)>, Vec<u8>);
type Responder = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn serve(acceptor: TlsAcceptor, respond: Responder) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let respond = respond.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Some(req) = read_request(&mut tls).await else {
                    return;
                };
                log.lock().unwrap().push(req.clone());
                let (status, headers, body) = respond(&req);
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (n, v) in headers {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server { addr, seen }
}

async fn read_request<S: AsyncReadExt + Unpin>(s: &mut S) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?, first.next()?);
    let mut builder = http::Request::builder().method(method).uri(target);
    let mut length = 0usize;
    for line in lines {
        let (n, v) = line.split_once(':')?;
        if n.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse().ok()?;
        }
        builder = builder.header(n.trim(), v.trim());
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let (parts, ()) = builder.body(()).ok()?.into_parts();
    Some(Seen { parts, body })
}

fn verify(seen: &Seen, clock: &ManualClock) -> Result<apig::Verified, apig::ApigAuthError> {
    apig::verify(
        &ReceivedRequest::from_parts(&seen.parts, &seen.body),
        |ak| (ak == "MYAK").then(|| Credentials::new("MYAK", "MYSK")),
        clock.now(),
    )
}

struct Setup {
    clock: ManualClock,
    _ca_file: tempfile::NamedTempFile,
    config: MarketConfig,
}

fn setup(pki: &Pki, primary: &Server, fallback: Option<&Server>) -> Setup {
    let clock = ManualClock::at_unix(1_700_000_000);
    let mut ca_file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut ca_file, pki.ca_pem.as_bytes()).unwrap();
    let mut config = MarketConfig::new(Credentials::new("MYAK", "MYSK"), clock.shared());
    config.primary = Url::parse(&format!("https://{PRIMARY}:{}", primary.addr.port())).unwrap();
    config.resolve.push((PRIMARY.to_owned(), primary.addr));
    match fallback {
        Some(f) => {
            config.fallback =
                Some(Url::parse(&format!("https://{FALLBACK}:{}", f.addr.port())).unwrap());
            config.resolve.push((FALLBACK.to_owned(), f.addr));
        }
        None => config.fallback = None,
    }
    config.extra_ca_pem = Some(ca_file.path().to_owned());
    config.ca_mode = CaMode::Only;
    Setup {
        clock,
        _ca_file: ca_file,
        config,
    }
}

fn heartbeat() -> HeartbeatRequest {
    HeartbeatRequest {
        license: "PLTEST0001".into(),
        heartbeat_info: None,
    }
}

fn answering(status: u16, body: &str, headers: Vec<(String, String)>) -> Responder {
    let body = body.as_bytes().to_vec();
    Arc::new(move |_| (status, headers.clone(), body.clone()))
}

const HEARTBEAT_OK: &str = r#"{"error_code":"92020000","error_msg":"success","data":{"license_code":"PLTEST0001","status":"ALIVE","activate_time":"20231101000000"}}"#;

#[tokio::test]
async fn signed_heartbeat_round_trips_with_server_date() {
    let pki = pki();
    let date = http_date(time::OffsetDateTime::from_unix_timestamp(1_700_000_123).unwrap());
    let server = serve(
        pki.acceptor.clone(),
        answering(200, HEARTBEAT_OK, vec![("Date".into(), date)]),
    )
    .await;
    let s = setup(&pki, &server, None);
    let client = MarketClient::new(s.config.clone()).unwrap();
    let r = client.heartbeat(&heartbeat()).await.unwrap();
    assert_eq!(r.data.status, CodeStatus::Alive);
    assert_eq!(r.served_by, ServedBy::Primary);
    assert_eq!(r.server_date.unwrap().unix_timestamp(), 1_700_000_123);

    let seen = server.seen.lock().unwrap()[0].clone();
    assert_eq!(
        seen.parts.uri.path(),
        "/api/mkp-openapi-public/global/v1/license/heartbeat"
    );
    assert_eq!(seen.body, br#"{"license":"PLTEST0001"}"#);
    let v = verify(&seen, &s.clock).unwrap();
    assert_eq!(v.access_key, "MYAK");
    assert_eq!(v.signed_at, s.clock.now());
    // The gateway's clock 16 minutes later would refuse the same request.
    s.clock.advance(time::Duration::minutes(16));
    assert!(matches!(
        verify(&seen, &s.clock),
        Err(apig::ApigAuthError::DateSkew { .. })
    ));
}

#[tokio::test]
async fn order_query_signs_its_query_string() {
    let pki = pki();
    let server = serve(
        pki.acceptor.clone(),
        answering(
            200,
            r#"{"resultCode":"MKT.0000","resultMsg":"Success","orderInfo":{"orderId":"MOCKPERIODYEARNEW","orderType":"NEW","createTime":"20241121090846","orderLine":[]}}"#,
            vec![],
        ),
    )
    .await;
    let s = setup(&pki, &server, None);
    let client = MarketClient::new(s.config.clone()).unwrap();
    let order = client
        .query_order(&koogallery::wire::OrderQuery {
            order_id: "MOCKPERIODYEARNEW".into(),
            order_line_id: Some("MOCKPERIODYEARNEW-000001".into()),
        })
        .await
        .unwrap();
    assert_eq!(order.data.order_id, "MOCKPERIODYEARNEW");
    let seen = server.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.parts.method, "GET");
    assert_eq!(
        seen.parts.uri.query(),
        Some("orderId=MOCKPERIODYEARNEW&orderLineId=MOCKPERIODYEARNEW-000001")
    );
    verify(&seen, &s.clock).unwrap();
}

#[tokio::test]
async fn a_5xx_moves_to_the_fallback_once_but_a_4xx_does_not() {
    let pki = pki();
    let primary = serve(
        pki.acceptor.clone(),
        answering(503, "busy", vec![("Retry-After".into(), "7".into())]),
    )
    .await;
    let fallback = serve(pki.acceptor.clone(), answering(200, HEARTBEAT_OK, vec![])).await;
    let s = setup(&pki, &primary, Some(&fallback));
    let client = MarketClient::new(s.config.clone()).unwrap();
    let r = client.heartbeat(&heartbeat()).await.unwrap();
    assert_eq!(r.served_by, ServedBy::Fallback);
    assert_eq!(primary.seen.lock().unwrap().len(), 1);
    let on_fallback = fallback.seen.lock().unwrap()[0].clone();
    // Re-signed for the fallback host.
    assert!(
        on_fallback.parts.headers["host"]
            .to_str()
            .unwrap()
            .starts_with(FALLBACK)
    );
    verify(&on_fallback, &s.clock).unwrap();

    let refusing = serve(
        pki.acceptor.clone(),
        answering(
            401,
            r#"{"error_code":"APIG.0303","error_msg":"Incorrect app authentication information"}"#,
            vec![],
        ),
    )
    .await;
    let untouched = serve(pki.acceptor.clone(), answering(200, HEARTBEAT_OK, vec![])).await;
    let s = setup(&pki, &refusing, Some(&untouched));
    let client = MarketClient::new(s.config.clone()).unwrap();
    let err = client.heartbeat(&heartbeat()).await.unwrap_err();
    assert_eq!(err.http_status(), Some(401));
    assert!(!err.is_retryable());
    assert!(untouched.seen.lock().unwrap().is_empty());

    // Both hosts failing: the fallback's answer is reported, with its Retry-After.
    let busy_too = serve(
        pki.acceptor.clone(),
        answering(503, "busy", vec![("Retry-After".into(), "9".into())]),
    )
    .await;
    let s = setup(&pki, &primary, Some(&busy_too));
    let client = MarketClient::new(s.config.clone()).unwrap();
    let err = client.heartbeat(&heartbeat()).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(
        err.retry_after(),
        Some(koogallery::client::RetryAfter::Seconds(9))
    );
}

#[tokio::test]
async fn oversized_answers_are_refused() {
    let pki = pki();
    let huge = format!(
        r#"{{"error_code":"92020000","error_msg":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let server = serve(pki.acceptor.clone(), answering(200, &huge, vec![])).await;
    let s = setup(&pki, &server, None);
    let client = MarketClient::new(s.config.clone()).unwrap();
    let err = client.heartbeat(&heartbeat()).await.unwrap_err();
    assert!(
        matches!(err, MarketError::BodyTooLarge { limit: 1_048_576 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn license_file_upload_is_a_signed_multipart() {
    let pki = pki();
    let server = serve(
        pki.acceptor.clone(),
        answering(
            200,
            r#"{"error_code":"92020000","error_msg":"success"}"#,
            vec![],
        ),
    )
    .await;
    let s = setup(&pki, &server, None);
    let client = MarketClient::new(s.config.clone()).unwrap();
    client
        .upload_license_file("evt-42", "license.lic", b"LICENSE FILE BYTES")
        .await
        .unwrap();
    let seen = server.seen.lock().unwrap()[0].clone();
    assert_eq!(
        seen.parts.uri.path(),
        "/api/mkp-openapi-public/global/v1/market-event/evt-42/file"
    );
    let content_type = seen.parts.headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("multipart/form-data; boundary="));
    let v = verify(&seen, &s.clock).unwrap();
    assert!(v.unsigned_payload);
    let body = String::from_utf8(seen.body).unwrap();
    assert!(body.contains("LICENSE FILE BYTES"));
    let descriptor = koogallery::wire::IsvUpdateFileReq::file("license.lic", b"LICENSE FILE BYTES");
    assert!(body.contains(&serde_json::to_string(&descriptor).unwrap()));
}

#[tokio::test]
async fn a_server_from_another_ca_is_refused() {
    let trusted = pki();
    let other = pki();
    let server = serve(other.acceptor.clone(), answering(200, HEARTBEAT_OK, vec![])).await;
    let s = setup(&trusted, &server, None);
    let client = MarketClient::new(s.config.clone()).unwrap();
    let err = client.heartbeat(&heartbeat()).await.unwrap_err();
    assert!(matches!(err, MarketError::Transport { .. }), "{err:?}");
    assert!(server.seen.lock().unwrap().is_empty());
}
