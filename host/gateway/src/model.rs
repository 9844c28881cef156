//! The CAMARA resources as they travel on the wire (JSON, camelCase).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[schema(as = WrtcSdpDescriptor)]
pub struct SdpDescriptor {
    pub sdp: String,
}

/// `RegSessionRequest` / `RegSessionUpdate`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = RegSessionRequest)]
pub struct RegistrationRequest {
    pub device_id: String,
    pub registration_expire_time: Option<String>,
}

/// `RegSessionUpdate`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = RegSessionUpdate)]
pub struct RegistrationUpdate {
    pub registration_expire_time: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RegistrationInformation)]
pub struct RegistrationInfo {
    pub phone_number: String,
    pub reg_status: &'static str,
}

/// `RegSessionResponse`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RegSessionResponse)]
pub struct RegistrationResponse {
    pub registration_id: String,
    pub reg_info: RegistrationInfo,
    pub expires_at: String,
}

/// `MediaSessionCreate`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MediaSessionCreate {
    pub originator_address: String,
    pub originator_name: Option<String>,
    pub receiver_address: String,
    pub receiver_name: Option<String>,
    pub offer: SdpDescriptor,
    pub call_type: Option<CallType>,
    pub location_details: Option<serde_json::Value>,
    /// Must not be sent on creation; accepted only to refuse it with a clear message.
    pub status: Option<String>,
    pub answer: Option<SdpDescriptor>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum CallType {
    Regular,
    Emergency,
}

/// `MediaSessionStatusChange`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MediaSessionStatusChange {
    pub status: String,
    pub offer: Option<SdpDescriptor>,
    pub answer: Option<SdpDescriptor>,
    pub location_details: Option<serde_json::Value>,
}

/// `MediaSessionResponse`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaSessionResponse {
    pub media_session_id: String,
    pub originator_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub originator_name: Option<String>,
    pub receiver_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_name: Option<String>,
    pub status: String,
    pub offer: SdpDescriptor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<SdpDescriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_type: Option<CallType>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AccessTokenCredential)]
pub struct SinkCredential {
    pub credential_type: String,
    pub access_token: String,
    pub access_token_expires_utc: String,
    pub access_token_type: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WebrtcSubscriptionDetail)]
pub struct SubscriptionDetail {
    pub device_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Config)]
pub struct SubscriptionConfig {
    pub subscription_detail: SubscriptionDetail,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_expire_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_max_events: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_event: Option<bool>,
}

/// `SubscriptionRequest`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionRequest {
    pub protocol: String,
    pub sink: String,
    pub sink_credential: Option<SinkCredential>,
    pub types: Vec<String>,
    pub config: SubscriptionConfig,
}

/// `SubscriptionUpdateRequest`. The call flows also send `config.subscriptionDetail`; it is
/// accepted when it names the subscription's own device.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = SubscriptionUpdateRequest)]
pub struct SubscriptionUpdate {
    pub sink_credential: Option<SinkCredential>,
    pub config: Option<SubscriptionUpdateConfigWithDetail>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = SubscriptionUpdateConfig)]
pub struct SubscriptionUpdateConfigWithDetail {
    pub subscription_expire_time: Option<String>,
    pub subscription_detail: Option<SubscriptionDetail>,
}

/// `Subscription` (the credential is never echoed).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Subscription)]
pub struct SubscriptionResponse {
    pub protocol: String,
    pub sink: String,
    pub types: Vec<String>,
    pub config: SubscriptionConfig,
    pub id: String,
    pub starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub status: &'static str,
}
