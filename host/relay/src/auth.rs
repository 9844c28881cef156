//! Who a device is: the relay asks a [`DeviceAuthenticator`] to turn a bearer access token into a
//! [`DeviceIdentity`]. The gateway plugs in its own verifier; the standalone relay uses
//! [`TokenVerifierAuthenticator`] over `camara-auth`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The subscriber a device acts for, as established from its access token. Channels belong to an
/// identity: only the same subject and phone number may read, delete or connect to them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceIdentity {
    /// The token's subject (`sub`).
    pub subject: String,
    /// The subscriber's phone number, when the token says it.
    pub phone_number: Option<String>,
}

impl DeviceIdentity {
    /// What `max_channels_per_subscriber` counts by: the phone number, else the subject.
    pub(crate) fn subscriber_key(&self) -> &str {
        self.phone_number.as_deref().unwrap_or(&self.subject)
    }
}

/// Verifies a device's access token (without the `Bearer ` prefix). `Err` carries why it was
/// refused; the relay answers `401` with it.
#[async_trait]
pub trait DeviceAuthenticator: Send + Sync {
    async fn authenticate(&self, bearer_token: &str) -> Result<DeviceIdentity, String>;
}

#[async_trait]
impl<T: DeviceAuthenticator + ?Sized> DeviceAuthenticator for Arc<T> {
    async fn authenticate(&self, bearer_token: &str) -> Result<DeviceIdentity, String> {
        (**self).authenticate(bearer_token).await
    }
}

/// A [`DeviceAuthenticator`] over [`camara_auth::TokenVerifier`]: the subject is `sub` (required),
/// the phone number the string claim named `phone_number_claim` (default `phone_number`).
pub struct TokenVerifierAuthenticator {
    verifier: Arc<camara_auth::TokenVerifier>,
    phone_number_claim: String,
}

impl TokenVerifierAuthenticator {
    pub fn new(verifier: Arc<camara_auth::TokenVerifier>, phone_number_claim: impl Into<String>) -> Self {
        TokenVerifierAuthenticator { verifier, phone_number_claim: phone_number_claim.into() }
    }
}

#[async_trait]
impl DeviceAuthenticator for TokenVerifierAuthenticator {
    async fn authenticate(&self, bearer_token: &str) -> Result<DeviceIdentity, String> {
        let token = self.verifier.verify(bearer_token).await.map_err(|e| e.to_string())?;
        let subject = token.subject.filter(|s| !s.is_empty()).ok_or("the token has no subject (sub)")?;
        let phone_number = match token.claims.get(&self.phone_number_claim) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(p)) if !p.is_empty() => Some(p.clone()),
            Some(_) => return Err(format!("the token's {} claim is not a phone number", self.phone_number_claim)),
        };
        Ok(DeviceIdentity { subject, phone_number })
    }
}
