//! CAMARA `Address` forms and their SIP counterparts.

/// The reserved anonymous originator of RFC 3323.
pub const ANONYMOUS: &str = "sip:anonymous@anonymous.invalid";

/// `+` followed by 5 to 15 digits, not starting with 0 (CAMARA `PhoneNumber`).
pub fn is_e164(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| (5..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0'))
}

/// The host of `host`, `host:port` or `[v6]:port`.
pub fn host_of(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    hostport.split(':').next().unwrap_or(hostport)
}

/// The user part of a SIP or tel URI: `sip:+8180@h;user=phone` -> `+8180`.
pub fn user_part(uri: &str) -> &str {
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .or_else(|| uri.strip_prefix("tel:"))
        .unwrap_or(uri);
    let end = rest.find(['@', ';', '?', '>']).unwrap_or(rest.len());
    &rest[..end]
}

/// The E.164 number an address names, if any (`tel:+8180...`, `sip:+8180...@host`).
pub fn phone_number(address: &str) -> Option<&str> {
    let user = user_part(address);
    is_e164(user).then_some(user)
}

/// A CAMARA address as a SIP URI in `domain`: telephone numbers become `user=phone` SIP URIs
/// (home local numbers keep their `phone-context`); SIP URIs and emergency URNs pass unchanged.
pub fn sip_uri(address: &str, domain: &str) -> Result<String, String> {
    if let Some(number) = address.strip_prefix("tel:") {
        return Ok(format!("sip:{number}@{domain};user=phone"));
    }
    if address.starts_with("sip:") || address.starts_with("urn:service:sos") {
        return Ok(address.to_string());
    }
    Err(format!("unsupported address {address:?}"))
}

/// A SIP identity as a CAMARA address: `tel:+N` for numbers, the URI itself otherwise.
pub fn camara_address(uri: &str) -> String {
    match phone_number(uri) {
        Some(n) => format!("tel:{n}"),
        None => uri.to_string(),
    }
}

/// Whether a SIP `Privacy` header value hides the caller's identity.
pub fn privacy_hides_identity(privacy: &str) -> bool {
    privacy.split(';').any(|v| matches!(v.trim(), "id" | "user" | "header"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_become_user_phone_sip_uris() {
        assert_eq!(sip_uri("tel:+818000000002", "tn.op").unwrap(), "sip:+818000000002@tn.op;user=phone");
        assert_eq!(sip_uri("tel:0312;phone-context=+81", "op").unwrap(), "sip:0312;phone-context=+81@op;user=phone");
        assert_eq!(sip_uri("urn:service:sos", "op").unwrap(), "urn:service:sos");
        assert!(sip_uri("mailto:a@b", "op").is_err());
    }

    #[test]
    fn identities_read_back_as_camara_addresses() {
        assert_eq!(camara_address("sip:+818000000001@operator.com;user=phone"), "tel:+818000000001");
        assert_eq!(camara_address("sip:alice@example.com"), "sip:alice@example.com");
        assert_eq!(host_of("[::1]:5060"), "::1");
        assert_eq!(host_of("proxy.example:5060"), "proxy.example");
        assert!(!is_e164("+0123456"));
        assert!(privacy_hides_identity("id"));
        assert!(!privacy_hides_identity("none"));
    }
}
