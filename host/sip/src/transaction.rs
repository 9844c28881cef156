//! RFC 3261 s.17 transactions as sans-IO state machines.
//!
//! Each machine is fed messages and the current `Instant`, and hands back what
//! to transmit and what to pass up to the transaction user. Nothing here owns a
//! socket or a clock, so every timer path is testable with simulated time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::message::{Headers, Method, Request, Response, SipHeaders};

/// RFC 3261 timer base values (s.17.1.1.1, table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; base of the retransmission and timeout timers.
    pub t1: Duration,
    /// Cap on the non-INVITE retransmission interval.
    pub t2: Duration,
    /// How long the network may hold a message.
    pub t4: Duration,
    /// RFC 4028 session interval asked for in outgoing INVITEs (`Session-Expires`),
    /// in seconds; 0 disables session timers.
    pub session_expires: u32,
    /// Smallest session interval accepted (`Min-SE`), in seconds. RFC 4028
    /// wants at least 90 on the wire; tests may use less.
    pub min_se: u32,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            session_expires: 1800,
            min_se: 90,
        }
    }
}

impl TimerConfig {
    /// Timers B, F, H, J and M.
    pub fn transaction_timeout(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: at least 32 s (s.17.1.1.2), more if T1 was raised.
    fn timer_d(&self) -> Duration {
        Duration::from_secs(32).max(self.t1 * 64)
    }
}

/// What a client transaction asks of its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutput {
    /// Put this request on the wire (first send, retransmission, or ACK).
    Transmit(Request),
    /// A response the transaction user must see.
    Response(Response),
    /// Timer B or F fired without a final response.
    Timeout,
}

fn earliest(timers: &[Option<Instant>]) -> Option<Instant> {
    timers.iter().flatten().min().copied()
}

