//! Every schema constraint of the three CAMARA APIs, one row at a time, against the real HTTP
//! server with really signed tokens: for each operation a valid request, and mutations of it
//! (a required field missing, a wrong type, a format, a length, an enum, an identifier that is
//! unknown or someone else's, a header, a content type) with the status and CAMARA `code` the
//! contract gives for it. Every answer must be a CAMARA `ErrorInfo` with the request's
//! `x-correlator` echoed.
//!
//! What the rows rest on: the YAML files of `../shared/spec/camara-webrtc/api/` (their schemas,
//! their error responses and codes), `Generic400`/`415`/`422` of `CAMARA_common.yaml`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use camara_gateway::config::SipTransportName;
use camara_gateway::store::{Direction, MediaSession};
use camara_gateway_tests::*;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

const REG: &str = "/webrtc-registration/v0.3/sessions";
const CALLS: &str = "/webrtc-call-handling/v0.3/sessions";
const SUBS: &str = "/webrtc-events/v0.2/subscriptions";
const REGISTRATION_ENDS: &str = "org.camaraproject.webrtc-events.v0.registration-ends";
/// Bob's device, registered by Bob only.
const BOB_DEVICE: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
/// A second device of Alice's, registered to be deleted by the valid deletion row.
const SPARE_DEVICE: &str = "9b2f6a3e-1c4d-4e8f-a0b1-c2d3e4f5a6b7";
/// A device nobody registered.
const UNREGISTERED_DEVICE: &str = "0e6f1c2a-5b3d-4f7e-8a9b-0c1d2e3f4a5b";
/// A device registered by the row that sends an unknown member.
const IGNORED_MEMBER_DEVICE: &str = "5c1d9e2a-7b3f-4a6e-9d8c-1e2f3a4b5c6d";
/// `ErrorInfo.message` has `maxLength: 512`.
const MAX_MESSAGE_CHARS: usize = 512;

/// The operations of the three APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    CreateRegistration,
    GetRegistrationsByDeviceId,
    GetRegistrationById,
    UpdateRegistrationById,
    DeleteRegistrationById,
    CreateSession,
    GetSessionDetailsById,
    UpdateSessionStatus,
    DeleteSessionById,
    CreateSubscription,
    RetrieveSubscriptionList,
    RetrieveSubscription,
    UpdateSubscription,
    DeleteSubscription,
}

use Op::*;

const ALL_OPS: [Op; 14] = [
    CreateRegistration,
    GetRegistrationsByDeviceId,
    GetRegistrationById,
    UpdateRegistrationById,
    DeleteRegistrationById,
    CreateSession,
    GetSessionDetailsById,
    UpdateSessionStatus,
    DeleteSessionById,
    CreateSubscription,
    RetrieveSubscriptionList,
    RetrieveSubscription,
    UpdateSubscription,
    DeleteSubscription,
];

impl Op {
    fn method(self) -> &'static str {
        match self {
            CreateRegistration | CreateSession | CreateSubscription => "POST",
            GetRegistrationsByDeviceId
            | GetRegistrationById
            | GetSessionDetailsById
            | RetrieveSubscriptionList
            | RetrieveSubscription => "GET",
            UpdateRegistrationById | UpdateSessionStatus | UpdateSubscription => "PUT",
            DeleteRegistrationById | DeleteSessionById | DeleteSubscription => "DELETE",
        }
    }
}

/// The identifiers the rows work on: Alice's own resources, Bob's, and spares for deletion.
struct Fixture {
    alice: String,
    bob: String,
    alice_registration: String,
    spare_registration: String,
    bob_registration: String,
    alice_subscription: String,
    spare_subscription: String,
    bob_subscription: String,
    alice_session: String,
    bob_session: String,
    sink: String,
    /// A device id no row has registered yet, for the valid registration.
    fresh_device: String,
}

/// A request body as sent.
#[derive(Debug, Clone)]
enum Body {
    None,
    Json(Value),
    /// Content type (none when `None`) and bytes as they are.
    Raw(Option<&'static str>, String),
}

#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    token: Option<String>,
    body: Body,
}

