//! The registration client (RFC 3261 s.10.2) as a sans-IO state machine.
//!
//! One [`Registration`] keeps one contact bound to an address of record: it
//! sends REGISTER over a non-INVITE client transaction, answers Digest
//! challenges (RFC 3261 s.22, RFC 7616 / RFC 8760; the gateway has no SIM, so
//! no AKA), refreshes the binding before it expires, retries failures with
//! exponential backoff, and removes the binding (Expires: 0) on request.
//!
//! Every REGISTER of a binding shares one Call-ID and From tag, with an
//! increasing CSeq (s.10.2.4); only one is in flight at a time (s.10.2).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::digest::{Challenge, DigestInput, authorization};
use crate::message::{
    Headers, Message, Method, Request, Response, SipHeaders, Transmit, header_param, name_addr_uri, new_branch,
    random_token,
};
use crate::transaction::{ClientOutput, NonInviteClient, TimerConfig};
use crate::{RegisterRequest, RegistrationEvent, SipError};

/// First retry delay after a failure; doubled on each further failure.
pub const RETRY_BASE: Duration = Duration::from_secs(10);
/// Cap on the retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(600);
/// Challenges answered within one attempt (the first, then `stale=true` ones).
const MAX_CHALLENGES_PER_ATTEMPT: u32 = 3;

