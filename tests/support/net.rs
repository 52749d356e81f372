//! Loopback servers for the TLS, redirect and proxy tests: a private PKI generated with rcgen,
//! an HTTPS server (optionally requiring a client certificate), and plain HTTP servers that
//! record every byte they receive. Each server runs on its own OS thread and tokio runtime,
//! on `127.0.0.1:0`, so it works under whichever runtime a test uses.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A certificate and its key, as DER and as PEM files.
pub struct Identity {
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A private CA with a server certificate for 127.0.0.1/localhost and a client certificate.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca_der: CertificateDer<'static>,
    pub ca_file: PathBuf,
    pub server: Identity,
    pub client: Identity,
}

impl Pki {
    /// A fresh CA named `name`, its server and client certificates, written under a temp dir.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // A distinct CA name per PKI: rustls looks issuers up by name, so two tests' CAs with
        // one name (one of them trusted through the process-wide SSL_CERT_FILE) would turn
        // "unknown issuer" into "bad signature".
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA {n}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca_file = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |cn: &str, sans: Vec<String>, eku: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![eku];
            let cert = p.signed_by(&key, &issuer).unwrap();
            let cert_file = dir.path().join(format!("{name}-{cn}.pem"));
            let key_file = dir.path().join(format!("{name}-{cn}-key.pem"));
            std::fs::write(&cert_file, cert.pem()).unwrap();
            std::fs::write(&key_file, key.serialize_pem()).unwrap();
            Identity {
                cert_der: cert.der().clone(),
                key_der: key.serialize_der(),
                cert_file,
                key_file,
            }
        };
        let server = leaf(
            "server",
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = leaf("client", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
        Self {
            _dir: dir,
            ca_der: ca_cert.der().clone(),
            ca_file,
            server,
            client,
        }
    }

    /// A file in the PKI's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self._dir.path().join(name)
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// The header block, as text.
    pub head: String,
    pub body: Vec<u8>,
}

/// What to answer.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(body: &str) -> Self {
        Self {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
        }
    }
}

type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A running loopback server.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Every byte received, on every connection (before any parsing).
    pub received: Arc<Mutex<Vec<u8>>>,
    /// The requests fully read and answered.
    pub requests: Arc<Mutex<Vec<Request>>>,
    /// TLS handshakes that completed / failed.
    pub handshakes: Arc<Mutex<(usize, usize)>>,
}

impl TestServer {
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    pub fn received_text(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// A plain-HTTP server answering every request with `handler`.
    pub fn http(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Self {
        Self::start(None, Arc::new(handler))
    }

    /// An HTTPS server with `pki`'s server certificate; with `client_ca`, a client certificate
    /// signed by that CA is required.
    pub fn https(
        pki: &Pki,
        client_ca: Option<&CertificateDer<'static>>,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Self {
        Self::https_with_versions(pki, client_ca, rustls::DEFAULT_VERSIONS, handler)
    }

    /// [`TestServer::https`] speaking only `versions`.
    pub fn https_with_versions(
        pki: &Pki,
        client_ca: Option<&CertificateDer<'static>>,
        versions: &[&'static rustls::SupportedProtocolVersion],
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.clone()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(
                vec![pki.server.cert_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server.key_der.clone())),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self::start(
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
            Arc::new(handler),
        )
    }

    fn start(tls: Option<tokio_rustls::TlsAcceptor>, handler: Handler) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handshakes = Arc::new(Mutex::new((0, 0)));
        let (rx, rq, hs) = (received.clone(), requests.clone(), handshakes.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        continue;
                    };
                    let (rx, rq, hs, handler, tls) = (
                        rx.clone(),
                        rq.clone(),
                        hs.clone(),
                        handler.clone(),
                        tls.clone(),
                    );
                    tokio::spawn(async move {
                        match tls {
                            None => serve(sock, rx, rq, handler).await,
                            Some(acceptor) => match acceptor.accept(sock).await {
                                Ok(stream) => {
                                    hs.lock().unwrap().0 += 1;
                                    serve(stream, rx, rq, handler).await
                                }
                                Err(_) => hs.lock().unwrap().1 += 1,
                            },
                        }
                    });
                }
            });
        });
        Self {
            addr,
            received,
            requests,
            handshakes,
        }
    }
}

/// Reads one request (headers, then a Content-Length body), answers, closes.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    received: Arc<Mutex<Vec<u8>>>,
    requests: Arc<Mutex<Vec<Request>>>,
    handler: Handler,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                received.lock().unwrap().extend_from_slice(&chunk[..n]);
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                received.lock().unwrap().extend_from_slice(&chunk[..n]);
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let req = Request {
        method: first.next().unwrap_or("").into(),
        target: first.next().unwrap_or("").into(),
        head: head.clone(),
        body: buf[head_end..].to_vec(),
    };
    let resp = handler(&req);
    requests.lock().unwrap().push(req);
    let mut out = format!("HTTP/1.1 {} X\r\n", resp.status);
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        resp.body.len(),
        resp.body
    ));
    let _ = s.write_all(out.as_bytes()).await;
    let _ = s.shutdown().await;
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
