//! A misbehaving authorization policy used to prove that a faulty plugin fails only its request.
//!
//! The token claim `test_fault` picks the fault: `loop` spins forever, `trap` panics, `memory`
//! allocates without bound. Any other token is allowed, with `sub` as the phone number, so the
//! same plugin also serves the concurrent request that must succeed.

wit_bindgen::generate!({
    world: "authorization-policy",
    path: "../../../wit/v0.1.0",
});

use exports::camara::gateway::policy::{AuthorizationRequest, Decision, Guest as PolicyGuest, Subscriber};

struct FaultyPolicy;

impl PolicyGuest for FaultyPolicy {
    fn authorize(req: AuthorizationRequest) -> Decision {
        let claims: serde_json::Value = serde_json::from_str(&req.claims.all_claims_json).unwrap_or_default();
        match claims.get("test_fault").and_then(|v| v.as_str()) {
            Some("loop") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Some("trap") => panic!("faulty-policy: deliberate trap"),
            Some("memory") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            _ => Decision::Allow(Subscriber { phone_number: req.claims.subject.clone(), subject: req.claims.subject }),
        }
    }
}

impl Guest for FaultyPolicy {
    fn validate_config(_config: Vec<Pair>) -> Result<(), String> {
        Ok(())
    }
}

export!(FaultyPolicy);
