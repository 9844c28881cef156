//! HTTP Digest authentication for SIP (RFC 3261 s.22.4, RFC 7616, RFC 8760):
//! parsing `WWW-Authenticate` / `Proxy-Authenticate` challenges and computing
//! the `Authorization` / `Proxy-Authorization` answer.
//!
//! MD5 and SHA-256 (and their `-sess` variants) are supported, with
//! `qop=auth` or, for RFC 2069 servers, no qop at all. `auth-int` alone is
//! refused: nothing here hashes bodies.

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// Digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl DigestAlgorithm {
    /// `None` for an algorithm this stack cannot answer.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_uppercase().as_str() {
            "MD5" => Some(Self::Md5),
            "MD5-SESS" => Some(Self::Md5Sess),
            "SHA-256" => Some(Self::Sha256),
            "SHA-256-SESS" => Some(Self::Sha256Sess),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Self::Md5Sess | Self::Sha256Sess)
    }

    /// Lower-case hex of the hash of `data`.
    pub fn hash_hex(self, data: &str) -> String {
        let bytes: Vec<u8> = match self {
            Self::Md5 | Self::Md5Sess => Md5::digest(data.as_bytes()).to_vec(),
            Self::Sha256 | Self::Sha256Sess => Sha256::digest(data.as_bytes()).to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 8760 s.2.4: prefer SHA-256 over MD5.
    fn strength(self) -> u8 {
        match self {
            Self::Md5 | Self::Md5Sess => 1,
            Self::Sha256 | Self::Sha256Sess => 2,
        }
    }
}

/// One `Digest` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: DigestAlgorithm,
    /// The server offered `qop=auth`; `false` means RFC 2069 (no qop).
    pub qop_auth: bool,
    pub stale: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("not a Digest challenge")]
    NotDigest,
    #[error("missing {0} parameter")]
    Missing(&'static str),
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("unsupported qop {0:?} (only auth)")]
    UnsupportedQop(String),
    #[error("malformed challenge")]
    Syntax,
}

