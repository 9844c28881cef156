//! The gateway assembled: configuration, plugins, token verifier, store, SIP user agent,
//! notifier and HTTP server, and its start and stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use camara_plugin_host::mapping::NetworkContext;
use camara_sip::{SipConfig, Transport, UserAgent};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::GatewayConfig;
use crate::listen::{Listener, bind_tcp, sip_error};
use crate::notify::Notifier;
use crate::plugins::LivePlugins;
use crate::store::Store;
use camara_auth::{AuthError, TokenVerifier};

/// Everything a request handler or the SIP event loop needs.
pub struct Gateway {
    pub config: GatewayConfig,
    pub verifier: Arc<TokenVerifier>,
    /// The network-side demo endpoint, when it stands in for the telco network.
    pub demo: Option<Arc<crate::demo::DemoEndpoint>>,
    pub plugins: Arc<LivePlugins>,
    pub store: Store,
    pub notifier: Notifier,
    pub sip: UserAgent,
    pub network: NetworkContext,
    /// The media anchor, and the media of each call by session id.
    pub media: camara_media::MediaAnchor,
    pub media_sessions: crate::calls::MediaSessions,
    /// Re-INVITEs waiting for their answer.
    pub reoffers: crate::calls::Reoffers,
    /// SIP registration bindings (`sip-account` mode).
    pub bindings: crate::bindings::Bindings,
    /// The incoming calls still ringing.
    pub ringing: crate::incoming::RingingCalls,
    /// Set once a shutdown signal arrived.
    pub drain: crate::shutdown::Drain,
    /// Per-client request budget.
    pub rate_limiter: governor::DefaultKeyedRateLimiter<String>,
    /// Requests in progress per API client ([`crate::api::ClientSlots`]).
    pub client_slots: std::sync::Arc<crate::api::ClientSlots>,
}

/// A started gateway and the addresses it listens on.
pub struct RunningGateway {
    pub http_addr: SocketAddr,
    pub sip_udp_addr: Option<SocketAddr>,
    pub sip_tcp_addr: Option<SocketAddr>,
    pub sip_tls_addr: Option<SocketAddr>,
    pub gateway: Arc<Gateway>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    expiry: JoinHandle<()>,
}

impl RunningGateway {
    /// Stops serving HTTP and SIP and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.server).await;
        self.expiry.abort();
        self.gateway.sip.shutdown().await;
    }

    /// Serves until Ctrl-C or SIGTERM, then drains ([`crate::shutdown`]) and stops; a second
    /// signal during the drain returns at once.
    pub async fn serve_until_signal(self) {
        #[cfg(unix)]
        tokio::spawn(reload_on_hangup(self.gateway.clone()));
        let mut signals = Signals::new();
        signals.next().await;
        tracing::info!("shutdown signal: draining");
        tokio::select! {
            () = crate::shutdown::drain(&self.gateway) => {}
            () = signals.next() => {
                tracing::warn!("second signal: exiting without finishing the drain");
                return;
            }
        }
        tracing::info!("shutting down");
        self.stop().await;
    }
}

/// Reloads the plugins on each SIGHUP, as daemons re-read their configuration.
#[cfg(unix)]
async fn reload_on_hangup(gw: Arc<Gateway>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("no SIGHUP handler: plugins reload through the admin API only");
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the plugins");
        let _ = gw.reload_plugins().await;
    }
}

impl Gateway {
    /// Reads the plugin section of the configuration file again (the configuration given at
    /// start when there is no file: a component file replaced in place is picked up) and swaps
    /// the plugins in; on an error the running ones stay, and the error says why.
    pub async fn reload_plugins(&self) -> Result<(), crate::plugins::ReloadError> {
        let result = match &self.config.source {
            Some(path) => match GatewayConfig::load(Some(path)) {
                Ok(config) => self.plugins.reload(&config.plugins).await,
                Err(e) => Err(e.into()),
            },
            None => self.plugins.reload(&self.config.plugins).await,
        };
        let outcome = if result.is_ok() { "reloaded" } else { "failed" };
        metrics::counter!(crate::metrics::PLUGIN_RELOADS, "outcome" => outcome).increment(1);
        match &result {
            Ok(()) => {
                let plugins = self.plugins.get();
                tracing::info!(
                    authorization = plugins.authorization.name(),
                    api_mapping = plugins.mapping.name(),
                    notification_routing = plugins.routing.name(),
                    "plugins reloaded"
                );
            }
            Err(e) => tracing::error!("plugins not reloaded, the running ones stay: {e}"),
        }
        result
    }
}

/// SIGINT (Ctrl-C) and, on Unix, SIGTERM.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Self {
        Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler"),
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = self.term.recv() => {} }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Whether `[auth]` names any source of token keys.
pub fn auth_configured(auth: &camara_auth::VerifierConfig) -> bool {
    auth.issuer.is_some() || auth.jwks_file.is_some() || auth.jwks_url.is_some() || auth.introspection.is_some()
}

