//! Field formats of the CAMARA schemas.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex_lite::Regex;

use crate::error::ApiError;

/// `Address` of webrtc-call-handling.
static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(tel:\+[1-9][0-9]{4,14}",
        r"|tel:[0-9*#]{1,15};phone-context=(?:\+[1-9][0-9]{0,14}|[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+)",
        r"|sip:[A-Za-z0-9_.!%+\-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
        r"|sip:[0-9*#]{1,15};phone-context=(?:\+[1-9][0-9]{0,14}|[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+)@[A-Za-z0-9.-]+\.[A-Za-z]{2,};user=phone",
        r"|urn:service:sos(?:\.[a-z0-9](?:[a-z0-9\-]{0,30}[a-z0-9])?)*",
        r"|sip:anonymous@anonymous\.invalid)$"
    ))
    .expect("valid pattern")
});

/// `XCorrelator`.
static CORRELATOR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9\-_:;./<>{}]{0,256}$").expect("valid pattern"));

pub fn correlator_is_valid(value: &str) -> bool {
    CORRELATOR.is_match(value)
}

pub fn address(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > 256 || !ADDRESS.is_match(value) {
        return Err(ApiError::invalid_argument(format!("{field} is not a valid Address: {value:?}")));
    }
    Ok(())
}

pub fn max_len(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::invalid_argument(format!("{field} is longer than {max} characters")));
    }
    Ok(())
}

pub fn uuid(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() != 36 || uuid::Uuid::parse_str(value).is_err() {
        return Err(ApiError::invalid_argument(format!("{field} must be a UUID, not {value:?}")));
    }
    Ok(())
}

/// An RFC 3339 date-time with a zone.
pub fn date_time(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::invalid_argument(format!("{field} must be an RFC 3339 date-time with a time zone")))
}

pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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
}
