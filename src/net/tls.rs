//! The rustls client configuration of the portal, Elasticsearch and Kibana clients, made
//! from a [`LoadedTls`] (the `[….tls]` files as `config::tls` read and checked them).

use crate::config::tls::{provider, LoadedTls, TlsVersion};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

impl LoadedTls {
    /// The rustls configuration of a client (ALPN as reqwest sets it: h2, then HTTP/1.1).
    pub(crate) fn client_config(&self) -> rustls::ClientConfig {
        let versions: &[&'static rustls::SupportedProtocolVersion] = match self.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .expect("ring supports TLS 1.2 and 1.3");
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
        } else {
            builder.with_root_certificates(self.root_store())
        };
        let mut config = match &self.identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .expect("checked by TlsConfig::load"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }

    fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        if self.system_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::warn!(error = %e, "cannot read part of the system certificate store");
            }
            roots.add_parsable_certificates(native.certs);
        }
        roots.add_parsable_certificates(self.extra_roots.iter().cloned());
        roots
    }

    /// The client certificate and key as one PEM (what the elasticsearch crate takes).
    pub(crate) fn identity_pem(&self) -> Option<Vec<u8>> {
        let (chain, key) = self.identity.as_ref()?;
        let mut pem = Vec::new();
        for c in chain {
            pem.extend(pem_block("CERTIFICATE", c.as_ref()));
        }
        let label = match key.as_ref() {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        pem.extend(pem_block(label, key.secret_der()));
        Some(pem)
    }
}

fn pem_block(label: &str, der: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out.into_bytes()
}

/// `insecure_skip_verify`: any chain and name, but the handshake signatures are still checked
/// (so the peer holds the key of the certificate it shows).
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::TlsConfig;

    #[test]
    fn the_default_trusts_the_system_store_and_verifies() {
        let t = TlsConfig::default().load("x.tls").unwrap();
        assert!(t.system_roots && !t.insecure_skip_verify && t.identity.is_none());
        assert!(!t.root_store().is_empty());
    }
}
