//! The confirmed dialog of a call, whichever side created it (RFC 3261 s.12.2), as a sans-IO
//! state machine: the requests we send inside it (re-INVITE and UPDATE offers, RFC 4028 session
//! refreshes, BYE) with their client transactions, target refreshes, and the session timer.
//!
//! [`UacCall`](crate::dialog::UacCall) and [`UasCall`](crate::uas::UasCall) keep what only their
//! side does (the initial INVITE transaction, PRACK, CANCEL) and hand the rest to a [`Dialog`]
//! once the 2xx is on the wire. The owner answers requests from the peer; the dialog only learns
//! from them ([`Dialog::handle_peer_request`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::dialog::CallOutput;
use crate::message::{
    Headers, Message, Method, Request, Response, SipHeaders, Transmit, header_param, name_addr_uri, new_branch,
    uri_socket_addr,
};
use crate::transaction::{ClientOutput, InviteClient, NonInviteClient, TimerConfig};
use crate::{CallEvent, EndCause, SipError, Transport};

/// Methods this user agent accepts, advertised in Allow.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, UPDATE, PRACK, OPTIONS";

/// Which request carries an offer inside a confirmed dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferMethod {
    /// re-INVITE (RFC 3261 s.14): understood by every peer; a three-way handshake.
    Reinvite,
    /// UPDATE (RFC 3311): one transaction, no ACK; the peer must allow it.
    Update,
}

/// Everything that addresses the requests we send in one dialog (s.12.2.1.1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DialogParts {
    pub call_id: String,
    pub transport: Transport,
    /// Host and port written in Via.
    pub local_host: String,
    pub local_port: u16,
    pub user_agent: String,
    /// The From header value of our requests (our URI and tag).
    pub local: String,
    /// The To header value of our requests (the peer's URI and tag).
    pub remote: String,
    /// Our Contact header value.
    pub contact: String,
    pub remote_target: String,
    /// Route headers in the order they are written.
    pub route_set: Vec<String>,
    /// Where requests go when the first route or the target is not an IP literal (no DNS here).
    pub fallback_dest: SocketAddr,
}

impl DialogParts {
    /// A request in the dialog: request-URI the remote target, Route the route set (loose routing).
    pub fn request(&self, method: Method, cseq: u32, branch: &str) -> Request {
        let mut headers = Headers::default();
        headers.push("Via", self.transport.via(&self.local_host, self.local_port, branch));
        headers.push("Max-Forwards", "70");
        for route in &self.route_set {
            headers.push("Route", route.as_str());
        }
        headers.push("From", self.local.as_str());
        headers.push("To", self.remote.as_str());
        headers.push("Call-ID", self.call_id.as_str());
        headers.push("CSeq", format!("{cseq} {method}"));
        Request { method, uri: self.remote_target.clone(), headers, body: Vec::new() }
    }

    /// The first Route, else the remote target.
    pub fn destination(&self) -> SocketAddr {
        let uri = self.route_set.first().map_or(self.remote_target.as_str(), |r| name_addr_uri(r));
        uri_socket_addr(uri).unwrap_or_else(|| {
            tracing::debug!(uri, fallback = %self.fallback_dest, "target host is not an IP literal; using the fallback");
            self.fallback_dest
        })
    }
}

/// A confirmed dialog as the application persists it, to end the call with BYE after a restart
/// ([`Endpoint::end_recovered`](crate::endpoint::Endpoint::end_recovered)).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DialogSnapshot {
    pub parts: DialogParts,
    /// The last CSeq number of ours when the snapshot was taken.
    pub local_cseq: u32,
}

/// The RFC 4028 session timer of a confirmed dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    /// Session interval in seconds.
    pub interval: u32,
    /// We send the refreshes.
    pub we_refresh: bool,
    /// When to send the next refresh; `None` when not ours or one is in flight.
    refresh_at: Option<Instant>,
    /// s.10: with no refresh by then, the session is over: BYE (for the refresher, at the
    /// expiry itself).
    expires_at: Instant,
}

impl SessionTimer {
    pub fn new(interval: u32, we_refresh: bool, now: Instant) -> Self {
        let n = Duration::from_secs(interval.into());
        Self {
            interval,
            we_refresh,
            refresh_at: we_refresh.then(|| now + n / 2),
            // The refresher's own refresh may still be in flight until the very end.
            expires_at: if we_refresh { now + n } else { now + n - Duration::from_secs(32).min(n / 3) },
        }
    }
}

