//! Field formats of the CAMARA schemas.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex_lite::Regex;

use crate::error::ApiError;
use crate::model::{CircleCoordinates, EllipsoidCoordinates, LocationDetails};

/// The pattern of `Address` (webrtc-call-handling), as the CAMARA file writes it.
pub const ADDRESS_PATTERN: &str = concat!(
    r"^(tel:\+[1-9][0-9]{4,14}",
    r"|tel:[0-9*#]{1,15};phone-context=(?:\+[1-9][0-9]{0,14}|[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+)",
    r"|sip:[A-Za-z0-9_.!%+\-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    r"|sip:[0-9*#]{1,15};phone-context=(?:\+[1-9][0-9]{0,14}|[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+)@[A-Za-z0-9.-]+\.[A-Za-z]{2,};user=phone",
    r"|urn:service:sos(?:\.[a-z0-9](?:[a-z0-9\-]{0,30}[a-z0-9])?)*",
    r"|sip:anonymous@anonymous\.invalid)$"
);

/// The pattern of `XCorrelator`, as the CAMARA files write it.
pub const CORRELATOR_PATTERN: &str = r"^[a-zA-Z0-9-_:;.\/<>{}]{0,256}$";

static ADDRESS: LazyLock<Regex> = LazyLock::new(|| Regex::new(ADDRESS_PATTERN).expect("valid pattern"));

/// `XCorrelator` (the CAMARA pattern, with its `-` and `/` escaped for the regex engine).
static CORRELATOR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9\-_:;./<>{}]{0,256}$").expect("valid pattern"));

/// The longest identifier (`registrationId`, `mediaSessionId`, `subscriptionId`) of the schemas.
pub const MAX_ID_LENGTH: usize = 256;

pub fn correlator_is_valid(value: &str) -> bool {
    CORRELATOR.is_match(value)
}

/// How much of a refused value an error message quotes: enough to recognise it, never the
/// whole of a long input.
const QUOTED_CHARS: usize = 64;

/// `value` as an error message quotes it.
pub fn quoted(value: &str) -> String {
    match value.char_indices().nth(QUOTED_CHARS) {
        None => format!("{value:?}"),
        Some((end, _)) => format!("{:?}... ({} characters)", &value[..end], value.chars().count()),
    }
}

pub fn address(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > 256 || !ADDRESS.is_match(value) {
        return Err(ApiError::invalid_argument(format!("{field} is not a valid Address: {}", quoted(value))));
    }
    Ok(())
}

pub fn max_len(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::invalid_argument(format!("{field} is longer than {max} characters")));
    }
    Ok(())
}

/// An identifier in a path or header: not empty, at most [`MAX_ID_LENGTH`] characters.
pub fn id(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid_argument(format!("{field} must not be empty")));
    }
    max_len(field, value, MAX_ID_LENGTH)
}

/// `format: uuid`, `maxLength: 36`: the hyphenated form only, returned in its canonical form
/// (lower case). RFC 9562 §4 makes UUIDs case-insensitive on input, so `7D44...` and `7d44...`
/// name the same device: every deviceId is compared, stored and echoed in the canonical form.
pub fn uuid(field: &str, value: &str) -> Result<String, ApiError> {
    match uuid::Uuid::parse_str(value) {
        Ok(id) if value.len() == 36 => Ok(id.hyphenated().to_string()),
        _ => Err(ApiError::invalid_argument(format!("{field} must be a UUID, not {}", quoted(value)))),
    }
}

/// An RFC 3339 date-time with a zone (`format: date-time`, `maxLength: 64`).
pub fn date_time(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    max_len(field, value, 64)?;
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::invalid_argument(format!("{field} must be an RFC 3339 date-time with a time zone")))
}

/// A requested expiry: a date-time that is still ahead.
pub fn future_date_time(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    let t = date_time(field, value)?;
    if t <= Utc::now() {
        return Err(ApiError::out_of_range(format!("{field} must be in the future")));
    }
    Ok(t)
}

pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `LocationDetails`: its types and enums, `coordinates` as exactly one of the circle and the
/// ellipsoid (`oneOf`), a confidence of 0 to 100 (`OUT_OF_RANGE` outside).
pub fn location_details(field: &str, value: &serde_json::Value) -> Result<(), ApiError> {
    let invalid = |why: String| ApiError::invalid_argument(format!("{field} is not a valid LocationDetails: {why}"));
    let details: LocationDetails = serde_json::from_value(value.clone()).map_err(|e| invalid(e.to_string()))?;
    if let Some(coordinates) = value.get("coordinates") {
        let circle = serde_json::from_value::<CircleCoordinates>(coordinates.clone()).is_ok();
        let ellipsoid = serde_json::from_value::<EllipsoidCoordinates>(coordinates.clone()).is_ok();
        if circle == ellipsoid {
            return Err(invalid("coordinates must be exactly one of a circle and an ellipsoid".into()));
        }
    }
    if let Some(value) = details.confidence.as_ref().and_then(|c| c.value)
        && !(0.0..=100.0).contains(&value)
    {
        return Err(ApiError::out_of_range(format!("{field}.confidence.value must be between 0 and 100")));
    }
    if let Some(t) = &details.timestamp {
        date_time(&format!("{field}.timestamp"), t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_the_schema() {
        for ok in [
            "tel:+818000000001",
            "tel:0312;phone-context=+81",
            "sip:alice@example.com",
            "urn:service:sos.police",
            "sip:anonymous@anonymous.invalid",
        ] {
            assert!(address("a", ok).is_ok(), "{ok}");
        }
        for bad in ["tel:818000000001", "tel:+0123", "mailto:a@b.c", "sip:alice@localhost", ""] {
            assert!(address("a", bad).is_err(), "{bad}");
        }
        assert!(correlator_is_valid("a1b2c3d4-e5f6-7890-abcd-000000000007"));
        assert!(!correlator_is_valid("has space"));
        assert!(date_time("t", "2025-12-31T23:59:59.999Z").is_ok());
        assert!(date_time("t", "2025-12-31T23:59:59").is_err());
    }

    #[test]
    fn uuids_are_canonical_and_long_values_are_quoted_short() {
        let upper = uuid("d", "7D444840-9DC0-11D1-B245-5FFDCE74FAD2").unwrap();
        assert_eq!(upper, "7d444840-9dc0-11d1-b245-5ffdce74fad2");
        let message = uuid("d", &"x".repeat(10_000)).unwrap_err().message;
        assert!(message.len() < 200 && message.contains("10000 characters"), "{message}");
        assert_eq!(quoted("é".repeat(70).as_str()).matches('é').count(), QUOTED_CHARS);
    }

    #[test]
    fn location_details_of_the_schema() {
        let ok = serde_json::json!({"shape": "Circle", "coordinates": {"latitude": 47.6, "longitude": -122.3, "radius": 35},
            "method": "DBH_HELO", "confidence": {"pdf": "normal", "value": 92}, "timestamp": "2025-10-06T19:31:25Z"});
        assert!(location_details("l", &ok).is_ok());
        assert!(location_details("l", &serde_json::json!({})).is_ok());
        for bad in [
            serde_json::json!("here"),
            serde_json::json!({"shape": "Square"}),
            serde_json::json!({"coordinates": {"latitude": 1.0}}),
            serde_json::json!({"timestamp": "yesterday"}),
        ] {
            assert_eq!(location_details("l", &bad).unwrap_err().code, "INVALID_ARGUMENT", "{bad}");
        }
        let far = serde_json::json!({"confidence": {"value": 101}});
        assert_eq!(location_details("l", &far).unwrap_err().code, "OUT_OF_RANGE");
    }
}
