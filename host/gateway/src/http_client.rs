//! The outgoing HTTP client (hyper + rustls): JWKS fetches and notification POSTs.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::sink_policy::{FilteringResolver, SinkPolicy};

type Connector = hyper_rustls::HttpsConnector<HttpConnector<FilteringResolver>>;

/// A pooled client for http and https that connects only where its [`SinkPolicy`] allows.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    policy: SinkPolicy,
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
}

/// How a request failed before an HTTP status came back.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("refused by the sink policy: {0}")]
    Refused(String),
}

impl HttpClient {
    pub fn new(policy: SinkPolicy) -> Self {
        let mut http = HttpConnector::new_with_resolver(FilteringResolver::new(policy));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .expect("ring supports the default protocol versions")
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        HttpClient { client: Client::builder(TokioExecutor::new()).build(connector), policy }
    }

    /// Names go through the filtering resolver; address literals and the scheme are checked here.
    fn admit(&self, url: &str) -> Result<(), RequestError> {
        let parsed = url::Url::parse(url).map_err(|e| RequestError::Invalid(e.to_string()))?;
        if parsed.scheme() != "https" && !self.policy.allow_loopback {
            return Err(RequestError::Refused(format!("{} is not https", parsed.scheme())));
        }
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        match literal {
            Some(ip) if !self.policy.allows(ip) => Err(RequestError::Refused(ip.to_string())),
            _ => Ok(()),
        }
    }

    /// POSTs `body` and returns the response status and its `Retry-After`.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: String,
        timeout: Duration,
    ) -> Result<Answer, RequestError> {
        self.admit(url)?;
        let mut request = Request::post(url);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| RequestError::Invalid(e.to_string()))?;
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| RequestError::Timeout)?
            .map_err(|e| RequestError::Connection(format!("{e:#}")))?;
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get(hyper::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // Drain the body so the connection goes back to the pool.
        let _ = tokio::time::timeout(timeout, response.into_body().collect()).await;
        Ok(Answer { status, retry_after })
    }
}