fn due(timer: Option<Instant>, now: Instant) -> bool {
    timer.is_some_and(|t| t <= now)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClientState {
    Calling,
    Proceeding,
    Completed,
    /// RFC 6026: a 2xx was received; further 2xx retransmissions still go to
    /// the user so it can re-send its ACK.
    Accepted,
    Terminated,
}

/// INVITE client transaction (RFC 3261 s.17.1.1, amended by RFC 6026).
#[derive(Debug)]
pub struct InviteClient {
    state: InviteClientState,
    request: Request,
    reliable: bool,
    timers: TimerConfig,
    /// Timer A deadline and the interval that produced it.
    timer_a: Option<(Instant, Duration)>,
    timer_b: Option<Instant>,
    timer_d: Option<Instant>,
    timer_m: Option<Instant>,
    ack: Option<Request>,
    outputs: VecDeque<ClientOutput>,
}

impl InviteClient {
    /// Starts the transaction; the INVITE is queued for transmission at once.
    pub fn new(request: Request, reliable: bool, timers: TimerConfig, now: Instant) -> Self {
        let timer_a = (!reliable).then(|| (now + timers.t1, timers.t1));
        let mut outputs = VecDeque::new();
        outputs.push_back(ClientOutput::Transmit(request.clone()));
        Self {
            state: InviteClientState::Calling,
            request,
            reliable,
            timers,
            timer_a,
            timer_b: Some(now + timers.transaction_timeout()),
            timer_d: None,
            timer_m: None,
            ack: None,
            outputs,
        }
    }

    pub fn state(&self) -> InviteClientState {
        self.state
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteClientState::Terminated
    }

    pub fn handle_response(&mut self, response: Response, now: Instant) {
        use InviteClientState::*;
        match (self.state, response.status) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                // Timer B only guards the Calling state (s.17.1.1.2).
                self.timer_a = None;
                self.timer_b = None;
                self.outputs.push_back(ClientOutput::Response(response));
            }
            (Calling | Proceeding, 200..=299) => {
                self.state = Accepted;
                self.timer_a = None;
                self.timer_b = None;
                self.timer_m = Some(now + self.timers.transaction_timeout());
                self.outputs.push_back(ClientOutput::Response(response));
            }
            (Calling | Proceeding, 300..=699) => {
                let ack = self.ack_for(&response);
                self.outputs.push_back(ClientOutput::Transmit(ack.clone()));
                self.ack = Some(ack);
                self.outputs.push_back(ClientOutput::Response(response));
                self.timer_a = None;
                self.timer_b = None;
                if self.reliable {
                    self.state = Terminated;
                } else {
                    self.state = Completed;
                    self.timer_d = Some(now + self.timers.timer_d());
                }
            }
            (Completed, 300..=699) => {
                // The UAS did not see our ACK: repeat it, but the user already knows.
                if let Some(ack) = &self.ack {
                    self.outputs.push_back(ClientOutput::Transmit(ack.clone()));
                }
            }
            (Accepted, 200..=299) => self.outputs.push_back(ClientOutput::Response(response)),
            _ => {
                tracing::debug!(status = response.status, state = ?self.state, "response absorbed by INVITE transaction")
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, interval)) = self.timer_a
            && at <= now
            && self.state == InviteClientState::Calling
        {
            let next = interval * 2;
            self.timer_a = Some((now + next, next));
            self.outputs.push_back(ClientOutput::Transmit(self.request.clone()));
        }
        if due(self.timer_b, now) && self.state == InviteClientState::Calling {
            self.terminate();
            self.outputs.push_back(ClientOutput::Timeout);
        }
        if due(self.timer_d, now) || due(self.timer_m, now) {
            self.terminate();
        }
    }

    /// The transport reported the destination unreachable (s.17.1.4).
    pub fn transport_error(&mut self) {
        self.terminate();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_a.map(|(t, _)| t), self.timer_b, self.timer_d, self.timer_m])
    }

    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    fn terminate(&mut self) {
        self.state = InviteClientState::Terminated;
        self.timer_a = None;
        self.timer_b = None;
        self.timer_d = None;
        self.timer_m = None;
    }

    /// ACK for a non-2xx final response (s.17.1.1.3): same branch and
    /// request-URI as the INVITE, To taken from the response.
    fn ack_for(&self, response: &Response) -> Request {
        let mut headers = Headers::default();
        if let Some(via) = self.request.headers.get("Via") {
            headers.push("Via", via);
        }
        headers.push("Max-Forwards", "70");
        for route in self.request.headers.get_all("Route") {
            headers.push("Route", route);
        }
        for name in ["From", "To", "Call-ID"] {
            let source = if name == "To" { &response.headers } else { &self.request.headers };
            if let Some(value) = source.get(name) {
                headers.push(name, value);
            }
        }
        let cseq = self.request.cseq().map_or(1, |(n, _)| n);
        headers.push("CSeq", format!("{cseq} ACK"));
        Request { method: Method::Ack, uri: self.request.uri.clone(), headers, body: Vec::new() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteClientState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// Non-INVITE client transaction (RFC 3261 s.17.1.2).
#[derive(Debug)]
pub struct NonInviteClient {
    state: NonInviteClientState,
    request: Request,
    reliable: bool,
    timers: TimerConfig,
    timer_e: Option<(Instant, Duration)>,
    timer_f: Option<Instant>,
    timer_k: Option<Instant>,
    outputs: VecDeque<ClientOutput>,
}

impl NonInviteClient {
    pub fn new(request: Request, reliable: bool, timers: TimerConfig, now: Instant) -> Self {
        let mut outputs = VecDeque::new();
        outputs.push_back(ClientOutput::Transmit(request.clone()));
        Self {
            state: NonInviteClientState::Trying,
            request,
            reliable,
            timers,
            timer_e: (!reliable).then(|| (now + timers.t1, timers.t1)),
            timer_f: Some(now + timers.transaction_timeout()),
            timer_k: None,
            outputs,
        }
    }

    pub fn state(&self) -> NonInviteClientState {
        self.state
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteClientState::Terminated
    }

    pub fn handle_response(&mut self, response: Response, now: Instant) {
        use NonInviteClientState::*;
        match (self.state, response.status) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.outputs.push_back(ClientOutput::Response(response));
            }
            (Trying | Proceeding, 200..=699) => {
                self.timer_e = None;
                self.timer_f = None;
                self.outputs.push_back(ClientOutput::Response(response));
                if self.reliable {
                    self.state = Terminated;
                } else {
                    self.state = Completed;
                    self.timer_k = Some(now + self.timers.t4);
                }
            }
            _ => {
                tracing::debug!(status = response.status, state = ?self.state, "response absorbed by non-INVITE transaction")
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        use NonInviteClientState::*;
        if let Some((at, interval)) = self.timer_e
            && at <= now
            && matches!(self.state, Trying | Proceeding)
        {
            // Once a provisional arrived, the peer is alive: retransmit every T2.
            let next = if self.state == Proceeding { self.timers.t2 } else { (interval * 2).min(self.timers.t2) };
            self.timer_e = Some((now + next, next));
            self.outputs.push_back(ClientOutput::Transmit(self.request.clone()));
        }
        if due(self.timer_f, now) && matches!(self.state, Trying | Proceeding) {
            self.terminate();
            self.outputs.push_back(ClientOutput::Timeout);
        }
        if due(self.timer_k, now) {
            self.terminate();
        }
    }

    pub fn transport_error(&mut self) {
        self.terminate();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_e.map(|(t, _)| t), self.timer_f, self.timer_k])
    }

    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    fn terminate(&mut self) {
        self.state = NonInviteClientState::Terminated;
        self.timer_e = None;
        self.timer_f = None;
        self.timer_k = None;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteServerState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// Non-INVITE server transaction (RFC 3261 s.17.2.2). Its job is to absorb
/// request retransmissions by replaying the last response, so the user
/// handles each request once.
#[derive(Debug)]
pub struct NonInviteServer {
    state: NonInviteServerState,
    reliable: bool,
    timers: TimerConfig,
    last_response: Option<Response>,
    timer_j: Option<Instant>,
}

impl NonInviteServer {
    pub fn new(reliable: bool, timers: TimerConfig) -> Self {
        Self { state: NonInviteServerState::Trying, reliable, timers, last_response: None, timer_j: None }
    }

    pub fn state(&self) -> NonInviteServerState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteServerState::Terminated
    }

    /// The user's response; returns what to transmit (nothing once final).
    pub fn respond(&mut self, response: Response, now: Instant) -> Option<Response> {
        use NonInviteServerState::*;
        if !matches!(self.state, Trying | Proceeding) {
            return None;
        }
        if response.status >= 200 {
            if self.reliable {
                self.state = Terminated;
            } else {
                self.state = Completed;
                self.timer_j = Some(now + self.timers.transaction_timeout());
            }
        } else {
            self.state = Proceeding;
        }
        self.last_response = Some(response.clone());
        Some(response)
    }

    /// A retransmission of the request: what to send back, if anything.
    pub fn handle_retransmission(&self) -> Option<Response> {
        match self.state {
            NonInviteServerState::Proceeding | NonInviteServerState::Completed => self.last_response.clone(),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if due(self.timer_j, now) {
            self.state = NonInviteServerState::Terminated;
            self.timer_j = None;
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer_j
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteServerState {
    Proceeding,
    /// A non-2xx final response was sent; waiting for its ACK.
    Completed,
    /// The ACK arrived; lingering (Timer I) to absorb ACK retransmissions.
    Confirmed,
    /// RFC 6026: a 2xx was sent. Its retransmissions and the ACK are the
    /// transaction user's business; INVITE retransmissions are absorbed.
    Accepted,
    Terminated,
}

/// What an INVITE server transaction asks of its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOutput {
    /// Put this response on the wire (first send or retransmission).
    Transmit(Response),
    /// Timer H fired: the ACK for the non-2xx final response never came.
    Timeout,
}

/// INVITE server transaction (RFC 3261 s.17.2.1, amended by RFC 6026).
///
/// The 2xx is only sent once from here: RFC 3261 s.13.3.1.4 makes its
/// retransmission until the ACK a job of the UAS core (the dialog).
#[derive(Debug)]
pub struct InviteServer {
    state: InviteServerState,
    reliable: bool,
    timers: TimerConfig,
    last_response: Option<Response>,
    /// Timer G deadline and the interval that produced it.
    timer_g: Option<(Instant, Duration)>,
    timer_h: Option<Instant>,
    timer_i: Option<Instant>,
    timer_l: Option<Instant>,
    outputs: VecDeque<ServerOutput>,
}

impl InviteServer {
    pub fn new(reliable: bool, timers: TimerConfig) -> Self {
        Self {
            state: InviteServerState::Proceeding,
            reliable,
            timers,
            last_response: None,
            timer_g: None,
            timer_h: None,
            timer_i: None,
            timer_l: None,
            outputs: VecDeque::new(),
        }
    }

    pub fn state(&self) -> InviteServerState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteServerState::Terminated
    }

    /// Whether a final response was already sent.
    pub fn is_final(&self) -> bool {
        self.state != InviteServerState::Proceeding
    }

    /// The user's response; queued for transmission unless a final response
    /// was already sent (only one per transaction).
    pub fn respond(&mut self, response: Response, now: Instant) {
        use InviteServerState::*;
        if self.state != Proceeding {
            tracing::debug!(status = response.status, state = ?self.state, "response after the final one dropped");
            return;
        }
        match response.status {
            100..=199 => {}
            200..=299 => {
                self.state = Accepted;
                self.timer_l = Some(now + self.timers.transaction_timeout());
            }
            _ => {
                self.state = Completed;
                if !self.reliable {
                    self.timer_g = Some((now + self.timers.t1, self.timers.t1));
                }
                self.timer_h = Some(now + self.timers.transaction_timeout());
            }
        }
        self.last_response = Some(response.clone());
        self.outputs.push_back(ServerOutput::Transmit(response));
    }

    /// A retransmission of the INVITE: the last provisional or non-2xx final
    /// response is sent again (s.17.2.1); in Accepted the TU's own 2xx
    /// retransmissions cover it.
    pub fn handle_retransmission(&mut self) {
        if matches!(self.state, InviteServerState::Proceeding | InviteServerState::Completed)
            && let Some(response) = &self.last_response
        {
            self.outputs.push_back(ServerOutput::Transmit(response.clone()));
        }
    }

    /// An ACK with the INVITE's branch. Returns true when it acknowledged the
    /// non-2xx final response (absorbed here); false when it is for a 2xx and
    /// belongs to the transaction user.
    pub fn handle_ack(&mut self, now: Instant) -> bool {
        match self.state {
            InviteServerState::Completed => {
                self.state = InviteServerState::Confirmed;
                self.timer_g = None;
                self.timer_h = None;
                if self.reliable {
                    self.terminate();
                } else {
                    self.timer_i = Some(now + self.timers.t4);
                }
                true
            }
            InviteServerState::Confirmed => true,
            _ => false,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, interval)) = self.timer_g
            && at <= now
            && self.state == InviteServerState::Completed
        {
            let next = (interval * 2).min(self.timers.t2);
            self.timer_g = Some((now + next, next));
            if let Some(response) = &self.last_response {
                self.outputs.push_back(ServerOutput::Transmit(response.clone()));
            }
        }
        if due(self.timer_h, now) && self.state == InviteServerState::Completed {
            self.terminate();
            self.outputs.push_back(ServerOutput::Timeout);
        }
        if due(self.timer_i, now) || due(self.timer_l, now) {
            self.terminate();
        }
    }

    /// The transport could not deliver a response (s.17.2.4).
    pub fn transport_error(&mut self) {
        self.terminate();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_g.map(|(t, _)| t), self.timer_h, self.timer_i, self.timer_l])
    }

    pub fn poll_output(&mut self) -> Option<ServerOutput> {
        self.outputs.pop_front()
    }

    fn terminate(&mut self) {
        self.state = InviteServerState::Terminated;
        self.timer_g = None;
        self.timer_h = None;
        self.timer_i = None;
        self.timer_l = None;
    }
}

