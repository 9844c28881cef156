//! The sign-in and consent page: plain HTML, no script, every echoed value escaped.

use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_FRAME_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::no_store;

/// Escapes text for an HTML element or a double- or single-quoted attribute.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;\
line-height:1.5}label{display:block;margin-top:.75rem;font-weight:600}input{font-size:1rem;padding:.4rem;\
width:100%;box-sizing:border-box}fieldset{margin-top:1rem}.error{color:#a00000;font-weight:600}\
button{font-size:1rem;padding:.5rem 1.25rem;margin:1rem .5rem 0 0}code{font-size:.85rem}";

/// A whole page, with headers that keep it out of frames and caches.
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        escape(title)
    );
    let mut response = no_store((status, html).into_response());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A refused request that cannot be sent back to the client (unknown client or redirect URI).
pub(crate) fn error_page(message: &str) -> Response {
    let body = format!("<h1>Authorization request refused</h1>\n<p>{}</p>\n", escape(message));
    page(StatusCode::BAD_REQUEST, "Authorization request refused", &body)
}

/// What the consent page shows and carries over to the POST.
pub(crate) struct Consent<'a> {
    /// Where the form posts (the path of `/authorize`).
    pub(crate) action: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) scopes: &'a [String],
    /// The authorization request, as hidden fields.
    pub(crate) hidden: &'a [(&'static str, String)],
    pub(crate) username: Option<&'a str>,
    pub(crate) error: Option<&'a str>,
}

pub(crate) fn consent_page(consent: &Consent<'_>) -> Response {
    let mut body = String::new();
    body.push_str("<h1>Sign in</h1>\n");
    body.push_str(&format!(
        "<p>The application <strong>{}</strong> asks to act for you on this network.</p>\n",
        escape(consent.client_id)
    ));
    if let Some(error) = consent.error {
        body.push_str(&format!("<p class=\"error\" role=\"alert\" id=\"error\">{}</p>\n", escape(error)));
    }
    body.push_str(&format!("<form method=\"post\" action=\"{}\">\n", escape(consent.action)));
    for (name, value) in consent.hidden {
        body.push_str(&format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n", escape(value)));
    }
    let described_by = if consent.error.is_some() { " aria-describedby=\"error\"" } else { "" };
    body.push_str(&format!(
        "<label for=\"username\">Username</label>\n<input id=\"username\" name=\"username\" \
         autocomplete=\"username\" required autofocus value=\"{}\"{described_by}>\n\
         <label for=\"password\">Password</label>\n<input id=\"password\" name=\"password\" \
         type=\"password\" autocomplete=\"current-password\" required{described_by}>\n",
        escape(consent.username.unwrap_or_default())
    ));
    body.push_str("<fieldset>\n<legend>If you approve, it will be allowed to:</legend>\n<ul>\n");
    for scope in consent.scopes {
        let text = match describe(scope) {
            Some(what) => format!("{what} (<code>{}</code>)", escape(scope)),
            None => format!("<code>{}</code>", escape(scope)),
        };
        body.push_str(&format!("<li>{text}</li>\n"));
    }
    body.push_str("</ul>\n</fieldset>\n");
    body.push_str(
        "<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\n\
         <button type=\"submit\" name=\"decision\" value=\"deny\" formnovalidate>Deny</button>\n</form>\n",
    );
    page(StatusCode::OK, &format!("Sign in - {}", consent.client_id), &body)
}

/// Plain words for the known scopes (static text, no escaping needed).
fn describe(scope: &str) -> Option<&'static str> {
    Some(match scope {
        "openid" => "Know who you are and your phone number",
        "webrtc-registration:sessions:create" => "Register a device for calls on your number",
        "webrtc-registration:sessions:read" => "See your device registrations",
        "webrtc-registration:sessions:write" => "Renew your device registrations",
        "webrtc-registration:sessions:delete" => "Remove your device registrations",
        "webrtc-call-handling:sessions:create" => "Place calls from your number",
        "webrtc-call-handling:sessions:read" => "See your calls",
        "webrtc-call-handling:sessions:write" => "Answer, hold and resume your calls",
        "webrtc-call-handling:sessions:delete" => "End your calls",
        "webrtc-events:org.camaraproject.webrtc-events.v0.session-status:create" => "Be told how your calls go",
        "webrtc-events:org.camaraproject.webrtc-events.v0.session-invitation:create" => "Be told of incoming calls",
        "webrtc-events:org.camaraproject.webrtc-events.v0.registration-ends:create" => {
            "Be told when a registration ends"
        }
        "webrtc-events:read" => "See your event subscriptions",
        "webrtc-events:update" => "Renew your event subscriptions",
        "webrtc-events:delete" => "Cancel your event subscriptions",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
