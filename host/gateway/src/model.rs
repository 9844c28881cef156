//! The CAMARA resources as they travel on the wire (JSON, camelCase).
//!
//! The `#[schema(...)]` constraints are those of the CAMARA files, so that the served OpenAPI
//! document states what [`crate::validate`] enforces; a field kept as a plain `String` where the
//! CAMARA file has an enum is checked by hand, to answer with the code the CAMARA file gives for
//! it (`INVALID_PROTOCOL`, `INVALID_CREDENTIAL`...) rather than a generic parse error.
//!
//! Request members a schema does not name are ignored, as an open JSON schema allows: only the
//! schemas the CAMARA files close (`additionalProperties: false`) refuse them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[schema(as = WrtcSdpDescriptor)]
pub struct SdpDescriptor {
    #[schema(max_length = 65536)]
    pub sdp: String,
}

/// `Address` of webrtc-call-handling (the pattern is [`crate::validate::ADDRESS_PATTERN`]; a unit
/// test of `api::openapi` keeps the two equal).
#[derive(ToSchema)]
#[schema(
    max_length = 256,
    pattern = r"^(tel:\+[1-9][0-9]{4,14}|tel:[0-9*#]{1,15};phone-context=(?:\+[1-9][0-9]{0,14}|[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+)|sip:[A-Za-z0-9_.!%+\-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}|sip:[0-9*#]{1,15};phone-context=(?:\+[1-9][0-9]{0,14}|[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+)@[A-Za-z0-9.-]+\.[A-Za-z]{2,};user=phone|urn:service:sos(?:\.[a-z0-9](?:[a-z0-9\-]{0,30}[a-z0-9])?)*|sip:anonymous@anonymous\.invalid)$"
)]
pub struct Address(pub String);

/// `RegSessionRequest`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RegSessionRequest)]
pub struct RegistrationRequest {
    #[schema(format = "uuid", max_length = 36)]
    pub device_id: String,
    #[schema(format = DateTime, max_length = 64)]
    pub registration_expire_time: Option<String>,
}

/// `RegSessionUpdate`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RegSessionUpdate)]
pub struct RegistrationUpdate {
    #[schema(format = DateTime, max_length = 64)]
    pub registration_expire_time: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RegistrationInformation)]
pub struct RegistrationInfo {
    #[schema(pattern = r"^\+[1-9][0-9]{4,14}$", max_length = 128)]
    pub phone_number: String,
    #[schema(value_type = RegistrationStatus)]
    pub reg_status: &'static str,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub enum RegistrationStatus {
    Registered,
}

/// `RegSessionResponse`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RegSessionResponse)]
pub struct RegistrationResponse {
    #[schema(max_length = 256)]
    pub registration_id: String,
    pub reg_info: RegistrationInfo,
    #[schema(format = DateTime, max_length = 64)]
    pub expires_at: String,
}

/// `MediaSessionCreate`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaSessionCreate {
    #[schema(value_type = Address)]
    pub originator_address: String,
    #[schema(max_length = 256)]
    pub originator_name: Option<String>,
    #[schema(value_type = Address)]
    pub receiver_address: String,
    #[schema(max_length = 256)]
    pub receiver_name: Option<String>,
    pub offer: SdpDescriptor,
    pub call_type: Option<CallType>,
    /// Checked against [`LocationDetails`] by [`crate::validate::location_details`]; kept as JSON
    /// for the mapping plugin.
    #[schema(value_type = Option<LocationDetails>)]
    pub location_details: Option<serde_json::Value>,
    /// Must not be sent on creation; accepted only to refuse it with a clear message.
    #[schema(value_type = Option<SessionStatus>)]
    pub status: Option<String>,
    /// Must not be sent on creation; accepted only to refuse it with a clear message.
    pub answer: Option<SdpDescriptor>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum CallType {
    Regular,
    Emergency,
}

pub use camara_store::SessionStatus;

/// `LocationDetails` (PIDF-LO): what a located call may carry. No member is required.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocationDetails {
    pub shape: Option<LocationShape>,
    pub coordinates: Option<Coordinates>,
    pub method: Option<LocationMethod>,
    pub confidence: Option<LocationConfidence>,
    #[schema(format = DateTime, max_length = 64)]
    pub timestamp: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