/// Retransmission schedule of a response the UAS core must repeat until the
/// peer acknowledges it: a 2xx until its ACK (RFC 3261 s.13.3.1.4, interval
/// T1 doubling up to T2) or a reliable provisional until its PRACK (RFC 3262
/// s.3, T1 doubling). Both give up after 64*T1.
#[derive(Debug, Clone)]
pub struct Retransmitter {
    next: Instant,
    interval: Duration,
    cap: Option<Duration>,
    deadline: Instant,
}

/// What a [`Retransmitter`] wants when its time comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetransmitAction {
    Nothing,
    Retransmit,
    GiveUp,
}

impl Retransmitter {
    /// For a 2xx: capped at T2.
    pub fn for_2xx(timers: TimerConfig, now: Instant) -> Self {
        Self {
            next: now + timers.t1,
            interval: timers.t1,
            cap: Some(timers.t2),
            deadline: now + timers.transaction_timeout(),
        }
    }

    /// For a reliable provisional: RFC 3262 names no cap.
    pub fn for_reliable_provisional(timers: TimerConfig, now: Instant) -> Self {
        Self { cap: None, ..Self::for_2xx(timers, now) }
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next.min(self.deadline)
    }

    pub fn handle_timeout(&mut self, now: Instant) -> RetransmitAction {
        if self.deadline <= now {
            return RetransmitAction::GiveUp;
        }
        if self.next > now {
            return RetransmitAction::Nothing;
        }
        let doubled = self.interval * 2;
        self.interval = self.cap.map_or(doubled, |cap| doubled.min(cap));
        self.next = now + self.interval;
        RetransmitAction::Retransmit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method) -> Request {
        let mut headers = Headers::default();
        headers.push("Via", "SIP/2.0/UDP gw.example.com:5060;branch=z9hG4bKtest");
        headers.push("Max-Forwards", "70");
        headers.push("From", "<sip:a@example.com>;tag=f1");
        headers.push("To", "<sip:b@example.com>");
        headers.push("Call-ID", "c1@gw.example.com");
        headers.push("CSeq", format!("1 {method}"));
        Request { method, uri: "sip:b@example.com".into(), headers, body: vec![] }
    }