/// `Session-Expires: N;refresher=uac|uas`: the interval and the refresher, if given.
pub fn session_expires(headers: &Headers) -> Option<(u32, Option<String>)> {
    let value = headers.get("Session-Expires")?;
    let interval = value.split(';').next()?.trim().parse::<u32>().ok().filter(|&n| n > 0)?;
    let refresher = header_param(value, "refresher").flatten().map(|r| r.trim().to_ascii_lowercase());
    Some((interval, refresher))
}

/// The remote target a Contact gives (s.12.1.1, s.12.2.1.2): a SIP or SIPS URI that parses.
/// Anything else (`*`, a `tel:` URI, junk) cannot carry in-dialog requests and is ignored with
/// a log line.
pub fn contact_target(headers: &Headers) -> Option<&str> {
    let uri = name_addr_uri(headers.get("Contact")?);
    let parsed = crate::message::parse_sip_uri(uri);
    if parsed.is_ok_and(|(u, _)| matches!(u.scheme, Some(rsip::Scheme::Sip | rsip::Scheme::Sips))) {
        Some(uri)
    } else {
        tracing::warn!(uri, "Contact is not a usable SIP URI; ignored as a remote target");
        None
    }
}

/// The number of a `Min-SE` header.
pub fn min_se(headers: &Headers) -> Option<u32> {
    headers.get("Min-SE")?.split(';').next()?.trim().parse::<u32>().ok().filter(|&n| n > 0)
}

#[derive(Debug)]
enum OfferTransaction {
    Invite(InviteClient),
    Update(NonInviteClient),
}

/// A re-INVITE or UPDATE we sent.
#[derive(Debug)]
struct Offer {
    method: Method,
    cseq: u32,
    branch: String,
    dest: SocketAddr,
    tx: OfferTransaction,
    /// A final response was received (the transaction may still absorb retransmissions).
    answered: bool,
    /// The ACK for a re-INVITE's 2xx, re-sent on each 2xx retransmission.
    ack: Option<Request>,
    /// A session refresh sent by the dialog itself: its outcome is not reported.
    refresh: bool,
    /// The offer it carried; becomes the local SDP once accepted.
    sdp: Option<String>,
}

impl Offer {
    fn is_terminated(&self) -> bool {
        match &self.tx {
            OfferTransaction::Invite(tx) => tx.is_terminated(),
            OfferTransaction::Update(tx) => tx.is_terminated(),
        }
    }