pub enum LocationShape {
    Circle,
    Ellipsoid,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum LocationMethod {
    GPS,
    DBH,
    #[serde(rename = "DBH_HELO")]
    #[schema(rename = "DBH_HELO")]
    DbhHelo,
    Other,
}

/// `oneOf` circle or ellipsoid coordinates; which one is decided by
/// [`crate::validate::location_details`] (exactly one must match, as `oneOf` says).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Coordinates {
    Circle(CircleCoordinates),
    Ellipsoid(EllipsoidCoordinates),
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircleCoordinates {
    #[schema(format = Float)]
    pub latitude: f64,
    #[schema(format = Float)]
    pub longitude: f64,
    #[schema(format = Float)]
    pub radius: f64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EllipsoidCoordinates {
    #[schema(format = Float)]
    pub latitude: f64,
    #[schema(format = Float)]
    pub longitude: f64,
    #[schema(format = Float)]
    pub z_axis: f64,
    pub semi_major_axis: f64,
    pub semi_minor_axis: f64,
    pub vertical_axis: f64,
    pub orientation: f64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct LocationConfidence {
    pub pdf: Option<ConfidencePdf>,
    #[schema(minimum = 0, maximum = 100)]
    pub value: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConfidencePdf {
    Normal,
    Uniform,
}

/// `MediaSessionStatusChange`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaSessionStatusChange {
    #[schema(value_type = SessionStatus)]
    pub status: String,
    pub offer: Option<SdpDescriptor>,
    pub answer: Option<SdpDescriptor>,
    #[schema(value_type = Option<LocationDetails>)]
    pub location_details: Option<serde_json::Value>,
}

/// `MediaSessionResponse`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaSessionResponse {
    #[schema(max_length = 256)]
    pub media_session_id: String,
    #[schema(value_type = Address)]
    pub originator_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub originator_name: Option<String>,
    #[schema(value_type = Address)]
    pub receiver_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub receiver_name: Option<String>,
    pub status: SessionStatus,
    pub offer: SdpDescriptor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<SdpDescriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_type: Option<CallType>,
    /// The location the device gave; echoed by the answer to the creation (not kept for reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<LocationDetails>)]
    pub location_details: Option<serde_json::Value>,
}

/// `AccessTokenCredential`. Its members are read as given and checked in the order of the
/// CAMARA file: an unknown `credentialType` is `INVALID_CREDENTIAL` whatever else is missing,
/// then the required members, then an unknown `accessTokenType` is `INVALID_TOKEN`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AccessTokenCredential)]
pub struct SinkCredential {
    #[schema(value_type = CredentialType)]
    pub credential_type: String,
    #[schema(required = true, max_length = 8192)]
    pub access_token: Option<String>,
    #[schema(required = true, format = DateTime, max_length = 64)]
    pub access_token_expires_utc: Option<String>,
    #[schema(required = true, value_type = AccessTokenType)]
    pub access_token_type: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum CredentialType {
    ACCESSTOKEN,
}

#[derive(ToSchema)]
#[allow(dead_code, non_camel_case_types)]
pub enum AccessTokenType {
    bearer,
}

#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum Protocol {
    HTTP,
}

/// `SubscriptionEventType`: the event types a subscription may ask for
/// ([`crate::notify::SUBSCRIBABLE_TYPES`]).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum SubscriptionEventType {
    #[schema(rename = "org.camaraproject.webrtc-events.v0.session-status")]
    SessionStatus,
    #[schema(rename = "org.camaraproject.webrtc-events.v0.session-invitation")]
    SessionInvitation,
    #[schema(rename = "org.camaraproject.webrtc-events.v0.registration-ends")]
    RegistrationEnds,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WebrtcSubscriptionDetail)]
pub struct SubscriptionDetail {
    #[schema(format = "uuid", max_length = 36)]
    pub device_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Config)]
pub struct SubscriptionConfig {
    pub subscription_detail: SubscriptionDetail,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, max_length = 64)]
    pub subscription_expire_time: Option<String>,
    /// Read as any integer, so that one outside 1..=1000000 is `OUT_OF_RANGE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i32>, format = Int32, minimum = 1, maximum = 1000000)]
    pub subscription_max_events: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_event: Option<bool>,
}

/// `SubscriptionRequest`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionRequest {
    #[schema(value_type = Protocol)]
    pub protocol: String,
    #[schema(format = "uri", pattern = r"^https:\/\/.+$", max_length = 1024)]
    pub sink: String,
    pub sink_credential: Option<SinkCredential>,
    /// One type, or up to three distinct ones where `[api] multi_event_subscriptions` allows.
    #[schema(value_type = Vec<SubscriptionEventType>, min_items = 1, max_items = 3)]
    pub types: Vec<String>,
    pub config: SubscriptionConfig,
    /// `HTTPSubscriptionRequest`'s member: its values are checked; notifications are POSTed with
    /// the gateway's own headers only (`headers` is not copied into them).
    pub protocol_settings: Option<HttpSettings>,
}

/// `HTTPSettings`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(as = HTTPSettings)]
pub struct HttpSettings {
    #[schema(value_type = Option<HashMap<String, String>>)]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    pub method: Option<HttpMethod>,
}

/// The header values of `HTTPSettings` (`maxLength` 512).
pub const MAX_HTTP_SETTINGS_HEADER: usize = 512;

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum HttpMethod {
    POST,
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
    #[schema(format = DateTime, max_length = 64)]
    pub subscription_expire_time: Option<String>,
    pub subscription_detail: Option<SubscriptionDetail>,
}

/// `Subscription` (the credential is never echoed).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Subscription)]
pub struct SubscriptionResponse {
    #[schema(value_type = Protocol)]
    pub protocol: String,
    #[schema(format = "uri", pattern = r"^https:\/\/.+$", max_length = 1024)]
    pub sink: String,
    /// The CAMARA file says `maxItems: 1`; with `[api] multi_event_subscriptions` (the
    /// consolidated subscription of the CAMARA call flows) the requested types, each once.
    #[schema(value_type = Vec<SubscriptionEventType>, min_items = 1, max_items = 3)]
    pub types: Vec<String>,
    pub config: SubscriptionConfig,
    #[schema(max_length = 256)]
    pub id: String,
    #[schema(format = DateTime, max_length = 64)]
    pub starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, max_length = 64)]
    pub expires_at: Option<String>,
    #[schema(value_type = SubscriptionStatus)]
    pub status: &'static str,
}

#[derive(ToSchema)]
#[allow(dead_code, non_camel_case_types, clippy::upper_case_acronyms)]
pub enum SubscriptionStatus {
    ACTIVATION_REQUESTED,
    ACTIVE,
    EXPIRED,
    INACTIVE,
    DELETED,
}

/// `SubscriptionAsync`: the answer to a deletion.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionAsync {
    #[schema(max_length = 256)]
    pub id: String,
}
