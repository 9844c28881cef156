//! The JWKS: parsing into usable verification keys, and a cache that follows key rotation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

/// One public key of the set, ready to verify signatures.
pub(crate) struct VerificationKey {
    pub(crate) kid: Option<String>,
    /// The JWK's `alg`, when it pins one.
    alg: Option<Algorithm>,
    kind: KeyKind,
    pub(crate) key: DecodingKey,
}

#[derive(PartialEq)]
enum KeyKind {
    Rsa,
    Ec(EllipticCurve),
    Ed,
}

impl VerificationKey {
    /// `None` for keys that must never verify a token here: symmetric (`oct`) keys, encryption
    /// keys, unknown key types or algorithms.
    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))) {
            return None;
        }
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyKind::Rsa,
            AlgorithmParameters::EllipticCurve(ec) => KeyKind::Ec(ec.curve.clone()),
            AlgorithmParameters::OctetKeyPair(_) => KeyKind::Ed,
            _ => return None,
        };
        // An `alg` that is not a signature algorithm (RSA-OAEP, ...) means "not for us".
        let alg = match &jwk.common.key_algorithm {
            Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
            None => None,
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(VerificationKey { kid: jwk.common.key_id.clone(), alg, kind, key })
    }

    /// Whether this key may verify a signature made with `alg`.
    fn fits(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|pinned| pinned != alg) {
            return false;
        }
        match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => self.kind == KeyKind::Rsa,
            Algorithm::ES256 => self.kind == KeyKind::Ec(EllipticCurve::P256),
            Algorithm::ES384 => self.kind == KeyKind::Ec(EllipticCurve::P384),
            Algorithm::EdDSA => self.kind == KeyKind::Ed,
            // HMAC, and whatever a future jsonwebtoken adds, is never verified with a JWKS key.
            _ => false,
        }
    }
}

/// A fetched key set.
pub(crate) struct KeySet {
    keys: Vec<VerificationKey>,
    fetched_at: Instant,
}

pub(crate) enum Lookup<'a> {
    Found(&'a VerificationKey),
    /// The token names a key the set does not have: maybe a rotation we have not seen yet.
    UnknownKid,
    /// No usable key, or several candidates and no `kid` to choose.
    NoKey(&'static str),
}

impl KeySet {
    /// Parses a JWKS, skipping (not failing on) keys this verifier cannot or must not use, so that
    /// an IdP publishing e.g. an encryption key next to its signing keys still works.
    pub(crate) fn parse(text: &[u8]) -> Result<KeySet, String> {
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let raw: RawSet = serde_json::from_slice(text).map_err(|e| format!("not a JWKS: {e}"))?;
        let keys: Vec<VerificationKey> = raw
            .keys
            .into_iter()
            .filter_map(|value| {
                let jwk: Jwk = serde_json::from_value(value).ok()?;
                let key = VerificationKey::from_jwk(&jwk);
                if key.is_none() {
                    tracing::debug!(kid = ?jwk.common.key_id, "JWKS key skipped: not a usable signature key");
                }
                key
            })
            .collect();
        if keys.is_empty() {
            return Err("the JWKS holds no usable signature key".into());
        }
        Ok(KeySet { keys, fetched_at: Instant::now() })
    }

    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        match kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(key) if key.fits(alg) => Lookup::Found(key),
                Some(_) => Lookup::NoKey("the key named by kid does not fit the token's algorithm"),
                None => Lookup::UnknownKid,
            },
            // Without a kid, guessing between several keys would be trying keys until one
            // verifies; accept only the unambiguous case.
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Lookup::Found(key),
                    (None, _) => Lookup::NoKey("no key of the JWKS fits the token's algorithm"),
                    (Some(_), Some(_)) => Lookup::NoKey("token has no key id (kid) and the JWKS has several keys"),
                }
            }
        }
    }
}

/// The cached key set and when to fetch it again.
///
/// Readers take the `RwLock` only to clone an `Arc`; fetching happens under `fetch`, so that a
/// burst of requests on a cold or expired cache makes one request to the IdP, not one each.
pub(crate) struct KeyCache {
    current: RwLock<Option<Arc<KeySet>>>,
    fetch: Mutex<FetchState>,
    max_age: Duration,
    min_refetch: Duration,
}