impl Challenge {
    /// Parses one `WWW-Authenticate` / `Proxy-Authenticate` header value.
    pub fn parse(value: &str) -> Result<Self, ChallengeError> {
        let value = value.trim();
        let (scheme, rest) = value.split_once(|c: char| c.is_ascii_whitespace()).unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(ChallengeError::NotDigest);
        }
        let params = parse_params(rest).ok_or(ChallengeError::Syntax)?;
        let get = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let realm = get("realm").ok_or(ChallengeError::Missing("realm"))?;
        let nonce = get("nonce").ok_or(ChallengeError::Missing("nonce"))?;
        let algorithm = match get("algorithm") {
            None => DigestAlgorithm::Md5,
            Some(a) => DigestAlgorithm::parse(&a).ok_or(ChallengeError::UnsupportedAlgorithm(a))?,
        };
        let qop_auth = match get("qop") {
            None => false,
            Some(qop) => {
                if qop.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")) {
                    true
                } else {
                    return Err(ChallengeError::UnsupportedQop(qop));
                }
            }
        };
        let stale = get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true"));
        Ok(Self { realm, nonce, opaque: get("opaque"), algorithm, qop_auth, stale })
    }

    /// The strongest challenge this stack can answer among several header
    /// values (RFC 8760 s.2.4), or the first error if none.
    pub fn best<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Self, ChallengeError> {
        let mut best: Option<Challenge> = None;
        let mut first_error = None;
        for value in values {
            match Self::parse(value) {
                Ok(c) => {
                    if best.as_ref().is_none_or(|b| c.algorithm.strength() > b.algorithm.strength()) {
                        best = Some(c);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        best.ok_or_else(|| first_error.unwrap_or(ChallengeError::NotDigest))
    }
}

/// What is needed to answer a challenge for one request.
#[derive(Debug, Clone, Copy)]
pub struct DigestInput<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub method: &'a str,
    /// The digest-uri: the request-URI.
    pub uri: &'a str,
    /// Nonce count, starting at 1 for each new nonce.
    pub nc: u32,
    pub cnonce: &'a str,
}

/// The `response` value (RFC 7616 s.3.4.1, RFC 2617 s.3.2.2.1 without qop).
pub fn response(challenge: &Challenge, input: &DigestInput<'_>) -> String {
    let h = |s: &str| challenge.algorithm.hash_hex(s);
    let mut ha1 = h(&format!("{}:{}:{}", input.username, challenge.realm, input.password));
    if challenge.algorithm.is_sess() {
        ha1 = h(&format!("{ha1}:{}:{}", challenge.nonce, input.cnonce));
    }
    let ha2 = h(&format!("{}:{}", input.method, input.uri));
    if challenge.qop_auth {
        h(&format!("{ha1}:{}:{:08x}:{}:auth:{ha2}", challenge.nonce, input.nc, input.cnonce))
    } else {
        h(&format!("{ha1}:{}:{ha2}", challenge.nonce))
    }
}

/// The full `Authorization` / `Proxy-Authorization` header value.
pub fn authorization(challenge: &Challenge, input: &DigestInput<'_>) -> String {
    let mut value = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{}\", algorithm={}",
        quote(input.username),
        quote(&challenge.realm),
        quote(&challenge.nonce),
        quote(input.uri),
        response(challenge, input),
        challenge.algorithm.name(),
    );
    if challenge.qop_auth {
        value.push_str(&format!(", cnonce={}, qop=auth, nc={:08x}", quote(input.cnonce), input.nc));
    } else if challenge.algorithm.is_sess() {
        value.push_str(&format!(", cnonce={}", quote(input.cnonce)));
    }
    if let Some(opaque) = &challenge.opaque {
        value.push_str(&format!(", opaque={}", quote(opaque)));
    }
    value
}

/// A quoted-string (RFC 3261 s.25.1): `"` and `\` escaped, line breaks dropped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => {}
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `name=value, name="quoted, \"value\""...`; `None` if malformed.
fn parse_params(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_ascii_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        chars.next_if_eq(&'=')?;
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if name.is_empty() {
            return None;
        }
        out.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 s.3.9.1.
    const RFC7616_SHA256: &str = r#"Digest
       realm="http-auth@example.org",
       qop="auth, auth-int",
       algorithm=SHA-256,
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
    const RFC7616_MD5: &str = r#"Digest
       realm="http-auth@example.org",
       qop="auth, auth-int",
       algorithm=MD5,
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    fn rfc7616_input() -> DigestInput<'static> {
        DigestInput {
            username: "Mufasa",
            password: "Circle of Life",
            method: "GET",
            uri: "/dir/index.html",
            nc: 1,
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        }
    }

    #[test]
    fn rfc7616_md5_vector() {
        let challenge = Challenge::parse(RFC7616_MD5).unwrap();
        assert_eq!(challenge.algorithm, DigestAlgorithm::Md5);
        assert!(challenge.qop_auth);
        assert_eq!(challenge.realm, "http-auth@example.org");
        assert_eq!(response(&challenge, &rfc7616_input()), "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn rfc7616_sha256_vector() {
        let challenge = Challenge::parse(RFC7616_SHA256).unwrap();
        assert_eq!(challenge.algorithm, DigestAlgorithm::Sha256);
        assert_eq!(challenge.opaque.as_deref(), Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"));
        assert_eq!(
            response(&challenge, &rfc7616_input()),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        let header = authorization(&challenge, &rfc7616_input());
        assert_eq!(
            header,
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", uri=\"/dir/index.html\", \
             response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", \
             algorithm=SHA-256, cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", \
             qop=auth, nc=00000001, opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        );
    }

    #[test]
    fn rfc2617_md5_without_qop() {
        // RFC 2617 s.3.5 values, answered RFC 2069 style (no qop):
        // HA1 = MD5("Mufasa:testrealm@host.com:Circle Of Life"),
        // HA2 = MD5("GET:/dir/index.html"), response = MD5(HA1:nonce:HA2).
        let challenge =
            Challenge::parse("Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"")
                .unwrap();
        assert!(!challenge.qop_auth);
        let input = DigestInput {
            username: "Mufasa",
            password: "Circle Of Life",
            method: "GET",
            uri: "/dir/index.html",
            nc: 1,
            cnonce: "0a4f113b",
        };
        let h = |s: &str| DigestAlgorithm::Md5.hash_hex(s);
        let expected = h(&format!(
            "{}:dcd98b7102dd2f0e8b11d0f600bfb0c093:{}",
            h("Mufasa:testrealm@host.com:Circle Of Life"),
            h("GET:/dir/index.html")
        ));
        assert_eq!(response(&challenge, &input), expected);
        assert_eq!(h("Mufasa:testrealm@host.com:Circle Of Life"), "939e7578ed9e3c518a452acee763bce9");
        let header = authorization(&challenge, &input);
        assert!(!header.contains("qop") && !header.contains("nc="), "{header}");
    }

    #[test]
    fn parsing_and_quoting() {
        let c =
            Challenge::parse("digest realm=\"a \\\"q\\\", b\",nonce=n1,algorithm=md5,qop=\"auth\",stale=TRUE").unwrap();
        assert_eq!(c.realm, "a \"q\", b");
        assert_eq!(c.nonce, "n1");
        assert!(c.stale && c.qop_auth);
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(Challenge::parse("Basic realm=\"x\""), Err(ChallengeError::NotDigest));
        assert_eq!(
            Challenge::parse("Digest realm=\"x\", nonce=\"y\", qop=\"auth-int\""),
            Err(ChallengeError::UnsupportedQop("auth-int".into()))
        );
        assert!(matches!(
            Challenge::parse("Digest realm=\"x\", nonce=\"y\", algorithm=SHA-512-256"),
            Err(ChallengeError::UnsupportedAlgorithm(_))
        ));
        assert_eq!(Challenge::parse("Digest nonce=\"y\""), Err(ChallengeError::Missing("realm")));
        let best = Challenge::best([
            "Digest realm=\"r\", nonce=\"1\", algorithm=MD5",
            "Digest realm=\"r\", nonce=\"2\", algorithm=SHA-256",
            "Digest realm=\"r\", nonce=\"3\", algorithm=SHA-512-256",
        ])
        .unwrap();
        assert_eq!(best.nonce, "2");
    }
}