/// The development client's secret is in the README: beyond loopback, anyone who reaches the
/// token endpoint gets tokens for its line.
fn warn_of_published_secrets(server: &camara_oauth::OAuthServer, http_addr: SocketAddr) {
    let published =
        server.config().clients.iter().find(|c| c.client_secret.as_deref() == Some(camara_oauth::DEMO_SCRIPT_SECRET));
    if let Some(client) = published
        && !http_addr.ip().is_loopback()
    {
        tracing::warn!(
            client_id = client.client_id,
            %http_addr,
            "a client with the published development secret is served beyond loopback: remove it from [oauth_server] clients"
        );
    }
}

/// Opens the storage `[storage]` names.
async fn open_store(config: &crate::config::StorageConfig) -> anyhow::Result<Arc<dyn camara_store::Store>> {
    use crate::config::StorageBackend;
    Ok(match config.backend() {
        StorageBackend::Redb => {
            let path = config.path.as_deref().context("[storage] backend = \"redb\" needs a path")?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            tracing::info!(path = %path.display(), "state kept in redb");
            Arc::new(camara_store::RedbStore::open(path)?)
        }
        StorageBackend::Memory => {
            tracing::warn!("[storage] keeps the state in memory: it is lost on exit");
            Arc::new(camara_store::MemoryStore::new())
        }
        StorageBackend::Redis => {
            let url = config.url.clone().context("[storage] backend = \"redis\" needs a url")?;
            let redis = camara_store::RedisConfig {
                url,
                key_prefix: config.key_prefix.clone(),
                node_id: config.node_id.clone(),
            };
            let store = camara_store::RedisStore::connect(redis).await.context("[storage] cannot reach Redis")?;
            match store.durability_gap().await {
                Ok(None) => {}
                Ok(Some(why)) => tracing::warn!("Redis may lose writes the gateway acknowledged: {why}"),
                Err(e) => tracing::info!("Redis's durability settings not readable: {e}"),
            }
            tracing::info!(prefix = config.key_prefix, "state kept in Redis");
            Arc::new(store)
        }
    })
}