#[derive(Default)]
struct FetchState {
    last_failure: Option<(Instant, String)>,
    last_unknown_kid_refetch: Option<Instant>,
}

impl FetchState {
    /// A recent failure is answered from memory: an IdP that is down is not asked on every request.
    fn recent_failure(&self, min_refetch: Duration) -> Option<String> {
        self.last_failure.as_ref().filter(|(at, _)| at.elapsed() < min_refetch).map(|(_, e)| e.clone())
    }
}

impl KeyCache {
    pub(crate) fn new(max_age: Duration, min_refetch: Duration) -> Self {
        KeyCache { current: RwLock::new(None), fetch: Mutex::new(FetchState::default()), max_age, min_refetch }
    }

    fn is_fresh(&self, set: &KeySet) -> bool {
        set.fetched_at.elapsed() < self.max_age
    }

    /// The key set to verify with: the cached one while fresh, else a newly fetched one.
    /// When a refresh fails, the expired set keeps being used: keys do not go bad with age, and a
    /// brief IdP outage should not turn every call into a 503.
    pub(crate) async fn get(
        &self,
        // A future, not a closure: it is lazy, so an unused one costs nothing, and unlike an
        // `AsyncFn` it keeps the caller's future `Send` for any lifetime.
        load: impl Future<Output = Result<KeySet, String>>,
    ) -> Result<Arc<KeySet>, String> {
        let cached = self.current.read().await.clone();
        if let Some(set) = &cached
            && self.is_fresh(set)
        {
            return Ok(set.clone());
        }
        let mut state = match (&cached, self.fetch.try_lock()) {
            (_, Ok(state)) => state,
            // Someone is already refreshing: keep serving the expired set meanwhile.
            (Some(set), Err(_)) => return Ok(set.clone()),
            (None, Err(_)) => self.fetch.lock().await,
        };
        // Another task may have fetched while this one waited for the lock.
        let cached = self.current.read().await.clone();
        if let Some(set) = &cached
            && self.is_fresh(set)
        {
            return Ok(set.clone());
        }
        if let Some(error) = state.recent_failure(self.min_refetch) {
            return cached.ok_or(error);
        }
        match load.await {
            Ok(set) => Ok(self.store(&mut state, set).await),
            Err(error) => {
                state.last_failure = Some((Instant::now(), error.clone()));
                match cached {
                    Some(set) => {
                        tracing::warn!(%error, "cannot refresh the JWKS; still using the previous keys");
                        Ok(set)
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// A token names a `kid` missing from `seen`: fetch the set again, unless that was done less
    /// than `min_refetch` ago. `Ok(None)`: not refetched (rate limit), the token is to be rejected.
    pub(crate) async fn refetch_for_unknown_kid(
        &self,
        seen: &Arc<KeySet>,
        // A future, not a closure: it is lazy, so an unused one costs nothing, and unlike an
        // `AsyncFn` it keeps the caller's future `Send` for any lifetime.
        load: impl Future<Output = Result<KeySet, String>>,
    ) -> Result<Option<Arc<KeySet>>, String> {
        let mut state = self.fetch.lock().await;
        if let Some(current) = self.current.read().await.clone()
            && !Arc::ptr_eq(&current, seen)
        {
            // Fetched by someone else while this task waited: look there first.
            return Ok(Some(current));
        }
        if state.last_unknown_kid_refetch.is_some_and(|at| at.elapsed() < self.min_refetch) {
            return Ok(None);
        }
        if let Some(error) = state.recent_failure(self.min_refetch) {
            return Err(error);
        }
        state.last_unknown_kid_refetch = Some(Instant::now());
        match load.await {
            Ok(set) => Ok(Some(self.store(&mut state, set).await)),
            Err(error) => {
                state.last_failure = Some((Instant::now(), error.clone()));
                Err(error)
            }
        }
    }

    async fn store(&self, state: &mut FetchState, set: KeySet) -> Arc<KeySet> {
        state.last_failure = None;
        let set = Arc::new(set);
        *self.current.write().await = Some(set.clone());
        set
    }
}