/// Whose token a row sends.
#[derive(Debug, Clone)]
enum Who {
    Nobody,
    Bob,
    /// Alice with only these scopes.
    AliceScoped(&'static str),
}

/// What a row changes in the valid request of its operation.
#[derive(Debug, Clone)]
enum Change {
    /// Nothing: the valid request.
    Valid,
    /// Sets the member at a JSON pointer of the body (creating the parents).
    Set(&'static str, Value),
    /// Several [`Change::Set`]s at once.
    SetAll(Vec<(&'static str, Value)>),
    /// Removes the member at a JSON pointer of the body.
    Remove(&'static str),
    /// Another body altogether.
    Body(Body),
    /// Sets a header (or replaces it).
    Header(&'static str, String),
    /// Removes a header.
    NoHeader(&'static str),
    /// Another identifier in the path.
    Id(String),
    /// Another path altogether.
    Path(String),
    /// Another query string (without `?`).
    Query(&'static str),
    /// Another token.
    Token(Who),
    /// Another method on the same path.
    Method(&'static str),
    /// Several changes, in order.
    Many(Vec<Change>),
}

struct Case {
    op: Op,
    what: &'static str,
    change: Change,
    status: u16,
    /// The CAMARA code of an error; empty for a success.
    code: &'static str,
}

fn case(op: Op, what: &'static str, change: Change, status: u16, code: &'static str) -> Case {
    Case { op, what, change, status, code }
}

fn in_seconds(s: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(s)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A valid RFC 3339 date-time of 65 characters.
fn too_long_date_time() -> String {
    format!("2099-01-01T00:00:00.{}Z", "0".repeat(44))
}

fn long(n: usize) -> String {
    "a".repeat(n)
}

fn valid_credential() -> Value {
    json!({"credentialType": "ACCESSTOKEN", "accessToken": "sink-token",
           "accessTokenExpiresUtc": "2099-12-31T23:59:59.999Z", "accessTokenType": "bearer"})
}

fn location() -> Value {
    json!({"shape": "Circle", "coordinates": {"latitude": 47.6062, "longitude": -122.3321, "radius": 35},
           "method": "GPS", "confidence": {"pdf": "normal", "value": 92}, "timestamp": "2025-10-06T19:31:25Z"})
}

/// The valid request of `op`.
fn base(op: Op, fx: &Fixture) -> Request {
    let id = match op {
        GetRegistrationById | UpdateRegistrationById => fx.alice_registration.clone(),
        DeleteRegistrationById => fx.spare_registration.clone(),
        GetSessionDetailsById | UpdateSessionStatus | DeleteSessionById => fx.alice_session.clone(),
        RetrieveSubscription | UpdateSubscription => fx.alice_subscription.clone(),
        DeleteSubscription => fx.spare_subscription.clone(),
        _ => String::new(),
    };
    let path = match op {
        CreateRegistration => REG.to_string(),
        GetRegistrationsByDeviceId => format!("{REG}?deviceId={DEVICE_ID}"),
        GetRegistrationById | UpdateRegistrationById | DeleteRegistrationById => format!("{REG}/{id}"),
        CreateSession => CALLS.to_string(),
        GetSessionDetailsById | DeleteSessionById => format!("{CALLS}/{id}"),
        UpdateSessionStatus => format!("{CALLS}/{id}/status"),
        CreateSubscription | RetrieveSubscriptionList => SUBS.to_string(),
        RetrieveSubscription | UpdateSubscription | DeleteSubscription => format!("{SUBS}/{id}"),
    };
    let body = match op {
        CreateRegistration => {
            Body::Json(json!({"deviceId": fx.fresh_device, "registrationExpireTime": in_seconds(3600)}))
        }
        UpdateRegistrationById => Body::Json(json!({"registrationExpireTime": in_seconds(1800)})),
        CreateSession => Body::Json(json!({
            "originatorAddress": format!("tel:{ALICE}"), "originatorName": "Alice",
            "receiverAddress": format!("tel:{BOB}"), "receiverName": "Bob",
            "offer": {"sdp": WEBRTC_OFFER}, "callType": "REGULAR", "locationDetails": location(),
        })),
        UpdateSessionStatus => Body::Json(json!({"status": "Hold"})),
        CreateSubscription => Body::Json(json!({
            "protocol": "HTTP", "sink": fx.sink, "sinkCredential": valid_credential(),
            "types": [SESSION_STATUS, SESSION_INVITATION],
            "config": {"subscriptionDetail": {"deviceId": DEVICE_ID}, "subscriptionExpireTime": in_seconds(3600)},
        })),
        UpdateSubscription => Body::Json(json!({
            "sinkCredential": valid_credential(), "config": {"subscriptionExpireTime": in_seconds(7200)},
        })),
        _ => Body::None,
    };
    let mut headers = vec![("x-correlator".to_string(), "b4333c46-49c0-4f62-80d7-f0ef930f1c46".to_string())];
    if op == CreateSession {
        headers.push(("registrationId".into(), fx.alice_registration.clone()));
    }
    Request { method: op.method(), path, headers, token: Some(fx.alice.clone()), body }
}

fn set_pointer(target: &mut Value, pointer: &str, value: Value) {
    let (parent, name) = pointer.rsplit_once('/').expect("a JSON pointer");
    let mut node = target;
    for part in parent.split('/').skip(1) {
        if !node.get(part).is_some_and(Value::is_object) {
            node[part] = json!({});
        }
        node = &mut node[part];
    }
    node[name] = value;
}

/// The JSON body of a request, to change it.
fn json_body(request: &mut Request) -> &mut Value {
    match &mut request.body {
        Body::Json(v) => v,
        other => panic!("no JSON body to change: {other:?}"),
    }
}

fn apply(op: Op, change: &Change, fx: &Fixture) -> Request {
    apply_to(base(op, fx), op, change, fx)
}

fn apply_to(mut request: Request, op: Op, change: &Change, fx: &Fixture) -> Request {
    match change {
        Change::Valid => {}
        Change::Set(pointer, value) => set_pointer(json_body(&mut request), pointer, value.clone()),
        Change::SetAll(changes) => {
            for (pointer, value) in changes {
                set_pointer(json_body(&mut request), pointer, value.clone());
            }
        }
        Change::Remove(pointer) => {
            let body = json_body(&mut request);
            let (parent, name) = pointer.rsplit_once('/').unwrap();
            let parent = if parent.is_empty() { Some(body) } else { body.pointer_mut(parent) };
            parent.and_then(Value::as_object_mut).expect("the parent exists").remove(name);
        }
        Change::Body(body) => request.body = body.clone(),
        Change::Header(name, value) => {
            request.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            request.headers.push((name.to_string(), value.clone()));
        }
        Change::NoHeader(name) => request.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name)),
        Change::Id(id) => {
            let current = base(op, fx);
            let old = current.path.split('/').nth(4).expect("an identifier in the path").to_string();
            request.path = current.path.replacen(&format!("/{old}"), &format!("/{id}"), 1);
        }
        Change::Path(path) => request.path = path.clone(),
        Change::Query(query) => {
            let path = request.path.split('?').next().unwrap().to_string();
            request.path = if query.is_empty() { path } else { format!("{path}?{query}") };
        }
        Change::Token(Who::Nobody) => request.token = None,
        Change::Token(Who::Bob) => request.token = Some(fx.bob.clone()),
        Change::Token(Who::AliceScoped(scope)) => request.token = Some(tokens::sign(&tokens::claims(ALICE, scope))),
        Change::Method(method) => request.method = method,
        Change::Many(changes) => {
            for change in changes {
                request = apply_to(request, op, change, fx);
            }
        }
    }
    request
}

/// The rows every operation has: no token, a token of another subscriber where it matters, and
/// `x-correlator` outside its pattern.
#[rustfmt::skip]
fn common_rows(op: Op) -> Vec<Case> {
    vec![
        case(op, "no access token", Change::Token(Who::Nobody), 401, "UNAUTHENTICATED"),
        case(op, "x-correlator with a space (outside its pattern)", Change::Header("x-correlator", "has space".into()), 400, "INVALID_ARGUMENT"),
        case(op, "x-correlator of 257 characters (maxLength 256)", Change::Header("x-correlator", long(257)), 400, "INVALID_ARGUMENT"),
        case(op, "a token without the operation's scope", Change::Token(Who::AliceScoped("openid")), 403, "PERMISSION_DENIED"),
    ]
}

/// The rows of an operation on one resource whose path lacks the identifier (`path`): CAMARA's
/// tests expect 400, not 404 or 405.
#[rustfmt::skip]
fn missing_id_rows(op: Op, path: String) -> Vec<Case> {
    vec![
        case(op, "no identifier in the path", Change::Path(path.clone()), 400, "INVALID_ARGUMENT"),
        case(op, "no identifier in the path and no token", Change::Many(vec![Change::Path(path), Change::Token(Who::Nobody)]), 401, "UNAUTHENTICATED"),
    ]
}

/// The rows of an operation on one resource: its identifier unknown, another subscriber's,
/// longer than the schema allows.
#[rustfmt::skip]
fn id_rows(op: Op, fx: &Fixture) -> Vec<Case> {
    let theirs = match op {
        GetRegistrationById | UpdateRegistrationById | DeleteRegistrationById => fx.bob_registration.clone(),
        GetSessionDetailsById | UpdateSessionStatus | DeleteSessionById => fx.bob_session.clone(),
        _ => fx.bob_subscription.clone(),
    };
    vec![
        case(op, "unknown identifier", Change::Id(uuid::Uuid::new_v4().to_string()), 404, "NOT_FOUND"),
        case(op, "another subscriber's identifier", Change::Id(theirs), 404, "NOT_FOUND"),
        case(op, "identifier of 257 characters (maxLength 256)", Change::Id(long(257)), 400, "INVALID_ARGUMENT"),
        case(op, "identifier that is not UTF-8 once decoded", Change::Id("%FF%FE".into()), 400, "INVALID_ARGUMENT"),
        case(op, "the caller's identifier with another subscriber's token", Change::Token(Who::Bob), 404, "NOT_FOUND"),
    ]
}

/// The rows of an operation with a JSON body.
#[rustfmt::skip]
fn body_rows(op: Op) -> Vec<Case> {
    let raw = |content_type: Option<&'static str>, text: &str| Change::Body(Body::Raw(content_type, text.to_string()));
    vec![
        case(op, "body as text/plain", raw(Some("text/plain"), "{}"), 415, "UNSUPPORTED_MEDIA_TYPE"),
        case(op, "body without a content type", raw(None, "{}"), 415, "UNSUPPORTED_MEDIA_TYPE"),
        case(op, "malformed JSON", raw(Some("application/json"), "{\"a\":"), 400, "INVALID_ARGUMENT"),
        case(op, "a JSON array instead of an object", Change::Body(Body::Json(json!([]))), 400, "INVALID_ARGUMENT"),
        case(op, "no access token and a malformed body (authentication first)", Change::Many(vec![Change::Token(Who::Nobody), raw(Some("application/json"), "{\"a\":")]), 401, "UNAUTHENTICATED"),
    ]
}

#[rustfmt::skip]
fn rows(fx: &Fixture) -> Vec<Case> {
    let mut rows = Vec::new();
    let s = |v: &str| json!(v);

    // webrtc-registration ------------------------------------------------------------------
    let op = CreateRegistration;
    rows.extend(common_rows(op));
    rows.extend(body_rows(op));
    rows.extend([
        case(op, "no body (deviceId is required)", Change::Body(Body::None), 400, "INVALID_ARGUMENT"),
        case(op, "deviceId missing", Change::Remove("/deviceId"), 400, "INVALID_ARGUMENT"),
        case(op, "deviceId null", Change::Set("/deviceId", Value::Null), 400, "INVALID_ARGUMENT"),
        case(op, "deviceId a number", Change::Set("/deviceId", json!(42)), 400, "INVALID_ARGUMENT"),
        case(op, "deviceId not a UUID", Change::Set("/deviceId", s("phone-1")), 400, "INVALID_ARGUMENT"),
        case(op, "deviceId a UUID without hyphens", Change::Set("/deviceId", s("7d4448409dc011d1b2455ffdce74fad2")), 400, "INVALID_ARGUMENT"),
        case(op, "deviceId of 37 characters (maxLength 36)", Change::Set("/deviceId", s("7d444840-9dc0-11d1-b245-5ffdce74fad2a")), 400, "INVALID_ARGUMENT"),
        case(op, "registrationExpireTime not a date-time", Change::Set("/registrationExpireTime", s("tomorrow")), 400, "INVALID_ARGUMENT"),
        case(op, "registrationExpireTime without a time zone", Change::Set("/registrationExpireTime", s("2099-01-01T00:00:00")), 400, "INVALID_ARGUMENT"),
        case(op, "registrationExpireTime a date only", Change::Set("/registrationExpireTime", s("2099-01-01")), 400, "INVALID_ARGUMENT"),
        case(op, "registrationExpireTime a number", Change::Set("/registrationExpireTime", json!(1_700_000_000)), 400, "INVALID_ARGUMENT"),
        case(op, "registrationExpireTime of 65 characters (maxLength 64)", Change::Set("/registrationExpireTime", s(&too_long_date_time())), 400, "INVALID_ARGUMENT"),
        case(op, "registrationExpireTime in the past", Change::Set("/registrationExpireTime", s("2001-01-01T00:00:00Z")), 400, "OUT_OF_RANGE"),
        case(op, "registrationExpireTime below the minimum lifetime", Change::Set("/registrationExpireTime", s(&in_seconds(10))), 400, "OUT_OF_RANGE"),
        case(op, "deviceId already registered by this subscriber", Change::Set("/deviceId", s(DEVICE_ID)), 409, "ALREADY_EXISTS"),
        case(op, "deviceId already registered, in upper case (the same UUID)", Change::Set("/deviceId", s(&DEVICE_ID.to_uppercase())), 409, "ALREADY_EXISTS"),
        case(op, "deviceId of 10,000 characters (the message quotes it short)", Change::Set("/deviceId", s(&long(10_000))), 400, "INVALID_ARGUMENT"),
        case(op, "an unknown member (ignored: the schema is open)", Change::SetAll(vec![("/deviceId", s(IGNORED_MEMBER_DEVICE)), ("/clientCorrelator", s("x"))]), 201, ""),
        case(op, "valid", Change::Valid, 201, ""),
    ]);

    let op = GetRegistrationsByDeviceId;
    rows.extend(common_rows(op));
    rows.extend([
        case(op, "deviceId missing", Change::Query(""), 400, "INVALID_ARGUMENT"),
        case(op, "deviceId empty", Change::Query("deviceId="), 400, "INVALID_ARGUMENT"),
        case(op, "deviceId not a UUID", Change::Query("deviceId=phone-1"), 400, "INVALID_ARGUMENT"),
        case(op, "deviceId of 37 characters (maxLength 36)", Change::Query("deviceId=7d444840-9dc0-11d1-b245-5ffdce74fad2a"), 400, "INVALID_ARGUMENT"),
        case(op, "deviceId given twice", Change::Query("deviceId=7d444840-9dc0-11d1-b245-5ffdce74fad2&deviceId=3fa85f64-5717-4562-b3fc-2c963f66afa6", ), 400, "INVALID_ARGUMENT"),
        case(op, "a device without registrations (an empty list)", Change::Query("deviceId=0e6f1c2a-5b3d-4f7e-8a9b-0c1d2e3f4a5b"), 200, ""),
        case(op, "the Bearer scheme in upper case (RFC 7235: case-insensitive)", Change::Many(vec![Change::Token(Who::Nobody), Change::Header("authorization", format!("BEARER {}", fx.alice))]), 200, ""),
        case(op, "a token that is not a JWT (invalid_token)", Change::Many(vec![Change::Token(Who::Nobody), Change::Header("authorization", "Bearer not-a-jwt".into())]), 401, "UNAUTHENTICATED"),
        case(op, "another scheme", Change::Many(vec![Change::Token(Who::Nobody), Change::Header("authorization", format!("Basic {}", fx.alice))]), 401, "UNAUTHENTICATED"),
        case(op, "valid", Change::Valid, 200, ""),
    ]);

    let op = GetRegistrationById;
    rows.extend(common_rows(op));
    rows.extend(id_rows(op, fx));
    rows.extend(missing_id_rows(op, format!("{REG}/")));
    rows.push(case(op, "valid", Change::Valid, 200, ""));

    let op = UpdateRegistrationById;
    rows.extend(common_rows(op));
    rows.extend(id_rows(op, fx));
    rows.extend(body_rows(op));
    rows.extend([
        case(op, "registrationExpireTime not a date-time", Change::Set("/registrationExpireTime", s("soon")), 400, "INVALID_ARGUMENT"),
        case(op, "registrationExpireTime without a time zone", Change::Set("/registrationExpireTime", s("2099-01-01T00:00:00")), 400, "INVALID_ARGUMENT"),
        case(op, "registrationExpireTime a boolean", Change::Set("/registrationExpireTime", json!(true)), 400, "INVALID_ARGUMENT"),
        case(op, "registrationExpireTime of 65 characters (maxLength 64)", Change::Set("/registrationExpireTime", s(&too_long_date_time())), 400, "INVALID_ARGUMENT"),
        case(op, "registrationExpireTime in the past", Change::Set("/registrationExpireTime", s("2001-01-01T00:00:00Z")), 400, "OUT_OF_RANGE"),
        case(op, "registrationExpireTime null (no schema is nullable)", Change::Set("/registrationExpireTime", Value::Null), 400, "INVALID_ARGUMENT"),
        case(op, "no body (the body is optional: default lifetime)", Change::Body(Body::None), 200, ""),
        case(op, "an empty body declared application/json (no body)", Change::Body(Body::Raw(Some("application/json"), String::new())), 200, ""),
        case(op, "an unknown member (ignored: the schema is open)", Change::Set("/clientCorrelator", s("x")), 200, ""),
        case(op, "an empty object (default lifetime)", Change::Body(Body::Json(json!({}))), 200, ""),
        case(op, "registrationExpireTime past the maximum (capped)", Change::Set("/registrationExpireTime", s("2999-01-01T00:00:00+09:00")), 200, ""),
        case(op, "valid", Change::Valid, 200, ""),
    ]);

    let op = DeleteRegistrationById;
    rows.extend(common_rows(op));
    rows.extend(id_rows(op, fx));
    rows.extend(missing_id_rows(op, REG.into()));
    rows.extend(missing_id_rows(op, format!("{REG}/")));
    rows.extend([
        case(op, "a method the path does not have", Change::Method("PATCH"), 405, "METHOD_NOT_ALLOWED"),
        case(op, "valid", Change::Valid, 204, ""),
    ]);

    // webrtc-call-handling -----------------------------------------------------------------
    let op = CreateSession;
    rows.extend(common_rows(op));
    rows.extend(body_rows(op));
    rows.extend([
        case(op, "no body", Change::Body(Body::None), 400, "INVALID_ARGUMENT"),
        case(op, "an empty body declared application/json (the body is required)", Change::Body(Body::Raw(Some("application/json"), String::new())), 400, "INVALID_ARGUMENT"),
        case(op, "clientCorrelator, as in CAMARA's own success payload (ignored)", Change::Set("/clientCorrelator", s("x")), 503, "UNAVAILABLE"),
        case(op, "registrationId header missing", Change::NoHeader("registrationId"), 400, "INVALID_ARGUMENT"),
        case(op, "registrationId header empty", Change::Header("registrationId", String::new()), 400, "INVALID_ARGUMENT"),
        case(op, "registrationId header of 257 characters (maxLength 256)", Change::Header("registrationId", long(257)), 400, "INVALID_ARGUMENT"),
        case(op, "registrationId unknown (an argument: createSession has no 404)", Change::Header("registrationId", uuid::Uuid::new_v4().to_string()), 400, "INVALID_ARGUMENT"),
        case(op, "registrationId of another subscriber", Change::Header("registrationId", fx.bob_registration.clone()), 400, "INVALID_ARGUMENT"),
        case(op, "originatorAddress missing", Change::Remove("/originatorAddress"), 400, "INVALID_ARGUMENT"),
        case(op, "originatorAddress a number", Change::Set("/originatorAddress", json!(818000000001u64)), 400, "INVALID_ARGUMENT"),
        case(op, "originatorAddress tel without +", Change::Set("/originatorAddress", s("tel:818000000001")), 400, "INVALID_ARGUMENT"),
        case(op, "originatorAddress tel with a leading 0", Change::Set("/originatorAddress", s("tel:+0818000000001")), 400, "INVALID_ARGUMENT"),
        case(op, "originatorAddress tel too short", Change::Set("/originatorAddress", s("tel:+8180")), 400, "INVALID_ARGUMENT"),
        case(op, "originatorAddress tel too long", Change::Set("/originatorAddress", s("tel:+8180000000012345")), 400, "INVALID_ARGUMENT"),
        case(op, "originatorAddress mailto", Change::Set("/originatorAddress", s("mailto:alice@example.com")), 400, "INVALID_ARGUMENT"),
        case(op, "originatorAddress sip without a domain", Change::Set("/originatorAddress", s("sip:alice@localhost")), 400, "INVALID_ARGUMENT"),
        case(op, "originatorAddress a bare number", Change::Set("/originatorAddress", s("+818000000001")), 400, "INVALID_ARGUMENT"),
        case(op, "originatorAddress of another subscriber", Change::Set("/originatorAddress", s(&format!("tel:{BOB}"))), 403, "INVALID_TOKEN_CONTEXT"),
        case(op, "receiverAddress missing", Change::Remove("/receiverAddress"), 400, "INVALID_ARGUMENT"),
        case(op, "receiverAddress outside the pattern", Change::Set("/receiverAddress", s("tel:12")), 400, "INVALID_ARGUMENT"),
        case(op, "receiverAddress sip user=phone without phone-context", Change::Set("/receiverAddress", s("sip:0312345678@example.com;user=phone")), 400, "INVALID_ARGUMENT"),
        case(op, "receiverAddress urn:service:sos with an uppercase service", Change::Set("/receiverAddress", s("urn:service:sos.Police")), 400, "INVALID_ARGUMENT"),
        case(op, "receiverAddress of 257 characters (maxLength 256)", Change::Set("/receiverAddress", s(&format!("sip:{}@example.com", long(241)))), 400, "INVALID_ARGUMENT"),
        case(op, "receiverAddress the anonymous address", Change::Set("/receiverAddress", s("sip:anonymous@anonymous.invalid")), 400, "INVALID_ARGUMENT"),
        case(op, "originatorName a number", Change::Set("/originatorName", json!(1)), 400, "INVALID_ARGUMENT"),
        case(op, "locationDetails.timestamp null (no schema is nullable)", Change::Set("/locationDetails/timestamp", Value::Null), 400, "INVALID_ARGUMENT"),
        case(op, "originatorName of 257 characters (maxLength 256)", Change::Set("/originatorName", s(&long(257))), 400, "INVALID_ARGUMENT"),
        case(op, "receiverName of 257 characters (maxLength 256)", Change::Set("/receiverName", s(&long(257))), 400, "INVALID_ARGUMENT"),
        case(op, "offer missing", Change::Remove("/offer"), 400, "INVALID_ARGUMENT"),
        case(op, "offer a string", Change::Set("/offer", s(WEBRTC_OFFER)), 400, "INVALID_ARGUMENT"),
        case(op, "offer.sdp missing", Change::Set("/offer", json!({})), 400, "INVALID_ARGUMENT"),
        case(op, "offer.sdp not SDP", Change::Set("/offer/sdp", s("hello")), 400, "INVALID_ARGUMENT"),
        case(op, "offer.sdp of 65537 characters (maxLength 65536)", Change::Set("/offer/sdp", s(&format!("v=0\r\n{}", long(65532)))), 400, "INVALID_ARGUMENT"),
        case(op, "callType outside its enum", Change::Set("/callType", s("URGENT")), 400, "INVALID_ARGUMENT"),
        case(op, "callType lowercase", Change::Set("/callType", s("regular")), 400, "INVALID_ARGUMENT"),
        case(op, "status sent on creation (SHALL NOT be included)", Change::Set("/status", s("Initial")), 400, "INVALID_ARGUMENT"),
        case(op, "answer sent on creation (MUST NOT be present)", Change::Set("/answer", json!({"sdp": WEBRTC_OFFER})), 400, "INVALID_ARGUMENT"),
        case(op, "locationDetails a string", Change::Set("/locationDetails", s("Tokyo")), 400, "INVALID_ARGUMENT"),
        case(op, "locationDetails.shape outside its enum", Change::Set("/locationDetails/shape", s("Square")), 400, "INVALID_ARGUMENT"),
        case(op, "locationDetails.method outside its enum", Change::Set("/locationDetails/method", s("WIFI")), 400, "INVALID_ARGUMENT"),
        case(op, "locationDetails.coordinates neither circle nor ellipsoid", Change::Set("/locationDetails/coordinates", json!({"latitude": 1.0, "longitude": 2.0})), 400, "INVALID_ARGUMENT"),
        case(op, "locationDetails.coordinates.latitude a string", Change::Set("/locationDetails/coordinates/latitude", s("north")), 400, "INVALID_ARGUMENT"),
        case(op, "locationDetails.confidence.pdf outside its enum", Change::Set("/locationDetails/confidence/pdf", s("gaussian")), 400, "INVALID_ARGUMENT"),
        case(op, "locationDetails.confidence.value above 100", Change::Set("/locationDetails/confidence/value", json!(101)), 400, "OUT_OF_RANGE"),
        case(op, "locationDetails.confidence.value below 0", Change::Set("/locationDetails/confidence/value", json!(-1)), 400, "OUT_OF_RANGE"),
        case(op, "locationDetails.timestamp not a date-time", Change::Set("/locationDetails/timestamp", s("now")), 400, "INVALID_ARGUMENT"),
        case(op, "valid, with an ellipsoid location (no SIP next hop here: the network side is unavailable)", Change::Set("/locationDetails/coordinates", json!({"latitude": 47.6, "longitude": -122.3, "zAxis": 10.0, "semiMajorAxis": 20.0, "semiMinorAxis": 10.0, "verticalAxis": 5.0, "orientation": 45.0}), ), 503, "UNAVAILABLE"),
        case(op, "valid (no SIP next hop here: the network side is unavailable)", Change::Valid, 503, "UNAVAILABLE"),
    ]);

    let op = GetSessionDetailsById;
    rows.extend(common_rows(op));
    rows.extend(id_rows(op, fx));
    rows.extend(missing_id_rows(op, format!("{CALLS}/")));
    rows.push(case(op, "valid", Change::Valid, 200, ""));

    let op = UpdateSessionStatus;
    rows.extend(common_rows(op));
    rows.extend(id_rows(op, fx));
    rows.extend(missing_id_rows(op, format!("{CALLS}//status")));
    rows.extend(body_rows(op));
    rows.extend([
        case(op, "no body", Change::Body(Body::None), 400, "INVALID_ARGUMENT"),
        case(op, "status missing", Change::Remove("/status"), 400, "INVALID_ARGUMENT"),
        case(op, "status a number", Change::Set("/status", json!(180)), 400, "INVALID_ARGUMENT"),
        case(op, "status outside SessionStatus", Change::Set("/status", s("OnHold")), 400, "INVALID_ARGUMENT"),
        case(op, "status in SessionStatus a device cannot ask for", Change::Set("/status", s("Terminated")), 400, "INVALID_ARGUMENT"),
        case(op, "offer a string", Change::Set("/offer", s("v=0")), 400, "INVALID_ARGUMENT"),
        case(op, "answer.sdp of 65537 characters (maxLength 65536)", Change::Set("/answer", json!({"sdp": long(65537)})), 400, "INVALID_ARGUMENT"),
        case(op, "offer.sdp of 65537 characters (maxLength 65536)", Change::Set("/offer", json!({"sdp": long(65537)})), 400, "INVALID_ARGUMENT"),
        case(op, "locationDetails an array", Change::Set("/locationDetails", json!([1, 2])), 400, "INVALID_ARGUMENT"),
        case(op, "locationDetails.confidence.value above 100", Change::Set("/locationDetails", json!({"confidence": {"value": 250}})), 400, "OUT_OF_RANGE"),
        case(op, "an unknown member (ignored: the schema is open)", Change::Set("/clientCorrelator", s("x")), 409, "INCOMPATIBLE_STATE"),
        case(op, "status of 10,000 characters (the message quotes it short)", Change::Set("/status", s(&long(10_000))), 400, "INVALID_ARGUMENT"),
        case(op, "Connected on an outgoing session (the network answers it)", Change::Set("/status", s("Connected")), 409, "INCOMPATIBLE_STATE"),
        case(op, "valid: Hold, but the session has no call in progress", Change::Valid, 409, "INCOMPATIBLE_STATE"),
    ]);

    let op = DeleteSessionById;
    rows.extend(common_rows(op));
    rows.extend(id_rows(op, fx));
    rows.extend(missing_id_rows(op, CALLS.into()));
    rows.extend(missing_id_rows(op, format!("{CALLS}/")));
    rows.extend([
        case(op, "a method the path does not have", Change::Method("PUT"), 405, "METHOD_NOT_ALLOWED"),
        case(op, "valid", Change::Valid, 204, ""),
    ]);

    // webrtc-events ------------------------------------------------------------------------
    let op = CreateSubscription;
    rows.extend(common_rows(op));
    rows.extend(body_rows(op));
    rows.extend([
        case(op, "no body", Change::Body(Body::None), 400, "INVALID_ARGUMENT"),
        case(op, "protocol missing", Change::Remove("/protocol"), 400, "INVALID_ARGUMENT"),
        case(op, "protocol a number", Change::Set("/protocol", json!(1)), 400, "INVALID_ARGUMENT"),
        case(op, "protocol MQTT3 (enum HTTP)", Change::Set("/protocol", s("MQTT3")), 400, "INVALID_PROTOCOL"),
        case(op, "protocol lowercase http", Change::Set("/protocol", s("http")), 400, "INVALID_PROTOCOL"),
        case(op, "sink missing", Change::Remove("/sink"), 400, "INVALID_ARGUMENT"),
        case(op, "sink a number", Change::Set("/sink", json!(443)), 400, "INVALID_ARGUMENT"),
        case(op, "sink not a URI", Change::Set("/sink", s("not a uri")), 400, "INVALID_SINK"),
        case(op, "sink http to a public address (pattern ^https://)", Change::Set("/sink", s("http://203.0.113.9/hook")), 400, "INVALID_SINK"),
        case(op, "sink ftp", Change::Set("/sink", s("ftp://203.0.113.9/hook")), 400, "INVALID_SINK"),
        case(op, "sink https to a private address", Change::Set("/sink", s("https://10.1.2.3/hook")), 400, "INVALID_SINK"),
        case(op, "sink https to a link-local address", Change::Set("/sink", s("https://169.254.169.254/latest")), 400, "INVALID_SINK"),
        case(op, "sink of 1025 characters (maxLength 1024)", Change::Set("/sink", s(&format!("https://203.0.113.9/{}", long(1005)))), 400, "INVALID_ARGUMENT"),
        case(op, "sinkCredential a string", Change::Set("/sinkCredential", s("token")), 400, "INVALID_ARGUMENT"),
        case(op, "sinkCredential.credentialType missing", Change::Remove("/sinkCredential/credentialType"), 400, "INVALID_ARGUMENT"),
        case(op, "sinkCredential.credentialType PLAIN (enum ACCESSTOKEN)", Change::Set("/sinkCredential/credentialType", s("PLAIN")), 400, "INVALID_CREDENTIAL"),
        case(op, "sinkCredential.credentialType PRIVATE_KEY_JWT without its members", Change::Set("/sinkCredential", json!({"credentialType": "PRIVATE_KEY_JWT"})), 400, "INVALID_CREDENTIAL"),
        case(op, "sinkCredential.accessToken missing", Change::Remove("/sinkCredential/accessToken"), 400, "INVALID_ARGUMENT"),
        case(op, "sinkCredential.accessToken a number", Change::Set("/sinkCredential/accessToken", json!(7)), 400, "INVALID_ARGUMENT"),
        case(op, "sinkCredential.accessToken of 8193 characters (maxLength 8192)", Change::Set("/sinkCredential/accessToken", s(&long(8193))), 400, "INVALID_ARGUMENT"),
        case(op, "sinkCredential.accessTokenExpiresUtc missing", Change::Remove("/sinkCredential/accessTokenExpiresUtc"), 400, "INVALID_ARGUMENT"),
        case(op, "sinkCredential.accessTokenExpiresUtc without a time zone", Change::Set("/sinkCredential/accessTokenExpiresUtc", s("2099-12-31T23:59:59")), 400, "INVALID_ARGUMENT"),
        case(op, "sinkCredential.accessTokenExpiresUtc in the past", Change::Set("/sinkCredential/accessTokenExpiresUtc", s("2001-01-01T00:00:00Z")), 400, "OUT_OF_RANGE"),
        case(op, "sinkCredential.accessTokenType missing", Change::Remove("/sinkCredential/accessTokenType"), 400, "INVALID_ARGUMENT"),
        case(op, "sinkCredential.accessTokenType mac (enum bearer)", Change::Set("/sinkCredential/accessTokenType", s("mac")), 400, "INVALID_TOKEN"),
        case(op, "types missing", Change::Remove("/types"), 400, "INVALID_ARGUMENT"),
        case(op, "types a string", Change::Set("/types", s(SESSION_STATUS)), 400, "INVALID_ARGUMENT"),
        case(op, "types empty (minItems 1)", Change::Set("/types", json!([])), 400, "INVALID_ARGUMENT"),
        case(op, "types of 4 (maxItems 3)", Change::Set("/types", json!([SESSION_STATUS, SESSION_INVITATION, REGISTRATION_ENDS, SESSION_STATUS])), 400, "INVALID_ARGUMENT"),
        case(op, "types with an unknown event type", Change::Set("/types", json!(["org.camaraproject.webrtc-events.v0.call-recorded"])), 400, "INVALID_ARGUMENT"),
        case(op, "types with subscription-ended (sent by default, not subscribable)", Change::Set("/types", json!([SUBSCRIPTION_ENDED])), 400, "INVALID_ARGUMENT"),
        case(op, "types with a number", Change::Set("/types", json!([1])), 400, "INVALID_ARGUMENT"),
        case(op, "types with the same type twice", Change::Set("/types", json!([SESSION_STATUS, SESSION_STATUS])), 400, "INVALID_ARGUMENT"),
        case(op, "types with an unknown type of 10,000 characters (the message quotes it short)", Change::Set("/types", json!([long(10_000)])), 400, "INVALID_ARGUMENT"),
        case(op, "an unknown member (ignored: the schema is open)", Change::Set("/clientCorrelator", s("x")), 201, ""),
        case(op, "protocolSettings of HTTPSubscriptionRequest", Change::Set("/protocolSettings", json!({"method": "POST", "headers": {"X-Tenant": "a"}})), 201, ""),
        case(op, "protocolSettings.method GET (enum POST)", Change::Set("/protocolSettings", json!({"method": "GET"})), 400, "INVALID_ARGUMENT"),
        case(op, "protocolSettings.headers with a number", Change::Set("/protocolSettings", json!({"headers": {"X-Tenant": 1}})), 400, "INVALID_ARGUMENT"),
        case(op, "protocolSettings.headers value of 513 characters (maxLength 512)", Change::Set("/protocolSettings", json!({"headers": {"X-Tenant": long(513)}})), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionDetail.deviceId in upper case (the registered device)", Change::Set("/config/subscriptionDetail/deviceId", s(&DEVICE_ID.to_uppercase())), 201, ""),
        case(op, "config missing", Change::Remove("/config"), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionDetail missing", Change::Remove("/config/subscriptionDetail"), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionDetail.deviceId missing", Change::Set("/config/subscriptionDetail", json!({})), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionDetail.deviceId not a UUID", Change::Set("/config/subscriptionDetail/deviceId", s("phone-1")), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionDetail.deviceId without hyphens", Change::Set("/config/subscriptionDetail/deviceId", s("7d4448409dc011d1b2455ffdce74fad2")), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionDetail.deviceId a number", Change::Set("/config/subscriptionDetail/deviceId", json!(7)), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionExpireTime not a date-time", Change::Set("/config/subscriptionExpireTime", s("later")), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionExpireTime without a time zone", Change::Set("/config/subscriptionExpireTime", s("2099-01-01T00:00:00")), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionExpireTime of 65 characters (maxLength 64)", Change::Set("/config/subscriptionExpireTime", s(&too_long_date_time())), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionExpireTime in the past", Change::Set("/config/subscriptionExpireTime", s("2001-01-01T00:00:00Z")), 400, "OUT_OF_RANGE"),
        case(op, "config.subscriptionMaxEvents 0 (minimum 1)", Change::Set("/config/subscriptionMaxEvents", json!(0)), 400, "OUT_OF_RANGE"),
        case(op, "config.subscriptionMaxEvents negative", Change::Set("/config/subscriptionMaxEvents", json!(-5)), 400, "OUT_OF_RANGE"),
        case(op, "config.subscriptionMaxEvents 1000001 (maximum 1000000)", Change::Set("/config/subscriptionMaxEvents", json!(1_000_001)), 400, "OUT_OF_RANGE"),
        case(op, "config.subscriptionMaxEvents a string", Change::Set("/config/subscriptionMaxEvents", s("5")), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionMaxEvents not an integer", Change::Set("/config/subscriptionMaxEvents", json!(1.5)), 400, "INVALID_ARGUMENT"),
        case(op, "config.initialEvent a string", Change::Set("/config/initialEvent", s("yes")), 400, "INVALID_ARGUMENT"),
        case(op, "a token with the scope of session-status only, for session-invitation too", Change::Token(Who::AliceScoped("webrtc-events:org.camaraproject.webrtc-events.v0.session-status:create")), 403, "PERMISSION_DENIED"),
        case(op, "session-status for a device the caller has not registered", Change::Set("/config/subscriptionDetail/deviceId", s(UNREGISTERED_DEVICE)), 422, "SERVICE_NOT_APPLICABLE"),
        case(op, "session-invitation for a device only another subscriber registered", Change::SetAll(vec![ ("/config/subscriptionDetail/deviceId", s(BOB_DEVICE)), ("/types", json!([SESSION_INVITATION])), ]), 422, "SERVICE_NOT_APPLICABLE"),
        case(op, "registration-ends for a device the caller has not registered (needs no registration)", Change::SetAll(vec![ ("/config/subscriptionDetail/deviceId", s(UNREGISTERED_DEVICE)), ("/types", json!([REGISTRATION_ENDS])), ]), 201, ""),
        case(op, "valid, with subscriptionMaxEvents and initialEvent", Change::SetAll(vec![ ("/config/subscriptionMaxEvents", json!(1_000_000)), ("/config/initialEvent", json!(false)), ]), 201, ""),
        case(op, "valid", Change::Valid, 201, ""),
    ]);

    let op = RetrieveSubscriptionList;
    rows.extend(common_rows(op));
    rows.extend([
        case(op, "x-correlator with every character its pattern allows", Change::Header("x-correlator", "aZ09-_:;./<>{}".into()), 200, ""),
        case(op, "x-correlator empty ({0,256})", Change::Header("x-correlator", String::new()), 200, ""),
        case(op, "a method the path does not have", Change::Method("PATCH"), 405, "METHOD_NOT_ALLOWED"),
        case(op, "valid", Change::Valid, 200, ""),
    ]);

    let op = RetrieveSubscription;
    rows.extend(common_rows(op));
    rows.extend(id_rows(op, fx));
    rows.extend(missing_id_rows(op, format!("{SUBS}/")));
    rows.push(case(op, "valid", Change::Valid, 200, ""));

    let op = UpdateSubscription;
    rows.extend(common_rows(op));
    rows.extend(id_rows(op, fx));
    rows.extend(missing_id_rows(op, format!("{SUBS}/")));
    rows.extend(body_rows(op));
    rows.extend([
        case(op, "an unknown member (additionalProperties false)", Change::Set("/unknownMember", json!(1)), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionDetail naming its own device in upper case", Change::Set("/config/subscriptionDetail", json!({"deviceId": DEVICE_ID.to_uppercase()})), 200, ""),
        case(op, "no body", Change::Body(Body::None), 400, "INVALID_ARGUMENT"),
        case(op, "nothing to update", Change::Body(Body::Json(json!({}))), 400, "INVALID_ARGUMENT"),
        case(op, "config with an unknown member (additionalProperties false)", Change::Set("/config/subscriptionMaxEvents", json!(5)), 400, "INVALID_ARGUMENT"),
        case(op, "config a string", Change::Set("/config", s("x")), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionExpireTime not a date-time", Change::Set("/config/subscriptionExpireTime", s("later")), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionExpireTime without a time zone", Change::Set("/config/subscriptionExpireTime", s("2099-01-01T00:00:00")), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionExpireTime in the past", Change::Set("/config/subscriptionExpireTime", s("2001-01-01T00:00:00Z")), 400, "OUT_OF_RANGE"),
        case(op, "sinkCredential.credentialType PLAIN", Change::Set("/sinkCredential/credentialType", s("PLAIN")), 400, "INVALID_CREDENTIAL"),
        case(op, "sinkCredential.accessTokenType mac", Change::Set("/sinkCredential/accessTokenType", s("mac")), 400, "INVALID_TOKEN"),
        case(op, "sinkCredential.accessToken missing", Change::Remove("/sinkCredential/accessToken"), 400, "INVALID_ARGUMENT"),
        case(op, "sinkCredential.accessTokenExpiresUtc not a date-time", Change::Set("/sinkCredential/accessTokenExpiresUtc", s("never")), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionDetail.deviceId not a UUID", Change::Set("/config/subscriptionDetail", json!({"deviceId": "phone-1"})), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionDetail naming another device (cannot be changed)", Change::Set("/config/subscriptionDetail", json!({"deviceId": BOB_DEVICE})), 400, "INVALID_ARGUMENT"),
        case(op, "config.subscriptionDetail naming its own device (as the call flows send it)", Change::Set("/config/subscriptionDetail", json!({"deviceId": DEVICE_ID})), 200, ""),
        case(op, "sinkCredential only", Change::Remove("/config"), 200, ""),
        case(op, "config.subscriptionExpireTime only", Change::Remove("/sinkCredential"), 200, ""),
        case(op, "valid", Change::Valid, 200, ""),
    ]);

    let op = DeleteSubscription;
    rows.extend(common_rows(op));
    rows.extend(id_rows(op, fx));
    rows.extend(missing_id_rows(op, SUBS.into()));
    rows.push(case(op, "valid", Change::Valid, 202, ""));
    rows
}

/// A client that sends any body with any content type.
struct Client {
    base: String,
    http: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Client {
    async fn send(&self, request: &Request) -> (u16, axum::http::HeaderMap, Value) {
        let mut builder =
            hyper::Request::builder().method(request.method).uri(format!("{}{}", self.base, request.path));
        if let Some(token) = &request.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let bytes = match &request.body {
            Body::None => Bytes::new(),
            Body::Json(v) => {
                builder = builder.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            Body::Raw(content_type, text) => {
                if let Some(t) = content_type {
                    builder = builder.header("content-type", *t);
                }
                Bytes::from(text.clone())
            }
        };
        let response = self.http.request(builder.body(Full::new(bytes)).unwrap()).await.expect("the gateway answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()))
        };
        (status, headers, body)
    }
}

fn session(id: &str, owner: &str, registration_id: &str) -> MediaSession {
    MediaSession {
        id: id.into(),
        owner_phone_number: owner.into(),
        registration_id: registration_id.into(),
        device_id: DEVICE_ID.into(),
        direction: Direction::Outgoing,
        sip_call_id: None,
        originator_address: format!("tel:{owner}"),
        originator_name: None,
        receiver_address: "tel:+818000000003".into(),
        receiver_name: None,
        offer_sdp: WEBRTC_OFFER.into(),
        answer_sdp: None,
        sip_local_sdp: None,
        status: camara_gateway::model::SessionStatus::Initial,
        sequence: 0,
        local_hangup: None,
        node: None,
        sip_dialog: None,
        created_at: chrono::Utc::now(),
        revision: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_schema_constraint_gets_its_status_and_code() {
    init_logs();
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.api.rate_limit_per_second = 100_000;
    config.api.rate_limit_burst = 100_000;
    // A debug build on two cores: the default 100 ms deadline is for release builds.
    config.plugins.authorization.deadline_ms = Some(2000);
    let gateway = camara_gateway::start(config).await.unwrap();
    let api = Api::new(gateway.http_addr);
    let client = Client {
        base: format!("http://{}", gateway.http_addr),
        http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
    };
    let sink = Sink::start(vec![]).await;
    let alice = tokens::for_subscriber(ALICE);
    let bob = tokens::for_subscriber(BOB);

    let register = |token: String, device: &'static str| {
        let api = &api;
        async move {
            let reply = api.call("POST", REG, Some(&token), &[], Some(json!({"deviceId": device}))).await;
            assert_eq!(reply.status, 201, "{:?}", reply.body);
            reply.body["registrationId"].as_str().unwrap().to_string()
        }
    };
    let alice_registration = register(alice.clone(), DEVICE_ID).await;
    let spare_registration = register(alice.clone(), SPARE_DEVICE).await;
    let bob_registration = register(bob.clone(), BOB_DEVICE).await;
    let subscribe = |token: String, device: &'static str| {
        let (api, sink) = (&api, sink.url.clone());
        async move {
            let body = json!({"protocol": "HTTP", "sink": sink, "types": [SESSION_STATUS],
                              "config": {"subscriptionDetail": {"deviceId": device}}});
            let reply = api.call("POST", SUBS, Some(&token), &[], Some(body)).await;
            assert_eq!(reply.status, 201, "{:?}", reply.body);
            reply.body["id"].as_str().unwrap().to_string()
        }
    };
    let alice_subscription = subscribe(alice.clone(), DEVICE_ID).await;
    let spare_subscription = subscribe(alice.clone(), SPARE_DEVICE).await;
    let bob_subscription = subscribe(bob.clone(), BOB_DEVICE).await;
    // Sessions without a call behind them (no SIP peer here): read, ended (nothing to send)
    // and refused status changes.
    let (alice_session, bob_session) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    let store = &gateway.gateway.store;
    store.insert_session(session(&alice_session, ALICE, &alice_registration), Vec::new()).await.unwrap();
    store.insert_session(session(&bob_session, BOB, &bob_registration), Vec::new()).await.unwrap();

    let fx = Fixture {
        alice,
        bob,
        alice_registration,
        spare_registration,
        bob_registration,
        alice_subscription,
        spare_subscription,
        bob_subscription,
        alice_session,
        bob_session,
        sink: sink.url.clone(),
        fresh_device: uuid::Uuid::new_v4().to_string(),
    };

    let rows = rows(&fx);
    let mut failures = Vec::new();
    let mut per_op: BTreeMap<Op, usize> = BTreeMap::new();
    for (n, row) in rows.iter().enumerate() {
        *per_op.entry(row.op).or_default() += 1;
        let request = apply(row.op, &row.change, &fx);
        let correlator = request
            .headers
            .iter()
            .find(|(n, _)| n == "x-correlator")
            .map(|(_, v)| v.clone())
            .filter(|v| camara_gateway::validate::correlator_is_valid(v));
        let (status, headers, body) = client.send(&request).await;
        let mut wrong = Vec::new();
        if status != row.status {
            wrong.push(format!("status {status}, expected {}", row.status));
        }
        if row.code.is_empty() {
            if status >= 400 {
                wrong.push(format!("an error where none was expected: {body}"));
            }
        } else {
            if body["code"] != row.code {
                wrong.push(format!("code {}, expected {}", body["code"], row.code));
            }
            if body["status"] != status {
                wrong.push(format!("body status {} for HTTP {status}", body["status"]));
            }
            match body["message"].as_str().map(|m| m.chars().count()) {
                None | Some(0) => wrong.push("no message".into()),
                Some(n) if n > MAX_MESSAGE_CHARS => wrong.push(format!("a message of {n} characters")),
                Some(_) => {}
            }
        }
        if status == 401 {
            let challenge = headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let sent_token = request.headers.iter().any(|(n, v)| n == "authorization" && v.starts_with("Bearer "));
            if !challenge.starts_with("Bearer") || (sent_token && !challenge.contains("error=\"invalid_token\"")) {
                wrong.push(format!("WWW-Authenticate {challenge:?} (RFC 6750)"));
            }
        }
        if let Some(correlator) = &correlator
            && headers.get("x-correlator").and_then(|v| v.to_str().ok()) != Some(correlator.as_str())
        {
            wrong.push(format!("x-correlator {:?} not echoed", correlator));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "#{n} {:?} {} {}: {} -- {}; body {}",
                row.op,
                request.method,
                row.what,
                wrong.join(", "),
                request.path.chars().take(120).collect::<String>(),
                body.to_string().chars().take(300).collect::<String>()
            ));
        }
    }
    eprintln!("{} rows: {per_op:?}", rows.len());
    for op in ALL_OPS {
        assert!(per_op.get(&op).copied().unwrap_or(0) >= 5, "{op:?} has too few rows");
        assert!(
            rows.iter().any(|r| r.op == op && matches!(r.change, Change::Valid)),
            "{op:?} has no valid row, so its mutations prove nothing"
        );
    }
    gateway.stop().await;
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}", failures.len(), rows.len(), failures.join("\n"));
}