    /// Terminated, or an INVITE still in Proceeding after the dialog ended, which would wait forever.
    fn is_settled(&self) -> bool {
        match &self.tx {
            OfferTransaction::Invite(tx) => {
                use crate::transaction::InviteClientState::*;
                matches!(tx.state(), Terminated | Proceeding)
            }
            OfferTransaction::Update(tx) => tx.is_terminated(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.tx {
            OfferTransaction::Invite(tx) => tx.poll_timeout(),
            OfferTransaction::Update(tx) => tx.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match &mut self.tx {
            OfferTransaction::Invite(tx) => tx.handle_timeout(now),
            OfferTransaction::Update(tx) => tx.handle_timeout(now),
        }
    }

    fn handle_response(&mut self, response: Response, now: Instant) {
        match &mut self.tx {
            OfferTransaction::Invite(tx) => tx.handle_response(response, now),
            OfferTransaction::Update(tx) => tx.handle_response(response, now),
        }
    }

    fn transport_error(&mut self) {
        match &mut self.tx {
            OfferTransaction::Invite(tx) => tx.transport_error(),
            OfferTransaction::Update(tx) => tx.transport_error(),
        }
    }

    fn poll_output(&mut self) -> Option<ClientOutput> {
        match &mut self.tx {
            OfferTransaction::Invite(tx) => tx.poll_output(),
            OfferTransaction::Update(tx) => tx.poll_output(),
        }
    }
}

#[derive(Debug)]
struct Bye {
    branch: String,
    dest: SocketAddr,
    tx: NonInviteClient,
}

/// A confirmed dialog and the requests we send in it.
#[derive(Debug)]
pub struct Dialog {
    parts: DialogParts,
    timers: TimerConfig,
    /// The last CSeq number we used in this dialog.
    local_cseq: u32,
    /// The peer listed UPDATE in Allow: session refreshes use it, as RFC 4028 s.9 prefers.
    peer_allows_update: bool,
    /// Transactions not terminated yet; at most one unanswered.
    offers: Vec<Offer>,
    /// CSeq, ACK and destination of the last answered 2xx to a re-INVITE, kept after its
    /// transaction ended.
    last_ack: Option<(u32, Request, SocketAddr)>,
    /// The last SDP of ours the peer accepted (sent again by re-INVITE session refreshes).
    local_sdp: Option<String>,
    /// Session timers are on (RFC 4028): the session of the 2xx is kept and refreshed.
    session_timers: bool,
    session: Option<SessionTimer>,
    bye: Option<Bye>,
    /// The Reason header (RFC 3326) of our BYE, when the application gave one.
    bye_reason: Option<String>,
    /// BYE was asked for or sent: nothing else is sent.
    ending: bool,
    /// The dialog is over for the call (the owner emits `Terminated`).
    over: bool,
    /// Why it ends, once that is decided.
    end_cause: Option<EndCause>,
    outputs: VecDeque<CallOutput>,
}

impl Dialog {
    /// `local_cseq`: the last CSeq number this side used; `local_sdp`: the SDP of ours in force.
    pub fn new(
        parts: DialogParts,
        timers: TimerConfig,
        local_cseq: u32,
        peer_allows_update: bool,
        local_sdp: Option<String>,
        session: Option<SessionTimer>,
    ) -> Self {
        Self {
            parts,
            session_timers: session.is_some() || timers.session_expires > 0,
            timers,
            local_cseq,
            peer_allows_update,
            offers: Vec::new(),
            last_ack: None,
            local_sdp,
            session,
            bye: None,
            bye_reason: None,
            ending: false,
            over: false,
            end_cause: None,
            outputs: VecDeque::new(),
        }
    }

    /// What a later process needs to end this dialog: its addressing and the last CSeq used.
    pub fn snapshot(&self) -> DialogSnapshot {
        DialogSnapshot { parts: self.parts.clone(), local_cseq: self.local_cseq }
    }

    /// The next CSeq number for a request of ours.
    pub fn next_cseq(&mut self) -> u32 {
        self.local_cseq += 1;
        self.local_cseq
    }

    /// Nothing more will be sent: BYE went out, or the dialog failed.
    pub fn is_ending(&self) -> bool {
        self.ending
    }

    /// The call is over on this dialog's account (BYE answered or failed, refresh missing,
    /// 481/408 to an offer).
    pub fn is_over(&self) -> bool {
        self.over
    }

    /// No transaction is left, so no retransmission needs absorbing.
    pub fn is_settled(&self) -> bool {
        self.bye.is_none() && self.offers.iter().all(Offer::is_settled)
    }

    /// Whether an offer of ours has no final response yet.
    pub fn offer_pending(&self) -> bool {
        self.offers.iter().any(|o| !o.answered)
    }

    /// Sends `sdp` as an offer (RFC 3261 s.14.1, RFC 3311); its final response is reported as
    /// [`CallEvent::ReinviteResponse`].
    pub fn offer(&mut self, method: OfferMethod, sdp: String, now: Instant) -> Result<(), SipError> {
        let wrong_state = |reason| SipError::WrongState { call_id: self.parts.call_id.clone(), reason };
        if self.ending {
            return Err(wrong_state("the call is ending"));
        }
        if self.offer_pending() {
            return Err(wrong_state("an offer is already pending"));
        }
        self.send_offer(method, Some(sdp), false, now);
        Ok(())
    }

    /// The Reason header (RFC 3326) our BYE will carry, e.g. `Q.850;cause=41;text="..."`.
    pub fn set_bye_reason(&mut self, reason: String) {
        self.bye_reason = Some(reason);
    }

    /// Sends BYE; the dialog is over once it is answered or fails.
    pub fn bye(&mut self, now: Instant) {
        self.end_cause.get_or_insert(EndCause::Local);
        self.start_bye(now);
        self.pump(now);
    }

    /// Starts the BYE transaction (its first transmission is picked up by the next pump).
    fn start_bye(&mut self, now: Instant) {
        if self.ending {
            return;
        }
        self.ending = true;
        self.session = None;
        let cseq = self.next_cseq();
        let branch = new_branch();
        let mut request = self.parts.request(Method::Bye, cseq, &branch);
        if !self.parts.user_agent.is_empty() {
            request.headers.push("User-Agent", self.parts.user_agent.as_str());
        }
        if let Some(reason) = &self.bye_reason {
            request.headers.push("Reason", reason.as_str());
        }
        let dest = self.parts.destination();
        let tx = NonInviteClient::new(request, self.parts.transport.is_reliable(), self.timers, now);
        self.bye = Some(Bye { branch, dest, tx });
    }

    /// The call ended without a BYE of ours (the peer's BYE): nothing more is sent or timed.
    pub fn close(&mut self) {
        self.ending = true;
        self.session = None;
    }

    /// Why the dialog ends (or ended): set by whatever started its end.
    pub fn end_cause(&self) -> Option<EndCause> {
        self.end_cause
    }

    /// Ends the dialog with BYE at once, without waiting for its answer.
    fn abandon(&mut self, cause: EndCause, now: Instant) {
        self.end_cause.get_or_insert(cause);
        self.start_bye(now);
        self.over = true;
    }

    /// A re-INVITE or UPDATE from the peer that we answered 2xx: a target refresh (s.12.2.2) and,
    /// RFC 4028 s.10, a session refresh. `refresher=uac` in it names the peer. `our_sdp`, the SDP
    /// of our 2xx, is the session description of ours from now on (what our re-INVITE refreshes
    /// offer again).
    pub fn handle_peer_request(&mut self, request: &Request, our_sdp: Option<&str>, now: Instant) {
        if self.ending {
            return;
        }
        if let Some(sdp) = our_sdp {
            self.local_sdp = Some(sdp.to_string());
        }
        if let Some(target) = contact_target(&request.headers) {
            self.parts.remote_target = target.to_string();
        }
        if !self.session_timers {
            return;
        }
        let (interval, we_refresh) = match session_expires(&request.headers) {
            Some((n, refresher)) => (n, refresher.as_deref() == Some("uas")),
            None => match self.session {
                Some(s) => (s.interval, s.we_refresh),
                None => return,
            },
        };
        self.session = Some(SessionTimer::new(interval, we_refresh, now));
    }

    /// A response with this dialog's Call-ID to a request the dialog sent; false if none matches.
    pub fn handle_response(&mut self, response: Response, now: Instant) -> bool {
        let Some((cseq, method)) = response.cseq() else {
            return false;
        };
        let branch = response.top_via().and_then(|v| v.branch);
        if method == Method::Bye {
            match &mut self.bye {
                Some(bye) if branch.as_deref() == Some(bye.branch.as_str()) => bye.tx.handle_response(response, now),
                _ => return false,
            }
        } else if let Some(offer) = self.offers.iter_mut().find(|o| {
            o.method == method && o.cseq == cseq && Some(o.branch.as_str()) == branch.as_deref() && !o.is_terminated()
        }) {
            offer.handle_response(response, now);
        } else if method == Method::Invite
            && (200..300).contains(&response.status)
            && let Some((ack_cseq, ack, dest)) = self.last_ack.clone()
            && ack_cseq == cseq
        {
            // A 2xx retransmission after the transaction ended still needs its ACK.
            self.transmit(dest, ack);
        } else {
            return false;
        }
        self.pump(now);
        true
    }

    /// The transport could not reach `dest`.
    pub fn transport_failed(&mut self, dest: SocketAddr, now: Instant) {
        let mut failed_offer = None;
        for offer in self.offers.iter_mut().filter(|o| o.dest == dest && !o.is_terminated()) {
            offer.transport_error();
            if !std::mem::replace(&mut offer.answered, true) {
                failed_offer = Some(offer.refresh);
            }
        }
        if let Some(refresh) = failed_offer {
            self.on_offer_failure(refresh, 408, "Request Timeout", None, now);
        }
        if let Some(bye) = &mut self.bye
            && bye.dest == dest
        {
            bye.tx.transport_error();
            self.over = true;
        }
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for offer in &mut self.offers {
            offer.handle_timeout(now);
        }
        if let Some(bye) = &mut self.bye {
            bye.tx.handle_timeout(now);
        }
        self.session_timeout(now);
        self.pump(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let session = self.session.filter(|_| !self.ending);
        self.offers
            .iter()
            .filter_map(Offer::poll_timeout)
            .chain(self.bye.as_ref().and_then(|b| b.tx.poll_timeout()))
            .chain(session.map(|s| s.expires_at))
            .chain(session.and_then(|s| s.refresh_at))
            .min()
    }

    pub fn poll_output(&mut self) -> Option<CallOutput> {
        self.outputs.pop_front()
    }

    fn session_timeout(&mut self, now: Instant) {
        let Some(session) = self.session.filter(|_| !self.ending) else {
            return;
        };
        if session.expires_at <= now {
            tracing::warn!(call_id = %self.parts.call_id, "session expired without refresh; ending the call");
            self.abandon(EndCause::SessionExpired, now);
        } else if session.refresh_at.is_some_and(|t| t <= now) {
            if let Some(s) = &mut self.session {
                s.refresh_at = None;
            }
            if self.offer_pending() {
                // Its 2xx refreshes the session; if it fails, the refresh is retried then.
            } else if self.peer_allows_update {
                tracing::debug!(call_id = %self.parts.call_id, "session refresh (UPDATE)");
                self.send_offer(OfferMethod::Update, None, true, now);
            } else if let Some(sdp) = self.local_sdp.clone() {
                tracing::debug!(call_id = %self.parts.call_id, "session refresh (re-INVITE)");
                self.send_offer(OfferMethod::Reinvite, Some(sdp), true, now);
            } else {
                tracing::warn!(call_id = %self.parts.call_id, "no local SDP to refresh the session with");
            }
        }
    }

    /// Starts a re-INVITE or UPDATE carrying `sdp` (an UPDATE refresh carries none).
    fn send_offer(&mut self, method: OfferMethod, sdp: Option<String>, refresh: bool, now: Instant) {
        let cseq = self.next_cseq();
        let branch = new_branch();
        let method = match method {
            OfferMethod::Reinvite => Method::Invite,
            OfferMethod::Update => Method::Update,
        };
        let mut request = self.parts.request(method, cseq, &branch);
        request.headers.push("Contact", self.parts.contact.as_str());
        request.headers.push("Allow", ALLOW);
        if !self.parts.user_agent.is_empty() {
            request.headers.push("User-Agent", self.parts.user_agent.as_str());
        }
        if let Some(session) = &self.session {
            // Any re-INVITE or UPDATE refreshes the session (RFC 4028 s.7.4); refresher=uac is us.
            let refresher = if session.we_refresh { "uac" } else { "uas" };
            request.headers.push("Supported", "timer");
            request.headers.push("Session-Expires", format!("{};refresher={refresher}", session.interval));
            request.headers.push("Min-SE", self.timers.min_se.to_string());
        }
        if let Some(sdp) = &sdp {
            request.headers.push("Content-Type", "application/sdp");
            request.body = sdp.clone().into_bytes();
        }
        let dest = self.parts.destination();
        let reliable = self.parts.transport.is_reliable();
        let tx = match method {
            Method::Invite => OfferTransaction::Invite(InviteClient::new(request, reliable, self.timers, now)),
            _ => OfferTransaction::Update(NonInviteClient::new(request, reliable, self.timers, now)),
        };
        self.offers.push(Offer { method, cseq, branch, dest, tx, answered: false, ack: None, refresh, sdp });
        self.pump(now);
    }

    fn transmit(&mut self, dest: SocketAddr, request: Request) {
        self.outputs.push_back(CallOutput::Transmit(Transmit {
            transport: self.parts.transport,
            dest,
            message: Message::Request(request),
        }));
    }

    /// Moves transaction outputs into dialog outputs until nothing is left.
    fn pump(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.offers.len() {
            while let Some(out) = self.offers[i].poll_output() {
                let dest = self.offers[i].dest;
                match out {
                    ClientOutput::Transmit(request) => self.transmit(dest, request),
                    ClientOutput::Response(response) => self.on_offer_response(i, response, now),
                    ClientOutput::Timeout => {
                        tracing::warn!(call_id = %self.parts.call_id, method = %self.offers[i].method, "offer timed out");
                        self.offers[i].answered = true;
                        let refresh = self.offers[i].refresh;
                        self.on_offer_failure(refresh, 408, "Request Timeout", None, now);
                    }
                }
            }
            i += 1;
        }
        self.offers.retain(|o| !o.is_terminated());
        if let Some(bye) = &mut self.bye {
            let dest = bye.dest;
            let mut requests = Vec::new();
            while let Some(out) = bye.tx.poll_output() {
                match out {
                    ClientOutput::Transmit(request) => requests.push(request),
                    ClientOutput::Response(response) if response.status >= 200 => self.over = true,
                    ClientOutput::Response(_) => {}
                    ClientOutput::Timeout => {
                        tracing::warn!(call_id = %self.parts.call_id, "BYE timed out");
                        self.over = true;
                    }
                }
            }
            if bye.tx.is_terminated() {
                self.bye = None;
            }
            for request in requests {
                self.transmit(dest, request);
            }
        }
    }

    /// A response passed up by the offer transaction at `index`.
    fn on_offer_response(&mut self, index: usize, response: Response, now: Instant) {
        if response.status < 200 {
            return;
        }
        let first = !std::mem::replace(&mut self.offers[index].answered, true);
        let (method, refresh) = (self.offers[index].method, self.offers[index].refresh);
        if response.status >= 300 {
            // An INVITE transaction ACKed it already.
            if matches!(response.status, 408 | 481) {
                self.on_offer_failure(refresh, response.status, &response.reason, response.sdp(), now);
                return;
            }
            if refresh && method == Method::Update && matches!(response.status, 405 | 501) {
                // The peer does not take UPDATE after all: refresh with re-INVITEs from now on.
                tracing::info!(call_id = %self.parts.call_id, status = response.status, "UPDATE refused; refreshing with re-INVITE");
                self.peer_allows_update = false;
                if let Some(s) = &mut self.session {
                    s.refresh_at = Some(now);
                }
                return;
            }
            if refresh {
                tracing::info!(call_id = %self.parts.call_id, status = response.status, "session refresh refused");
            } else if !self.over {
                self.emit(offer_event(&response));
            }
            // Refresh again: at once after our own offer failed, a little later after a glare
            // (491); else let the session expire.
            let retry = match (refresh, response.status) {
                (true, 491) => Some(now + Duration::from_secs(2)),
                (false, _) => Some(now),
                (true, _) => None,
            };
            if let Some(s) = &mut self.session
                && s.we_refresh
                && s.refresh_at.is_none()
            {
                s.refresh_at = retry;
            }
            return;
        }
        let offer = &self.offers[index];
        let (cseq, dest, sdp) = (offer.cseq, offer.dest, offer.sdp.clone());
        if method == Method::Invite {
            if let Some(ack) = offer.ack.clone() {
                self.transmit(dest, ack);
                return;
            }
            if first && let Some(target) = contact_target(&response.headers) {
                // s.12.2.1.2: a 2xx to a re-INVITE refreshes the remote target.
                self.parts.remote_target = target.to_string();
            }
            let ack = self.parts.request(Method::Ack, cseq, &new_branch());
            self.transmit(dest, ack.clone());
            self.offers[index].ack = Some(ack.clone());
            self.last_ack = Some((cseq, ack, dest));
        } else if first && let Some(target) = contact_target(&response.headers) {
            // RFC 3311 s.5.1: UPDATE is a target refresh request too.
            self.parts.remote_target = target.to_string();
        }
        if first && !self.over {
            if sdp.is_some() {
                self.local_sdp = sdp;
            }
            self.on_session_response(&response, now);
            if !refresh {
                self.emit(offer_event(&response));
            }
        }
    }

    /// The Session-Expires of a 2xx to our re-INVITE or UPDATE (RFC 4028 s.7.2): none means no
    /// session timer.
    fn on_session_response(&mut self, response: &Response, now: Instant) {
        if !self.session_timers {
            return;
        }
        self.session = session_expires(&response.headers).map(|(interval, refresher)| {
            // A missing refresher is ours to choose (s.7.4): we refresh.
            SessionTimer::new(interval, refresher.as_deref() != Some("uas"), now)
        });
    }

    /// s.14.1: a 481 or 408 (or a timeout) on an offer ends the dialog: report it, send BYE, and
    /// end the call without waiting for the BYE's answer. A failed session refresh ends the
    /// dialog the same way, unreported.
    fn on_offer_failure(&mut self, refresh: bool, status: u16, reason: &str, sdp: Option<String>, now: Instant) {
        if self.over {
            return;
        }
        if !refresh {
            self.emit(CallEvent::ReinviteResponse { status, reason: reason.to_string(), sdp });
        }
        self.abandon(EndCause::DialogFailed { status }, now);
    }

    fn emit(&mut self, event: CallEvent) {
        self.outputs.push_back(CallOutput::Event(event));
    }
}

fn offer_event(response: &Response) -> CallEvent {
    CallEvent::ReinviteResponse { status: response.status, reason: response.reason.clone(), sdp: response.sdp() }
}
