//! Certificates made at test time with rcgen: a CA and a certificate it issued for loopback
//! (`127.0.0.1` and `localhost`), usable as server and as client certificate.

use camara_sip::TlsConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    /// A fresh CA named `name` and a loopback certificate issued by it.
    pub fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).unwrap();

        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, format!("{name} loopback"));
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
        Pki { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// This PKI's certificate, trusting `trusted`'s CA (none: no trust anchor at all).
    pub fn tls_config(&self, trusted: Option<&Pki>) -> TlsConfig {
        let config = TlsConfig::new(self.cert_pem.as_bytes(), self.key_pem.as_bytes()).expect("valid certificate");
        match trusted {
            Some(ca) => config.trust_pem(ca.ca_pem.as_bytes()).expect("valid CA"),
            None => config,
        }
    }
}
