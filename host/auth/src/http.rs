//! The client that talks to the authorization server (hyper + rustls with ring).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

/// Discovery documents, key sets and introspection answers are small; a bigger body is refused
/// so that a misbehaving server cannot make the gateway buffer without bound.
const MAX_BODY: usize = 1024 * 1024;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
    allow_http: bool,
}

impl HttpClient {
    pub(crate) fn new(timeout: Duration, allow_http: bool) -> Self {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .expect("ring supports the default protocol versions");
        // The scheme is also checked per URL; the connector is a second line of defence.
        let builder = if allow_http { builder.https_or_http() } else { builder.https_only() };
        let connector = builder.enable_http1().build();
        HttpClient { client: Client::builder(TokioExecutor::new()).build(connector), timeout, allow_http }
    }

    /// GETs a document (2xx only).
    pub(crate) async fn get(&self, url: &str) -> Result<Bytes, String> {
        let request = Request::get(url).header(ACCEPT, "application/json");
        self.send(url, request, Bytes::new()).await
    }

    /// GETs a JSON document (2xx only).
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let body = self.get(url).await?;
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: unexpected answer: {e}"))
    }

    /// POSTs an `application/x-www-form-urlencoded` body and parses the JSON answer (2xx only).
    pub(crate) async fn post_form_json<T: DeserializeOwned>(
        &self,
        url: &str,
        authorization: &str,
        form: String,
    ) -> Result<T, String> {
        let request = Request::post(url)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(AUTHORIZATION, authorization);
        let body = self.send(url, request, Bytes::from(form)).await?;
        serde_json::from_slice(&body).map_err(|e| format!("POST {url}: unexpected answer: {e}"))
    }

    async fn send(&self, url: &str, request: hyper::http::request::Builder, body: Bytes) -> Result<Bytes, String> {
        let method = request.method_ref().cloned().unwrap_or_default();
        let fail = |m: String| format!("{method} {url}: {m}");
        crate::config::check_url(url, self.allow_http)?;
        let request = request.body(Full::new(body)).map_err(|e| fail(e.to_string()))?;
        // One deadline for connect, headers and body: a server trickling bytes is still cut off.
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| fail(format!("{e:#}")))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| fail(format!("reading the body: {e}")))?
                .to_bytes();
            if !status.is_success() {
                return Err(fail(format!("HTTP {status}")));
            }
            Ok(body)
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| fail("timed out".into()))?
    }
}