/// Identifiers and local addressing chosen by the endpoint for a binding.
#[derive(Debug, Clone)]
pub struct RegistrationSetup {
    /// Constant for the binding; also its id.
    pub call_id: String,
    pub from_tag: String,
    /// Host written in Via and Contact.
    pub local_host: String,
    /// Port of the listener of the binding's transport.
    pub local_port: u16,
    pub user_agent: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationOutput {
    Transmit(Transmit),
    Event(RegistrationEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationState {
    /// A REGISTER (first, refresh or retry) is in flight.
    Registering,
    /// Bound; waiting for the refresh time.
    Registered,
    /// The last attempt failed; waiting for the retry time.
    Backoff,
    /// The un-REGISTER is in flight.
    Unregistering,
    /// `Unregistered` was reported; nothing more will happen.
    Finished,
}

#[derive(Debug)]
struct Auth {
    challenge: Challenge,
    /// Answer in Proxy-Authorization (a 407) rather than Authorization (a 401).
    proxy: bool,
    /// Nonce count already used with this nonce.
    nc: u32,
}

#[derive(Debug)]
pub struct Registration {
    request: RegisterRequest,
    setup: RegistrationSetup,
    timers: TimerConfig,
    state: RegistrationState,
    cseq: u32,
    tx: Option<NonInviteClient>,
    /// The Expires of the REGISTER in flight (0: un-REGISTER).
    tx_expires: u32,
    /// What is asked for; raised by a 423's Min-Expires.
    expires: u32,
    registered_once: bool,
    unregister_requested: bool,
    /// The next refresh or retry.
    next_at: Option<Instant>,
    /// The last challenge, answered again (with the next nonce count) on
    /// later REGISTERs so refreshes are not challenged every time.
    auth: Option<Auth>,
    challenges_in_attempt: u32,
    failures: u32,
    outputs: VecDeque<RegistrationOutput>,
}

/// When to refresh a binding granted for `expires` seconds: halfway, and at
/// least 5 s before it ends (but not sooner than 1 s).
pub fn refresh_delay(expires: u32) -> Duration {
    Duration::from_secs(u64::from((expires / 2).min(expires.saturating_sub(5)).max(1)))
}

/// Retry delay after `failures` consecutive failures (1 for the first).
pub fn retry_delay(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    (RETRY_BASE * factor).min(RETRY_MAX)
}

impl Registration {
    /// Starts the binding; the first REGISTER is queued at once.
    pub fn new(request: RegisterRequest, setup: RegistrationSetup, timers: TimerConfig, now: Instant) -> Self {
        let expires = request.expires;
        let mut registration = Self {
            request,
            setup,
            timers,
            state: RegistrationState::Registering,
            cseq: 0,
            tx: None,
            tx_expires: expires,
            expires,
            registered_once: false,
            unregister_requested: false,
            next_at: None,
            auth: None,
            challenges_in_attempt: 0,
            failures: 0,
            outputs: VecDeque::new(),
        };
        registration.begin_attempt(now);
        registration
    }

    pub fn binding_id(&self) -> &str {
        &self.setup.call_id
    }

    pub fn state(&self) -> RegistrationState {
        self.state
    }

    pub fn is_finished(&self) -> bool {
        self.state == RegistrationState::Finished
    }

    pub fn transport(&self) -> crate::Transport {
        self.request.transport
    }

    /// The Contact URI this binding registers.
    pub fn contact_uri(&self) -> String {
        let user = if self.request.contact_user.is_empty() {
            String::new()
        } else {
            format!("{}@", self.request.contact_user)
        };
        format!(
            "sip:{user}{}:{};transport={}",
            self.setup.local_host,
            self.setup.local_port,
            self.request.transport.uri_param()
        )
    }

    /// Removes the binding (REGISTER with Expires: 0), once any REGISTER in
    /// flight has its answer. `Unregistered` is the last event.
    pub fn unregister(&mut self, now: Instant) -> Result<(), SipError> {
        if self.unregister_requested || self.is_finished() {
            return Err(SipError::WrongState { call_id: self.setup.call_id.clone(), reason: "already unregistering" });
        }
        self.unregister_requested = true;
        if self.tx.is_none() {
            self.begin_attempt(now);
        }
        Ok(())
    }

    pub fn handle_response(&mut self, response: Response, now: Instant) {
        let current = response.cseq().is_some_and(|(n, m)| n == self.cseq && m == Method::Register);
        match self.tx.as_mut() {
            Some(tx) if current => tx.handle_response(response, now),
            _ => {
                tracing::debug!(status = response.status, binding = %self.setup.call_id, "stray REGISTER response dropped");
                return;
            }
        }
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(tx) = self.tx.as_mut() {
            tx.handle_timeout(now);
            self.pump(now);
        }
        if self.tx.is_none() && self.next_at.is_some_and(|at| at <= now) {
            self.begin_attempt(now);
        }
    }

    /// The transport could not reach `dest`.
    pub fn transport_failed(&mut self, dest: std::net::SocketAddr, now: Instant) {
        if dest != self.request.registrar {
            return;
        }
        if let Some(tx) = self.tx.as_mut() {
            tx.transport_error();
            self.tx = None;
            self.on_no_response("transport error", now);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self.tx.as_ref().and_then(NonInviteClient::poll_timeout);
        [tx, self.next_at].into_iter().flatten().min()
    }

    pub fn poll_output(&mut self) -> Option<RegistrationOutput> {
        self.outputs.pop_front()
    }

    fn emit(&mut self, event: RegistrationEvent) {
        tracing::info!(binding = %self.setup.call_id, aor = %self.request.aor, ?event, "registration");
        self.outputs.push_back(RegistrationOutput::Event(event));
    }

    fn pump(&mut self, now: Instant) {
        let mut finals = Vec::new();
        if let Some(tx) = self.tx.as_mut() {
            while let Some(out) = tx.poll_output() {
                match out {
                    ClientOutput::Transmit(request) => self.outputs.push_back(RegistrationOutput::Transmit(Transmit {
                        transport: self.request.transport,
                        dest: self.request.registrar,
                        message: Message::Request(request),
                    })),
                    ClientOutput::Response(r) if r.status < 200 => {}
                    ClientOutput::Response(r) => finals.push(Some(r)),
                    ClientOutput::Timeout => finals.push(None),
                }
            }
        }
        // At most one final outcome per transaction; it ends our use of it
        // (a stray retransmission has a stale CSeq and is dropped).
        if let Some(outcome) = finals.into_iter().next() {
            self.tx = None;
            match outcome {
                Some(response) => self.on_final(response, now),
                None => self.on_no_response("timeout", now),
            }
        }
    }

    fn begin_attempt(&mut self, now: Instant) {
        self.challenges_in_attempt = 0;
        self.next_at = None;
        self.state =
            if self.unregister_requested { RegistrationState::Unregistering } else { RegistrationState::Registering };
        self.send_register(now);
    }

    fn send_register(&mut self, now: Instant) {
        self.cseq += 1;
        let expires = if self.unregister_requested { 0 } else { self.expires };
        let request_uri = format!("sip:{}", self.request.domain);
        let (host, port) = (&self.setup.local_host, self.setup.local_port);
        let mut headers = Headers::default();
        headers.push("Via", self.request.transport.via(host, port, &new_branch()));
        headers.push("Max-Forwards", "70");
        headers.push("From", format!("<{}>;tag={}", self.request.aor, self.setup.from_tag));
        headers.push("To", format!("<{}>", self.request.aor));
        headers.push("Call-ID", self.setup.call_id.as_str());
        headers.push("CSeq", format!("{} REGISTER", self.cseq));
        headers.push("Contact", format!("<{}>", self.contact_uri()));
        headers.push("Expires", expires.to_string());
        if let Some(auth) = self.auth.as_mut() {
            auth.nc += 1;
            let cnonce = random_token();
            let value = authorization(
                &auth.challenge,
                &DigestInput {
                    username: &self.request.username,
                    password: &self.request.password,
                    method: "REGISTER",
                    uri: &request_uri,
                    nc: auth.nc,
                    cnonce: &cnonce,
                },
            );
            let name = if auth.proxy { "Proxy-Authorization" } else { "Authorization" };
            headers.push(name, value);
        }
        if !self.setup.user_agent.is_empty() {
            headers.push("User-Agent", self.setup.user_agent.as_str());
        }
        let request = Request { method: Method::Register, uri: request_uri, headers, body: Vec::new() };
        self.tx_expires = expires;
        self.tx = Some(NonInviteClient::new(request, self.request.transport.is_reliable(), self.timers, now));
        self.pump(now);
    }

    fn on_final(&mut self, response: Response, now: Instant) {
        match response.status {
            200..=299 => self.on_success(&response, now),
            401 | 407 => self.on_challenge(&response, now),
            423 => {
                let min = response.headers.get("Min-Expires").and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(min) if self.tx_expires != 0 && min > self.expires => {
                        tracing::info!(binding = %self.setup.call_id, min, "registrar asks for a longer Expires");
                        self.expires = min;
                        self.send_register(now);
                    }
                    _ => self.on_failure(Some(423), response.reason.clone(), now),
                }
            }
            status => self.on_failure(Some(status), response.reason.clone(), now),
        }
    }

    fn on_challenge(&mut self, response: &Response, now: Instant) {
        let proxy = response.status == 407;
        let header = if proxy { "Proxy-Authenticate" } else { "WWW-Authenticate" };
        let challenge = match Challenge::best(response.headers.get_all(header)) {
            Ok(challenge) => challenge,
            Err(error) => {
                self.on_failure(Some(response.status), format!("{} ({header}: {error})", response.reason), now);
                return;
            }
        };
        if self.challenges_in_attempt > 0 && !challenge.stale {
            self.auth = None;
            self.on_failure(Some(response.status), format!("{} (credentials rejected)", response.reason), now);
            return;
        }
        if self.challenges_in_attempt >= MAX_CHALLENGES_PER_ATTEMPT {
            self.auth = None;
            self.on_failure(Some(response.status), format!("{} (too many challenges)", response.reason), now);
            return;
        }
        self.challenges_in_attempt += 1;
        self.auth = Some(Auth { challenge, proxy, nc: 0 });
        self.send_register(now);
    }

    /// Expiry granted to our contact: its `expires` parameter in the 2xx,
    /// else the Expires header, else what was asked.
    fn granted_expires(&self, response: &Response) -> u32 {
        let ours = contact_key(&self.contact_uri());
        let from_contact = response
            .headers
            .get_all("Contact")
            .filter(|c| contact_key(name_addr_uri(c)) == ours)
            .find_map(|c| header_param(c, "expires").flatten()?.parse::<u32>().ok());
        from_contact
            .or_else(|| response.headers.get("Expires").and_then(|v| v.trim().parse().ok()))
            .unwrap_or(self.tx_expires)
    }

    fn on_success(&mut self, response: &Response, now: Instant) {
        self.failures = 0;
        if self.tx_expires == 0 {
            self.finish();
            return;
        }
        let expires = self.granted_expires(response);
        if expires == 0 {
            self.on_failure(Some(response.status), "the registrar granted no binding time".into(), now);
            return;
        }
        let event = if self.registered_once {
            RegistrationEvent::Refreshed { expires }
        } else {
            RegistrationEvent::Registered { expires }
        };
        self.registered_once = true;
        self.emit(event);
        if self.unregister_requested {
            self.begin_attempt(now);
            return;
        }
        self.state = RegistrationState::Registered;
        self.next_at = Some(now + refresh_delay(expires));
    }

    fn on_no_response(&mut self, reason: &str, now: Instant) {
        self.on_failure(None, reason.to_string(), now);
    }

    fn on_failure(&mut self, status: Option<u16>, reason: String, now: Instant) {
        self.emit(RegistrationEvent::Failed { status, reason });
        if self.tx_expires == 0 {
            // The binding lapses on its own.
            self.finish();
            return;
        }
        if self.unregister_requested {
            self.begin_attempt(now);
            return;
        }
        self.failures += 1;
        self.state = RegistrationState::Backoff;
        self.next_at = Some(now + retry_delay(self.failures));
    }

    fn finish(&mut self) {
        self.state = RegistrationState::Finished;
        self.tx = None;
        self.next_at = None;
        self.emit(RegistrationEvent::Unregistered);
    }
}

/// `user@host:port` of a SIP URI, lower-cased, for comparing contacts.
fn contact_key(uri: &str) -> String {
    let uri = uri.trim();
    let without_scheme = uri
        .split_once(':')
        .filter(|(s, _)| s.eq_ignore_ascii_case("sip") || s.eq_ignore_ascii_case("sips"))
        .map_or(uri, |(_, rest)| rest);
    without_scheme.split([';', '?']).next().unwrap_or("").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;
    use crate::digest::{DigestAlgorithm, response as digest_response};
    use crate::message::response_to;

    const REGISTRAR: &str = "192.0.2.50:5060";

    fn request(expires: u32) -> RegisterRequest {
        RegisterRequest {
            registrar: REGISTRAR.parse().unwrap(),
            transport: Transport::Udp,
            domain: "operator.com".into(),
            aor: "sip:+818000000001@operator.com".into(),
            contact_user: "+818000000001".into(),
            username: "user1".into(),
            password: "secret".into(),
            expires,
        }
    }

    fn setup() -> RegistrationSetup {
        RegistrationSetup {
            call_id: "reg1@gw.example.com".into(),
            from_tag: "ft1".into(),
            local_host: "gw.example.com".into(),
            local_port: 5060,
            user_agent: "test".into(),
        }
    }

    fn drain(reg: &mut Registration) -> (Vec<Request>, Vec<RegistrationEvent>) {
        let (mut sent, mut events) = (Vec::new(), Vec::new());
        while let Some(out) = reg.poll_output() {
            match out {
                RegistrationOutput::Transmit(t) => {
                    assert_eq!(t.dest, REGISTRAR.parse().unwrap());
                    let Message::Request(r) = t.message else { panic!("response sent") };
                    sent.push(r);
                }
                RegistrationOutput::Event(e) => events.push(e),
            }
        }
        (sent, events)
    }

    fn one_request(reg: &mut Registration) -> Request {
        let (sent, events) = drain(reg);
        assert!(events.is_empty(), "{events:?}");
        let [r] = sent.try_into().unwrap();
        r
    }

    fn challenge_401(req: &Request, nonce: &str, stale: bool) -> Response {
        let mut r = response_to(req, 401, "Unauthorized", Some("rt"));
        let stale = if stale { ", stale=true" } else { "" };
        r.headers.push(
            "WWW-Authenticate",
            format!(
                "Digest realm=\"operator.com\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\", opaque=\"op\"{stale}"
            ),
        );
        r
    }

    fn ok(req: &Request, contact_expires: Option<u32>, expires: Option<u32>) -> Response {
        let mut r = response_to(req, 200, "OK", Some("rt"));
        if let Some(e) = contact_expires {
            r.headers.push("Contact", "<sip:other@198.51.100.1:5060>;expires=999".to_string());
            r.headers.push("Contact", format!("<sip:+818000000001@GW.example.com:5060;transport=udp>;expires={e}"));
        }
        if let Some(e) = expires {
            r.headers.push("Expires", e.to_string());
        }
        r
    }

    /// Parses `Authorization` params into (name, raw value).
    fn auth_params(value: &str) -> Vec<(String, String)> {
        let rest = value.strip_prefix("Digest ").unwrap();
        crate::message::split_list(rest)
            .into_iter()
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.trim().to_string(), v.trim().to_string())
            })
            .collect()
    }

    fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
        &params.iter().find(|(k, _)| k == name).unwrap().1
    }

    #[test]
    fn challenge_then_success_then_refresh_then_unregister() {
        let t0 = Instant::now();
        let mut reg = Registration::new(request(3600), setup(), TimerConfig::default(), t0);
        let first = one_request(&mut reg);
        assert_eq!(first.method, Method::Register);
        assert_eq!(first.uri, "sip:operator.com");
        assert_eq!(first.headers.get("From"), Some("<sip:+818000000001@operator.com>;tag=ft1"));
        assert_eq!(first.headers.get("To"), Some("<sip:+818000000001@operator.com>"));
        assert_eq!(first.headers.get("Contact"), Some("<sip:+818000000001@gw.example.com:5060;transport=udp>"));
        assert_eq!(first.headers.get("Expires"), Some("3600"));
        assert_eq!(first.headers.get("CSeq"), Some("1 REGISTER"));
        assert_eq!(first.headers.get("Authorization"), None);
        assert_eq!(reg.state(), RegistrationState::Registering);

        // 401: answered once, same Call-ID, next CSeq, new branch.
        reg.handle_response(challenge_401(&first, "n1", false), t0);
        let second = one_request(&mut reg);
        assert_eq!(second.call_id(), first.call_id());
        assert_eq!(second.headers.get("CSeq"), Some("2 REGISTER"));
        assert_ne!(second.top_via().unwrap().branch, first.top_via().unwrap().branch);
        let auth = second.headers.get("Authorization").unwrap();
        let params = auth_params(auth);
        assert_eq!(param(&params, "username"), "\"user1\"");
        assert_eq!(param(&params, "realm"), "\"operator.com\"");
        assert_eq!(param(&params, "nonce"), "\"n1\"");
        assert_eq!(param(&params, "uri"), "\"sip:operator.com\"");
        assert_eq!(param(&params, "algorithm"), "MD5");
        assert_eq!(param(&params, "qop"), "auth");
        assert_eq!(param(&params, "nc"), "00000001");
        assert_eq!(param(&params, "opaque"), "\"op\"");
        // The response is the RFC computation over what was sent.
        let cnonce = param(&params, "cnonce").trim_matches('"').to_string();
        let challenge =
            Challenge::parse(challenge_401(&first, "n1", false).headers.get("WWW-Authenticate").unwrap()).unwrap();
        let expected = digest_response(
            &challenge,
            &DigestInput {
                username: "user1",
                password: "secret",
                method: "REGISTER",
                uri: "sip:operator.com",
                nc: 1,
                cnonce: &cnonce,
            },
        );
        assert_eq!(param(&params, "response"), format!("\"{expected}\""));
        assert_eq!(challenge.algorithm, DigestAlgorithm::Md5);

        // A stale response (old CSeq) is dropped.
        reg.handle_response(ok(&first, None, Some(3600)), t0);
        assert_eq!(drain(&mut reg), (vec![], vec![]));

        // 200: our Contact's expires wins over the Expires header.
        let t1 = t0 + Duration::from_millis(100);
        reg.handle_response(ok(&second, Some(600), Some(3600)), t1);
        let (sent, events) = drain(&mut reg);
        assert!(sent.is_empty());
        assert_eq!(events, [RegistrationEvent::Registered { expires: 600 }]);
        assert_eq!(reg.state(), RegistrationState::Registered);
        // The refresh at half the granted time.
        assert_eq!(reg.poll_timeout(), Some(t1 + Duration::from_secs(300)));

        // The refresh carries credentials for the same nonce with nc=2.
        let t2 = t1 + Duration::from_secs(300);
        reg.handle_timeout(t2);
        let refresh = one_request(&mut reg);
        assert_eq!(refresh.headers.get("CSeq"), Some("3 REGISTER"));
        assert_eq!(refresh.headers.get("Expires"), Some("3600"));
        let params = auth_params(refresh.headers.get("Authorization").unwrap());
        assert_eq!(param(&params, "nc"), "00000002");
        // Only the Expires header: that is the granted time.
        reg.handle_response(ok(&refresh, None, Some(120)), t2);
        assert_eq!(drain(&mut reg).1, [RegistrationEvent::Refreshed { expires: 120 }]);
        assert_eq!(reg.poll_timeout(), Some(t2 + Duration::from_secs(60)));

        // Un-REGISTER: Expires 0, then Unregistered.
        reg.unregister(t2).unwrap();
        assert!(reg.unregister(t2).is_err());
        let un = one_request(&mut reg);
        assert_eq!(un.headers.get("Expires"), Some("0"));
        assert_eq!(un.headers.get("CSeq"), Some("4 REGISTER"));
        assert_eq!(reg.state(), RegistrationState::Unregistering);
        reg.handle_response(ok(&un, None, None), t2);
        assert_eq!(drain(&mut reg).1, [RegistrationEvent::Unregistered]);
        assert!(reg.is_finished());
        assert_eq!(reg.poll_timeout(), None);
    }

    #[test]
    fn second_challenge_fails_unless_stale() {
        let t0 = Instant::now();
        let mut reg = Registration::new(request(3600), setup(), TimerConfig::default(), t0);
        let r1 = one_request(&mut reg);
        reg.handle_response(challenge_401(&r1, "n1", false), t0);
        let r2 = one_request(&mut reg);
        // stale=true: retried with the new nonce, nc back to 1.
        reg.handle_response(challenge_401(&r2, "n2", true), t0);
        let r3 = one_request(&mut reg);
        let params = auth_params(r3.headers.get("Authorization").unwrap());
        assert_eq!(param(&params, "nonce"), "\"n2\"");
        assert_eq!(param(&params, "nc"), "00000001");
        // A plain second challenge: the credentials are wrong.
        reg.handle_response(challenge_401(&r3, "n3", false), t0);
        let (sent, events) = drain(&mut reg);
        assert!(sent.is_empty());
        assert_eq!(
            events,
            [RegistrationEvent::Failed { status: Some(401), reason: "Unauthorized (credentials rejected)".into() }]
        );
        assert_eq!(reg.state(), RegistrationState::Backoff);
        assert_eq!(reg.poll_timeout(), Some(t0 + RETRY_BASE));
        // The retry starts from scratch, without credentials.
        reg.handle_timeout(t0 + RETRY_BASE);
        let retry = one_request(&mut reg);
        assert_eq!(retry.headers.get("Authorization"), None);
    }

    #[test]
    fn proxy_challenge_is_answered_in_proxy_authorization_with_sha256() {
        let t0 = Instant::now();
        let mut reg = Registration::new(request(3600), setup(), TimerConfig::default(), t0);
        let r1 = one_request(&mut reg);
        let mut challenge = response_to(&r1, 407, "Proxy Authentication Required", Some("x"));
        challenge.headers.push("Proxy-Authenticate", "Digest realm=\"p\", nonce=\"a\", algorithm=MD5, qop=\"auth\"");
        challenge
            .headers
            .push("Proxy-Authenticate", "Digest realm=\"p\", nonce=\"b\", algorithm=SHA-256, qop=\"auth\"");
        reg.handle_response(challenge, t0);
        let r2 = one_request(&mut reg);
        assert_eq!(r2.headers.get("Authorization"), None);
        let params = auth_params(r2.headers.get("Proxy-Authorization").unwrap());
        assert_eq!(param(&params, "algorithm"), "SHA-256");
        assert_eq!(param(&params, "nonce"), "\"b\"");
        assert_eq!(param(&params, "response").len(), 64 + 2);
    }

    #[test]
    fn failures_back_off_exponentially_and_recover() {
        let t0 = Instant::now();
        let mut reg = Registration::new(request(3600), setup(), TimerConfig::default(), t0);
        let mut now = t0;
        let mut delays = Vec::new();
        let mut req = one_request(&mut reg);
        for i in 0..8 {
            if i % 2 == 0 {
                reg.handle_response(response_to(&req, 503, "Service Unavailable", None), now);
                let (_, events) = drain(&mut reg);
                assert_eq!(
                    events,
                    [RegistrationEvent::Failed { status: Some(503), reason: "Service Unavailable".into() }]
                );
            } else {
                // No answer at all: Timer F.
                let timeout = now + TimerConfig::default().transaction_timeout();
                while let Some(at) = reg.poll_timeout().filter(|t| *t <= timeout) {
                    reg.handle_timeout(at);
                    now = at;
                }
                let (_, events) = drain(&mut reg);
                assert_eq!(events, [RegistrationEvent::Failed { status: None, reason: "timeout".into() }]);
            }
            let at = reg.poll_timeout().unwrap();
            delays.push((at - now).as_secs());
            reg.handle_timeout(at);
            now = at;
            req = one_request(&mut reg);
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 600, 600]);
        reg.handle_response(ok(&req, None, Some(60)), now);
        assert_eq!(drain(&mut reg).1, [RegistrationEvent::Registered { expires: 60 }]);
        // Backoff reset after a success.
        assert_eq!(reg.poll_timeout(), Some(now + Duration::from_secs(30)));
        reg.handle_timeout(now + Duration::from_secs(30));
        let refresh = one_request(&mut reg);
        reg.handle_response(response_to(&refresh, 500, "Oops", None), now);
        drain(&mut reg);
        assert_eq!(reg.poll_timeout(), Some(now + RETRY_BASE));
    }

    #[test]
    fn unregister_waits_for_the_register_in_flight_and_ends_even_on_failure() {
        let t0 = Instant::now();
        let mut reg = Registration::new(request(3600), setup(), TimerConfig::default(), t0);
        let r1 = one_request(&mut reg);
        reg.unregister(t0).unwrap();
        // Only one REGISTER in flight.
        assert_eq!(drain(&mut reg), (vec![], vec![]));
        // The 401 to the REGISTER is answered by the un-REGISTER.
        reg.handle_response(challenge_401(&r1, "n1", false), t0);
        let un = one_request(&mut reg);
        assert_eq!(un.headers.get("Expires"), Some("0"));
        assert!(un.headers.get("Authorization").is_some());
        reg.handle_response(response_to(&un, 500, "Server Error", None), t0);
        assert_eq!(
            drain(&mut reg).1,
            [
                RegistrationEvent::Failed { status: Some(500), reason: "Server Error".into() },
                RegistrationEvent::Unregistered
            ]
        );
        assert!(reg.is_finished());
    }

    #[test]
    fn interval_too_brief_is_retried_with_min_expires() {
        let t0 = Instant::now();
        let mut reg = Registration::new(request(60), setup(), TimerConfig::default(), t0);
        let r1 = one_request(&mut reg);
        let mut too_brief = response_to(&r1, 423, "Interval Too Brief", None);
        too_brief.headers.push("Min-Expires", "1800");
        reg.handle_response(too_brief, t0);
        let r2 = one_request(&mut reg);
        assert_eq!(r2.headers.get("Expires"), Some("1800"));
    }

    #[test]
    fn over_tcp_a_transport_error_is_a_failure() {
        let t0 = Instant::now();
        let mut req = request(3600);
        req.transport = Transport::Tcp;
        let mut reg = Registration::new(req, setup(), TimerConfig::default(), t0);
        let r1 = one_request(&mut reg);
        assert!(r1.headers.get("Via").unwrap().starts_with("SIP/2.0/TCP "));
        assert!(r1.headers.get("Contact").unwrap().ends_with(";transport=tcp>"));
        reg.transport_failed("198.51.100.99:5060".parse().unwrap(), t0);
        assert_eq!(drain(&mut reg), (vec![], vec![]));
        reg.transport_failed(REGISTRAR.parse().unwrap(), t0);
        assert_eq!(drain(&mut reg).1, [RegistrationEvent::Failed { status: None, reason: "transport error".into() }]);
        assert_eq!(reg.state(), RegistrationState::Backoff);
    }

    #[test]
    fn refresh_and_retry_schedules() {
        assert_eq!(refresh_delay(3600), Duration::from_secs(1800));
        assert_eq!(refresh_delay(8), Duration::from_secs(3));
        assert_eq!(refresh_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(1), RETRY_BASE);
        assert_eq!(retry_delay(100), RETRY_MAX);
    }
}