    fn response(status: u16, method: Method) -> Response {
        let mut r = crate::message::response_to(&request(method), status, "X", Some("t1"));
        r.reason = format!("reason {status}");
        r
    }

    fn drain(outputs: impl FnMut() -> Option<ClientOutput>) -> Vec<ClientOutput> {
        std::iter::from_fn(outputs).collect()
    }

    /// Advances simulated time to each deadline up to `until`, recording when
    /// the INVITE was (re)transmitted.
    fn run_invite_until(tx: &mut InviteClient, start: Instant, until: Duration) -> Vec<Duration> {
        let mut sent = Vec::new();
        while let Some(at) = tx.poll_timeout().filter(|t| *t <= start + until) {
            tx.handle_timeout(at);
            for out in drain(|| tx.poll_output()) {
                if matches!(out, ClientOutput::Transmit(ref r) if r.method == Method::Invite) {
                    sent.push(at - start);
                }
            }
        }
        sent
    }

    #[test]
    fn invite_retransmits_with_timer_a_and_times_out_with_timer_b() {
        let t0 = Instant::now();
        let timers = TimerConfig::default();
        let mut tx = InviteClient::new(request(Method::Invite), false, timers, t0);
        assert!(matches!(tx.poll_output(), Some(ClientOutput::Transmit(_))));

        let sent = run_invite_until(&mut tx, t0, Duration::from_secs(31));
        let ms: Vec<u64> = sent.iter().map(|d| d.as_millis() as u64).collect();
        // Timer A doubles without the T2 cap: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s.
        assert_eq!(ms, [500, 1500, 3500, 7500, 15500]);
        assert_eq!(tx.state(), InviteClientState::Calling);

        tx.handle_timeout(t0 + Duration::from_secs(32));
        let outs = drain(|| tx.poll_output());
        assert!(outs.contains(&ClientOutput::Timeout));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn invite_over_tcp_never_retransmits() {
        let t0 = Instant::now();
        let mut tx = InviteClient::new(request(Method::Invite), true, TimerConfig::default(), t0);
        assert_eq!(drain(|| tx.poll_output()).len(), 1);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(drain(|| tx.poll_output()), [ClientOutput::Timeout]);
    }

    #[test]
    fn invite_provisional_stops_retransmissions_and_timer_b() {
        let t0 = Instant::now();
        let mut tx = InviteClient::new(request(Method::Invite), false, TimerConfig::default(), t0);
        drain(|| tx.poll_output());
        tx.handle_response(response(180, Method::Invite), t0 + Duration::from_millis(100));
        assert!(matches!(tx.poll_output(), Some(ClientOutput::Response(r)) if r.status == 180));
        assert_eq!(tx.state(), InviteClientState::Proceeding);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn invite_non_2xx_is_acked_with_the_same_branch_and_absorbed() {
        let t0 = Instant::now();
        let mut tx = InviteClient::new(request(Method::Invite), false, TimerConfig::default(), t0);
        drain(|| tx.poll_output());
        tx.handle_response(response(486, Method::Invite), t0);
        let outs = drain(|| tx.poll_output());
        let [ClientOutput::Transmit(ack), ClientOutput::Response(r)] = outs.as_slice() else {
            panic!("unexpected outputs {outs:?}");
        };
        assert_eq!(r.status, 486);
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, "sip:b@example.com");
        assert_eq!(ack.headers.get("CSeq"), Some("1 ACK"));
        assert_eq!(ack.top_via().and_then(|v| v.branch).as_deref(), Some("z9hG4bKtest"));
        assert_eq!(ack.tag_of_to(), Some("t1"));
        assert_eq!(tx.state(), InviteClientState::Completed);

        // A retransmitted 486 re-sends the ACK but is not passed up again.
        tx.handle_response(response(486, Method::Invite), t0 + Duration::from_secs(1));
        assert_eq!(drain(|| tx.poll_output()), [ClientOutput::Transmit(ack.clone())]);

        // Timer D: 32 s over UDP.
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_non_2xx_over_tcp_terminates_at_once() {
        let t0 = Instant::now();
        let mut tx = InviteClient::new(request(Method::Invite), true, TimerConfig::default(), t0);
        drain(|| tx.poll_output());
        tx.handle_response(response(487, Method::Invite), t0);
        assert_eq!(drain(|| tx.poll_output()).len(), 2);
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_2xx_and_its_retransmissions_go_to_the_user() {
        let t0 = Instant::now();
        let mut tx = InviteClient::new(request(Method::Invite), false, TimerConfig::default(), t0);
        drain(|| tx.poll_output());
        tx.handle_response(response(200, Method::Invite), t0);
        assert!(matches!(drain(|| tx.poll_output()).as_slice(), [ClientOutput::Response(r)] if r.status == 200));
        assert_eq!(tx.state(), InviteClientState::Accepted);
        tx.handle_response(response(200, Method::Invite), t0 + Duration::from_millis(500));
        assert!(matches!(drain(|| tx.poll_output()).as_slice(), [ClientOutput::Response(r)] if r.status == 200));
        // Timer M
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn non_invite_retransmission_schedule_is_capped_at_t2() {
        let t0 = Instant::now();
        let mut tx = NonInviteClient::new(request(Method::Bye), false, TimerConfig::default(), t0);
        drain(|| tx.poll_output());
        let mut sent = Vec::new();
        let mut timed_out = None;
        while let Some(at) = tx.poll_timeout() {
            tx.handle_timeout(at);
            for out in drain(|| tx.poll_output()) {
                match out {
                    ClientOutput::Transmit(_) => sent.push((at - t0).as_millis() as u64),
                    ClientOutput::Timeout => timed_out = Some(at - t0),
                    ClientOutput::Response(_) => panic!("no response expected"),
                }
            }
        }
        assert_eq!(&sent[..6], [500, 1500, 3500, 7500, 11500, 15500]);
        assert!(sent.windows(2).skip(3).all(|w| w[1] - w[0] == 4000));
        assert_eq!(timed_out, Some(Duration::from_secs(32)));
        assert!(tx.is_terminated());
    }

    #[test]
    fn non_invite_proceeding_retransmits_every_t2_then_completes_with_timer_k() {
        let t0 = Instant::now();
        let mut tx = NonInviteClient::new(request(Method::Bye), false, TimerConfig::default(), t0);
        drain(|| tx.poll_output());
        tx.handle_response(response(100, Method::Bye), t0 + Duration::from_millis(100));
        assert_eq!(tx.state(), NonInviteClientState::Proceeding);
        drain(|| tx.poll_output());
        tx.handle_timeout(t0 + Duration::from_millis(500));
        assert_eq!(drain(|| tx.poll_output()).len(), 1);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_millis(4500)));

        tx.handle_response(response(200, Method::Bye), t0 + Duration::from_secs(1));
        assert!(matches!(drain(|| tx.poll_output()).as_slice(), [ClientOutput::Response(r)] if r.status == 200));
        // A retransmitted 200 is absorbed.
        tx.handle_response(response(200, Method::Bye), t0 + Duration::from_secs(2));
        assert!(drain(|| tx.poll_output()).is_empty());
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(6)));
        tx.handle_timeout(t0 + Duration::from_secs(6));
        assert!(tx.is_terminated());
    }

