//! The signing key: an ES256 (P-256) key generated at start, its public half as a JWK, and
//! signing and checking of the JWTs this server issues.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::SecretKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use rand::RngCore;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::OAuthError;

pub(crate) struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Value,
}

impl SigningKey {
    pub(crate) fn generate() -> Result<Self, OAuthError> {
        let key_error = |m: String| OAuthError::Key(m);
        // Not every 32-byte string is a valid scalar (zero, or above the group order); a retry is
        // astronomically rare but costs nothing.
        let secret = (0..16)
            .find_map(|_| {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                SecretKey::from_slice(&bytes).ok()
            })
            .ok_or_else(|| key_error("no valid P-256 scalar from the random generator".into()))?;
        let der = secret.to_pkcs8_der().map_err(|e| key_error(format!("PKCS#8 encoding: {e}")))?;
        let point = secret.public_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(key_error("the public key has no affine coordinates".into()));
        };
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        // RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order.
        let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint.as_bytes()));
        let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|e| key_error(e.to_string()))?;
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"});
        let key = SigningKey { kid, encoding: EncodingKey::from_ec_der(der.as_bytes()), decoding, jwk };
        // Sign and check once now, so that signing later cannot fail on the key.
        let probe = key.sign("JWT", &json!({"probe": true})).map_err(key_error)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        key.verify(&probe, "JWT", validation).map_err(key_error)?;
        Ok(key)
    }

    pub(crate) fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// A compact JWS over `claims` with `typ` (RFC 9068 `at+jwt` for access tokens).
    pub(crate) fn sign(&self, typ: &str, claims: &impl Serialize) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.into());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| format!("signing a token: {e}"))
    }

    /// The claims of `token` when it is a JWT of type `typ` signed by this key and passing
    /// `validation` (whose algorithm must be ES256).
    pub(crate) fn verify(&self, token: &str, typ: &str, validation: Validation) -> Result<Map<String, Value>, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(&self.kid) {
            return Err("not signed by this server's key".into());
        }
        if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(typ)) {
            return Err(format!("not a token of type {typ}"));
        }
        jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }
}