/// Starts the gateway described by `config`.
pub async fn start(config: GatewayConfig) -> anyhow::Result<RunningGateway> {
    // Installed first: what is recorded before there is a recorder is lost.
    crate::metrics::handle();
    let mut config = config;
    // Bound first: the built-in OAuth server's issuer and the relay's URLs are on this address.
    let listener = bind_tcp(Listener::HttpApi, config.http.listen).await?;
    let http_addr = listener.local_addr()?;
    if config.http.public_base_url.is_none() {
        config.http.public_base_url = Some(format!("http://{http_addr}"));
    }
    let base_url = config.public_base_url();
    let oauth_server = if config.oauth_server.enabled {
        if config.oauth_server.issuer == camara_oauth::OAuthConfig::default().issuer {
            config.oauth_server.issuer = format!("{base_url}/oauth");
        }
        let server = Arc::new(camara_oauth::OAuthServer::new(config.oauth_server.clone())?);
        if !auth_configured(&config.auth) {
            // Tokens of the built-in provider are verified exactly as a real IdP's: discovery.
            config.auth.issuer = Some(server.issuer().to_string());
            config.auth.allow_http |= server.issuer().starts_with("http://");
            if config.auth.audiences.is_empty() {
                config.auth.audiences = vec![server.audience().to_string()];
            }
            tracing::info!(issuer = server.issuer(), "tokens come from the built-in OAuth server");
            Some(server)
        } else if config.auth.issuer.as_deref() == Some(server.issuer()) {
            Some(server)
        } else {
            // `[auth]` trusts another issuer: the demo provider (with its demo users) is not
            // served next to a real one, whatever the defaults say.
            tracing::info!("[auth] names another issuer: the built-in OAuth server is not served");
            None
        }
    } else {
        None
    };
    if let Some(server) = &oauth_server {
        warn_of_published_secrets(server, http_addr);
    }
    let verifier = Arc::new(TokenVerifier::new(config.auth.clone())?);
    let own_issuer = oauth_server.as_ref().is_some_and(|o| config.auth.issuer.as_deref() == Some(o.issuer()));
    if !own_issuer {
        match verifier.preload().await {
            // The IdP may come up after the gateway: requests answer 503 until it does.
            Err(AuthError::KeySource(why)) => tracing::warn!("token keys not loaded yet: {why}"),
            other => other?,
        }
    }
    if !verifier.is_configured() {
        tracing::warn!("no [auth] issuer, jwks_file or jwks_url: every API call will be refused with 401");
    }
    let plugins = Arc::new(crate::plugins::LivePlugins::load(&config.plugins).await?);
    let store = Store::new(open_store(&config.storage).await?, &config.storage.node_id);

    let sip_tls = config.sip.tls.as_ref().map(|tls| tls.load()).transpose()?;
    let (sip, sip_events) = UserAgent::start(SipConfig {
        udp_listen: config.sip.udp_listen,
        tcp_listen: config.sip.tcp_listen,
        tls_listen: config.sip.tls_listen,
        tls: sip_tls,
        advertised_host: config.sip.advertised_host.clone(),
        user_agent: format!("camara-webrtc-gateway/{}", env!("CARGO_PKG_VERSION")),
        timers: camara_sip::TimerConfig {
            session_expires: config.sip.session_expires_seconds,
            min_se: config.sip.min_se_seconds.max(1),
            ..Default::default()
        },
    })
    .await
    .map_err(|e| sip_error(e, Listener::Sip))?;
    let sip_udp_addr = sip.local_addr(Transport::Udp);
    let sip_tcp_addr = sip.local_addr(Transport::Tcp);
    let sip_tls_addr = sip.local_addr(Transport::Tls);
    let sip_ip = sip_udp_addr
        .or(sip_tcp_addr)
        .or(sip_tls_addr)
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let local_host = config.sip.advertised_host.clone().unwrap_or_else(|| sip_ip.clone());

    let demo = if config.device_side.demo_endpoint && config.sip.next_hop.is_none() {
        let demo =
            crate::demo::DemoEndpoint::start(config.device_side.demo_endpoint_listen, sip_udp_addr, store.clone())
                .await?;
        config.sip.next_hop = Some(demo.sip_addr);
        config.sip.next_hop_transport = crate::config::SipTransportName::Udp;
        Some(demo)
    } else {
        None
    };
    let relay = if config.device_side.relay {
        if config.relay.public_base_url.is_none() {
            config.relay.public_base_url = Some(base_url.clone());
        }
        let claim = config.oauth_server.phone_number_claim.clone();
        let authenticator = Arc::new(camara_relay::TokenVerifierAuthenticator::new(verifier.clone(), claim));
        Some(camara_relay::Relay::new(config.relay.clone(), authenticator)?)
    } else {
        None
    };
    let mut notifier = Notifier::new(
        plugins.clone(),
        store.clone(),
        format!("{}{}", config.public_base_url(), config.api.events_base),
        Duration::from_millis(config.notifications.request_timeout_ms),
        config.notifications.sink_policy(),
        config.notifications.retry_schedule(),
    );
    if let Some(relay) = &relay {
        notifier = notifier.with_own_relay(relay.sink_url_prefix());
    }
    let sip_address: std::net::IpAddr = sip_ip.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    let (media_events_tx, media_events) = tokio::sync::mpsc::unbounded_channel();
    let media = camara_media::MediaAnchor::new(config.media.anchor(sip_address)?, media_events_tx);
    let gateway = Arc::new(Gateway {
        network: NetworkContext { local_host, next_hop: config.sip.next_hop.map(|a| a.to_string()) },
        media,
        media_sessions: Default::default(),
        bindings: Default::default(),
        reoffers: Default::default(),
        ringing: Default::default(),
        drain: Default::default(),
        rate_limiter: governor::RateLimiter::keyed(
            governor::Quota::per_second(
                std::num::NonZeroU32::new(config.api.rate_limit_per_second.max(1)).expect("at least 1"),
            )
            .allow_burst(std::num::NonZeroU32::new(config.api.rate_limit_burst.max(1)).expect("at least 1")),
        ),
        client_slots: crate::api::ClientSlots::new(config.api.max_requests_in_progress_per_client),
        config,
        verifier,
        demo,
        plugins,
        store,
        notifier,
        sip,
    });
    gateway.notifier.resume_pending().await;
    crate::recovery::end_calls_of_previous_run(&gateway).await;
    tokio::spawn(crate::call_actors::run(gateway.clone(), sip_events));
    tokio::spawn(crate::calls::run_media_events(gateway.clone(), media_events));
    gateway.sip.set_offer_answerer(Arc::new(crate::calls::NetworkOffers(Arc::downgrade(&gateway))));
    let expiry = tokio::spawn(crate::lifecycle::run(gateway.clone()));
    if let Some(reported) = gateway.notifier.unreachable_subscriptions() {
        tokio::spawn(crate::lifecycle::end_unreachable(gateway.clone(), reported));
    }
    // Off the start-up path: a slow registrar must not delay the API.
    tokio::spawn(crate::bindings::restore(gateway.clone()));
    if gateway.config.storage.is_shared() {
        let node_address = gateway.config.storage.node_address.clone().unwrap_or_else(|| format!("http://{http_addr}"));
        tokio::spawn(crate::cluster::run(gateway.clone(), node_address));
    }

    let mut router = crate::api::router(gateway.clone());
    if let Some(admin) = crate::admin::router(gateway.clone()) {
        router = router.merge(admin);
    }
    if let Some(oauth) = oauth_server {
        router = router.merge(oauth.router());
    }
    if let Some(relay) = &relay {
        router = router.merge(relay.router());
    }
    router = crate::device_pages::add(router, &gateway);
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async {
            let _ = shutdown_rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!("HTTP server failed: {e}");
        }
    });
    tracing::info!(%http_addr, ?sip_udp_addr, ?sip_tcp_addr, ?sip_tls_addr, "gateway listening");
    Ok(RunningGateway {
        http_addr,
        sip_udp_addr,
        sip_tcp_addr,
        sip_tls_addr,
        gateway,
        shutdown: Some(shutdown_tx),
        server,
        expiry,
    })
}
