//! The demo endpoint's bridges: a call from the gateway to a number registered on it is
//! placed again towards the gateway (the callee leg) and the two legs are tied together. Each
//! leg's events are passed on to the other; the SDP each side sends is kept, so that a hold on
//! one leg can be answered at once with the other side's description.

use std::collections::HashMap;
use std::sync::Mutex;

use camara_media::sdp::Direction;

use super::media;

/// One leg of a bridge, as the event loop needs it.
#[derive(Clone, Debug)]
pub struct Leg {
    /// The Call-ID of the other leg.
    pub other: String,
    /// The leg we placed (towards the called devices), not the one we answer.
    pub is_callee: bool,
}

struct LegState {
    leg: Leg,
    /// The description we send on this leg: the other side's latest.
    ours: Option<String>,
}

#[derive(Default)]
pub struct Bridges(Mutex<HashMap<String, LegState>>);

impl Bridges {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LegState>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ties the caller's leg to the callee leg about to be placed with the caller's `offer`.
    pub fn open(&self, caller: &str, callee: &str, offer: &str) {
        let mut legs = self.lock();
        legs.insert(caller.into(), LegState { leg: Leg { other: callee.into(), is_callee: false }, ours: None });
        let state = LegState { leg: Leg { other: caller.into(), is_callee: true }, ours: Some(offer.into()) };
        legs.insert(callee.into(), state);
    }

    pub fn leg(&self, call_id: &str) -> Option<Leg> {
        self.lock().get(call_id).map(|s| s.leg.clone())
    }

    /// The callee side described its media (an answer in a response): the caller gets it.
    pub fn callee_described(&self, callee: &str, sdp: &str) {
        let mut legs = self.lock();
        let Some(caller) = legs.get(callee).map(|s| s.leg.other.clone()) else { return };
        if let Some(state) = legs.get_mut(&caller) {
            state.ours = Some(sdp.to_string());
        }
    }

    /// What the caller is to be answered with: the callee side's description.
    pub fn callee_sdp(&self, callee: &str) -> Option<String> {
        let legs = self.lock();
        let caller = &legs.get(callee)?.leg.other;
        legs.get(caller)?.ours.clone()
    }

    /// A re-offer arrived on `call_id`: it goes on to the other leg, as our description there.
    pub fn offered(&self, call_id: &str, offer: &str) {
        let mut legs = self.lock();
        let Some(other) = legs.get(call_id).map(|s| s.leg.other.clone()) else { return };
        if let Some(state) = legs.get_mut(&other) {
            state.ours = Some(offer.to_string());
        }
    }

    /// The answer to a re-offer on `call_id`: our description there, in `direction`.
    pub fn answer_for(&self, call_id: &str, direction: Direction) -> Option<String> {
        let mut legs = self.lock();
        let state = legs.get_mut(call_id)?;
        let answer = media::again(state.ours.as_deref()?, direction);
        state.ours = Some(answer.clone());
        Some(answer)
    }

    /// Forgets both legs of the bridge `call_id` is in.
    pub fn close(&self, call_id: &str) {
        let mut legs = self.lock();
        if let Some(state) = legs.remove(call_id) {
            legs.remove(&state.leg.other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER_OFFER: &str = "v=0\r\no=- 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";
    const CALLEE_ANSWER: &str = "v=0\r\no=- 9 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=sendrecv\r\n";

    #[test]
    fn each_side_is_answered_with_the_other_sides_description() {
        let bridges = Bridges::default();
        bridges.open("a", "b", CALLER_OFFER);
        assert!(bridges.leg("b").unwrap().is_callee && !bridges.leg("a").unwrap().is_callee);
        bridges.callee_described("b", CALLEE_ANSWER);
        assert_eq!(bridges.callee_sdp("b").as_deref(), Some(CALLEE_ANSWER));
        // The caller holds: answered with the callee's port, receiving only, a newer version.
        let answer = bridges.answer_for("a", Direction::RecvOnly).unwrap();
        assert!(
            answer.contains("m=audio 5000") && answer.contains("a=recvonly") && answer.contains("o=- 9 4 "),
            "{answer}"
        );
        // The callee re-offers: the caller's side will be answered with the caller's offer.
        bridges.offered("b", CALLEE_ANSWER);
        let answer = bridges.answer_for("b", Direction::SendRecv).unwrap();
        assert!(answer.contains("m=audio 4000") && answer.contains("o=- 7 2 "), "{answer}");
        bridges.close("b");
        assert!(bridges.leg("a").is_none() && bridges.leg("b").is_none());
    }
}