    #[test]
    fn non_invite_over_tcp_has_no_timer_e_or_k() {
        let t0 = Instant::now();
        let mut tx = NonInviteClient::new(request(Method::Bye), true, TimerConfig::default(), t0);
        drain(|| tx.poll_output());
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_response(response(200, Method::Bye), t0);
        assert!(tx.is_terminated());
    }

    #[test]
    fn configured_t1_scales_the_timers() {
        let t0 = Instant::now();
        let timers = TimerConfig { t1: Duration::from_millis(100), ..TimerConfig::default() };
        let mut tx = NonInviteClient::new(request(Method::Options), false, timers, t0);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_millis(100)));
        tx.handle_timeout(t0 + Duration::from_millis(6400));
        assert!(drain(|| tx.poll_output()).contains(&ClientOutput::Timeout));
    }

    #[test]
    fn server_absorbs_retransmissions_by_replaying_the_response() {
        let t0 = Instant::now();
        let mut tx = NonInviteServer::new(false, TimerConfig::default());
        // Before the user answered, a retransmission is simply swallowed.
        assert_eq!(tx.handle_retransmission(), None);
        let ok = response(200, Method::Bye);
        assert_eq!(tx.respond(ok.clone(), t0), Some(ok.clone()));
        assert_eq!(tx.state(), NonInviteServerState::Completed);
        assert_eq!(tx.handle_retransmission(), Some(ok.clone()));
        // Only one final response per transaction.
        assert_eq!(tx.respond(response(500, Method::Bye), t0), None);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(31));
        assert_eq!(tx.handle_retransmission(), Some(ok));
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn server_over_tcp_terminates_on_final_response() {
        let mut tx = NonInviteServer::new(true, TimerConfig::default());
        let now = Instant::now();
        assert!(tx.respond(response(100, Method::Options), now).is_some());
        assert_eq!(tx.handle_retransmission().map(|r| r.status), Some(100));
        assert!(tx.respond(response(200, Method::Options), now).is_some());
        assert!(tx.is_terminated());
    }

    fn server_outputs(tx: &mut InviteServer) -> Vec<ServerOutput> {
        std::iter::from_fn(|| tx.poll_output()).collect()
    }

    #[test]
    fn invite_server_retransmits_non_2xx_with_timer_g_until_ack() {
        let t0 = Instant::now();
        let mut tx = InviteServer::new(false, TimerConfig::default());
        tx.respond(response(100, Method::Invite), t0);
        // An INVITE retransmission in Proceeding gets the last provisional again.
        tx.handle_retransmission();
        let outs = server_outputs(&mut tx);
        assert!(
            matches!(outs.as_slice(), [ServerOutput::Transmit(a), ServerOutput::Transmit(b)] if a.status == 100 && b.status == 100)
        );
        tx.respond(response(486, Method::Invite), t0);
        assert_eq!(tx.state(), InviteServerState::Completed);
        assert_eq!(server_outputs(&mut tx).len(), 1);

        let mut sent = Vec::new();
        while let Some(at) = tx.poll_timeout().filter(|t| *t < t0 + Duration::from_secs(10)) {
            tx.handle_timeout(at);
            sent.extend(server_outputs(&mut tx).into_iter().map(|_| (at - t0).as_millis() as u64));
        }
        // Timer G: T1 doubling, capped at T2.
        assert_eq!(sent, [500, 1500, 3500, 7500]);
        assert!(tx.handle_ack(t0 + Duration::from_secs(10)));
        assert_eq!(tx.state(), InviteServerState::Confirmed);
        // ACK retransmissions are absorbed; no more response retransmissions.
        assert!(tx.handle_ack(t0 + Duration::from_secs(11)));
        tx.handle_retransmission();
        assert!(server_outputs(&mut tx).is_empty());
        // Timer I = T4.
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(15)));
        tx.handle_timeout(t0 + Duration::from_secs(15));
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_server_timer_h_without_ack() {
        let t0 = Instant::now();
        let mut tx = InviteServer::new(true, TimerConfig::default());
        tx.respond(response(480, Method::Invite), t0);
        server_outputs(&mut tx);
        // Reliable transport: no Timer G, only H.
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(server_outputs(&mut tx), [ServerOutput::Timeout]);
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_server_over_tcp_terminates_on_ack() {
        let t0 = Instant::now();
        let mut tx = InviteServer::new(true, TimerConfig::default());
        tx.respond(response(487, Method::Invite), t0);
        assert!(tx.handle_ack(t0));
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_server_2xx_leaves_ack_to_the_user_and_ends_with_timer_l() {
        let t0 = Instant::now();
        let mut tx = InviteServer::new(false, TimerConfig::default());
        tx.respond(response(200, Method::Invite), t0);
        assert_eq!(server_outputs(&mut tx).len(), 1);
        assert_eq!(tx.state(), InviteServerState::Accepted);
        assert!(!tx.handle_ack(t0));
        tx.handle_retransmission();
        assert!(server_outputs(&mut tx).is_empty());
        // A late final response is refused.
        tx.respond(response(500, Method::Invite), t0);
        assert!(server_outputs(&mut tx).is_empty());
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn retransmitter_schedules() {
        let t0 = Instant::now();
        let timers = TimerConfig::default();
        let run = |mut r: Retransmitter| {
            let mut sent = Vec::new();
            loop {
                let at = r.poll_timeout();
                match r.handle_timeout(at) {
                    RetransmitAction::Retransmit => sent.push((at - t0).as_millis() as u64),
                    RetransmitAction::GiveUp => return (sent, at - t0),
                    RetransmitAction::Nothing => unreachable!(),
                }
            }
        };
        let (sent, gave_up) = run(Retransmitter::for_2xx(timers, t0));
        assert_eq!(&sent[..5], [500, 1500, 3500, 7500, 11500]);
        assert_eq!(gave_up, Duration::from_secs(32));
        let (sent, gave_up) = run(Retransmitter::for_reliable_provisional(timers, t0));
        assert_eq!(sent, [500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(gave_up, Duration::from_secs(32));
    }
}
