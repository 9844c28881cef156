//! What [`Transport::Tls`](crate::Transport::Tls) needs: this side's certificate and key, the
//! trust anchors for connections it opens, and how the peer's name is checked.
//!
//! Built from PEM bytes, not file paths, so the crate reads no files: the caller (the gateway's
//! configuration) reads them and can name the file when a [`TlsConfigError`] comes back.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// Why a [`TlsConfig`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("no PEM CERTIFICATE block found")]
    NoCertificate,
    #[error("unreadable PEM certificate: {0}")]
    BadCertificate(String),
    #[error("no PEM private key block found (PKCS#8, PKCS#1 or SEC1)")]
    NoPrivateKey,
    #[error("unreadable PEM private key: {0}")]
    BadPrivateKey(String),
    #[error("CA certificate rejected as a trust anchor: {0}")]
    BadTrustAnchor(String),
    #[error("invalid TLS server name {0:?}")]
    BadServerName(String),
    /// rustls refused the certificate and key together (e.g. the key does not match the
    /// certificate, or its algorithm is unsupported).
    #[error("certificate and private key rejected: {0}")]
    Rejected(#[from] rustls::Error),
}

/// TLS settings of the SIP user agent.
///
/// - As a server (the `tls_listen` listener): presents [`TlsConfig::new`]'s certificate chain;
///   clients are not asked for certificates.
/// - As a client (connections this side opens): verifies the peer's chain against the trust
///   anchors given with [`TlsConfig::trust_pem`]; with none, every outgoing TLS connection is
///   refused (there is deliberately no fallback to a public root store: an SBC's certificate is
///   normally issued by the operator's own CA). The peer's name checked is
///   [`TlsConfig::server_name`] if set, else the IP address of the next hop (this stack does no
///   DNS). The same certificate is offered should the server ask for a client certificate.
#[derive(Clone)]
pub struct TlsConfig {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    server: Arc<ServerConfig>,
    roots: RootCertStore,
    server_name: Option<ServerName<'static>>,
    verify_server_name: bool,
}

/// The key stays out of logs.
impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("chain_len", &self.chain.len())
            .field("trust_anchors", &self.roots.len())
            .field("server_name", &self.server_name)
            .field("verify_server_name", &self.verify_server_name)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfig {
    /// This side's certificate chain (leaf first) and private key, both PEM. No trust anchors
    /// yet, and the server name is verified.
    pub fn new(certificate_chain_pem: &[u8], private_key_pem: &[u8]) -> Result<TlsConfig, TlsConfigError> {
        let chain = parse_certificates(certificate_chain_pem)?;
        let key = PrivateKeyDer::from_pem_slice(private_key_pem).map_err(|error| match error {
            rustls::pki_types::pem::Error::NoItemsFound => TlsConfigError::NoPrivateKey,
            other => TlsConfigError::BadPrivateKey(other.to_string()),
        })?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())?;
        Ok(TlsConfig {
            chain,
            key: Arc::new(key),
            server: Arc::new(server),
            roots: RootCertStore::empty(),
            server_name: None,
            verify_server_name: true,
        })
    }

    /// Adds every certificate of `ca_pem` as a trust anchor for connections this side opens.
    pub fn trust_pem(mut self, ca_pem: &[u8]) -> Result<TlsConfig, TlsConfigError> {
        for certificate in parse_certificates(ca_pem)? {
            self.roots.add(certificate).map_err(|e| TlsConfigError::BadTrustAnchor(e.to_string()))?;
        }
        Ok(self)
    }

    /// The name (DNS name or IP address) every outgoing connection's certificate must carry,
    /// instead of the next hop's IP address; also sent as SNI.
    pub fn server_name(mut self, name: &str) -> Result<TlsConfig, TlsConfigError> {
        let parsed = ServerName::try_from(name.trim().to_string())
            .map_err(|_| TlsConfigError::BadServerName(name.to_string()))?;
        self.server_name = Some(parsed);
        Ok(self)
    }

    /// `false` accepts a peer certificate whose chain is trusted but whose names do not match:
    /// for SBCs whose certificates name something other than the address they are reached at.
    pub fn verify_server_name(mut self, verify: bool) -> TlsConfig {
        self.verify_server_name = verify;
        self
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    /// `None` without trust anchors: nothing could be verified.
    pub(crate) fn connector(&self) -> Result<Option<tokio_rustls::TlsConnector>, TlsConfigError> {
        if self.roots.is_empty() {
            return Ok(None);
        }
        let provider = provider();
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots.clone()), provider.clone())
            .build()
            .map_err(|e| TlsConfigError::BadTrustAnchor(e.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> =
            if self.verify_server_name { verifier } else { Arc::new(IgnoreName(verifier)) };
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        Ok(Some(tokio_rustls::TlsConnector::from(Arc::new(client))))
    }

    /// The name the certificate of `peer` is checked against.
    pub(crate) fn name_for(&self, peer: SocketAddr) -> ServerName<'static> {
        self.server_name.clone().unwrap_or_else(|| ServerName::IpAddress(peer.ip().into()))
    }
}

fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::BadCertificate(e.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    Ok(certificates)
}

/// Full chain verification, but a name mismatch is forgiven. The chain is checked before the
/// name, so a name error means the chain itself was trusted.
#[derive(Debug)]
struct IgnoreName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
