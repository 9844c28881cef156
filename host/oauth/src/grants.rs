//! Authorization codes and refresh tokens, in memory: bounded, expiring, swept on every access.
//!
//! Both are kept under the SHA-256 of the credential, so the map is never searched with a
//! secret (no timing signal) and a memory dump does not hold usable credentials. Every code and
//! the refresh tokens it leads to form one *family*: presenting a used code or a rotated-out
//! refresh token again is taken as theft and ends the whole family (RFC 6749 §4.1.2, RFC 9700
//! §4.14.2).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Pending authorization codes at most (each lives 60 s).
pub(crate) const MAX_CODES: usize = 10_000;
/// Refresh tokens at most (active and rotated-out); when full, the one expiring first goes.
pub(crate) const MAX_REFRESH_TOKENS: usize = 10_000;
/// Expired entries are dropped at most this often (and whenever a map is full); in between,
/// each lookup checks the entry's own expiry.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub(crate) type Digest32 = [u8; 32];

/// A fresh credential (256 random bits, base64url) and its digest.
pub(crate) fn new_credential() -> (String, Digest32) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let credential = URL_SAFE_NO_PAD.encode(bytes);
    let digest = digest(&credential);
    (credential, digest)
}

pub(crate) fn digest(credential: &str) -> Digest32 {
    Sha256::digest(credential.as_bytes()).into()
}

/// Whom tokens are issued for, and what they may do.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) client_id: String,
    pub(crate) subject: String,
    pub(crate) phone_number: Option<String>,
    pub(crate) scopes: Vec<String>,
    /// When the subscriber signed in (OIDC `auth_time`).
    pub(crate) auth_time: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct CodeGrant {
    pub(crate) grant: Grant,
    pub(crate) redirect_uri: String,
    /// The S256 `code_challenge`; `None` when a confidential client sent none.
    pub(crate) code_challenge: Option<String>,
    pub(crate) nonce: Option<String>,
}

struct CodeEntry {
    code: CodeGrant,
    family: u64,
    expires: Instant,
    used: bool,
}

struct RefreshEntry {
    grant: Grant,
    family: u64,
    expires: Instant,
    rotated: bool,
}

/// Why a code or refresh token was refused (all `invalid_grant` to the client).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Unknown or expired.
    Unknown,
    /// Presented before: the family has been revoked.
    Replayed,
}

#[derive(Default)]
pub(crate) struct Grants {
    codes: HashMap<Digest32, CodeEntry>,
    refresh: HashMap<Digest32, RefreshEntry>,
    next_family: u64,
    next_sweep: Option<Instant>,
}

impl Grants {
    fn sweep(&mut self, now: Instant, force: bool) {
        if force || self.next_sweep.is_none_or(|at| now >= at) {
            self.codes.retain(|_, e| e.expires > now);
            self.refresh.retain(|_, e| e.expires > now);
            self.next_sweep = Some(now + SWEEP_EVERY);
        }
    }

    fn revoke_family(&mut self, family: u64) {
        self.refresh.retain(|_, e| e.family != family);
        for entry in self.codes.values_mut().filter(|e| e.family == family) {
            entry.used = true;
        }
    }

    /// Stores a new code; `None` when too many are pending.
    pub(crate) fn insert_code(&mut self, digest: Digest32, code: CodeGrant, expires: Instant) -> Option<()> {
        let now = Instant::now();
        self.sweep(now, false);
        if self.codes.len() >= MAX_CODES {
            self.sweep(now, true);
        }
        if self.codes.len() >= MAX_CODES {
            return None;
        }
        let family = self.next_family;
        self.next_family += 1;
        self.codes.insert(digest, CodeEntry { code, family, expires, used: false });
        Some(())
    }

    /// Redeems a code: it is used up by this call whatever `check` says. Returns the grant and
    /// its family (for the refresh token) when `check` accepts it.
    pub(crate) fn redeem_code<E>(
        &mut self,
        digest: &Digest32,
        check: impl FnOnce(&CodeGrant) -> Result<(), E>,
    ) -> Result<Result<(CodeGrant, u64), E>, Refused> {
        let now = Instant::now();
        self.sweep(now, false);
        let Some(entry) = self.codes.get_mut(digest).filter(|e| e.expires > now) else {
            return Err(Refused::Unknown);
        };
        if entry.used {
            let family = entry.family;
            self.revoke_family(family);
            return Err(Refused::Replayed);
        }
        entry.used = true;
        Ok(check(&entry.code).map(|()| (entry.code.clone(), entry.family)))
    }

    /// Stores a new refresh token of `family` (a new family when `None`).
    pub(crate) fn insert_refresh(&mut self, digest: Digest32, grant: Grant, family: Option<u64>, expires: Instant) {
        let now = Instant::now();
        self.sweep(now, false);
        if self.refresh.len() >= MAX_REFRESH_TOKENS {
            self.sweep(now, true);
        }
        if self.refresh.len() >= MAX_REFRESH_TOKENS
            && let Some(oldest) = self.refresh.iter().min_by_key(|(_, e)| e.expires).map(|(k, _)| *k)
        {
            self.refresh.remove(&oldest);
        }
        let family = family.unwrap_or_else(|| {
            self.next_family += 1;
            self.next_family - 1
        });
        self.refresh.insert(digest, RefreshEntry { grant, family, expires, rotated: false });
    }

    /// Uses a refresh token: when `check` accepts it, it is rotated out (kept only to detect a
    /// replay) and its grant and family are returned for the new one. A refusal by `check`
    /// leaves it usable.
    pub(crate) fn use_refresh<E>(
        &mut self,
        digest: &Digest32,
        check: impl FnOnce(&Grant) -> Result<(), E>,
    ) -> Result<Result<(Grant, u64), E>, Refused> {
        let now = Instant::now();
        self.sweep(now, false);
        let Some(entry) = self.refresh.get_mut(digest).filter(|e| e.expires > now) else {
            return Err(Refused::Unknown);
        };
        if entry.rotated {
            let family = entry.family;
            self.revoke_family(family);
            return Err(Refused::Replayed);
        }
        if let Err(e) = check(&entry.grant) {
            return Ok(Err(e));
        }
        entry.rotated = true;
        Ok(Ok((entry.grant.clone(), entry.family)))
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        (self.codes.len(), self.refresh.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            client_id: "c".into(),
            subject: "alice".into(),
            phone_number: None,
            scopes: vec!["openid".into()],
            auth_time: 0,
        }
    }

    fn code() -> CodeGrant {
        CodeGrant { grant: grant(), redirect_uri: "http://h/cb".into(), code_challenge: None, nonce: None }
    }

    fn ok(_: &CodeGrant) -> Result<(), ()> {
        Ok(())
    }

    #[test]
    fn a_replayed_code_revokes_its_refresh_tokens() {
        let mut grants = Grants::default();
        let later = Instant::now() + Duration::from_secs(60);
        let (_, c) = new_credential();
        grants.insert_code(c, code(), later).unwrap();
        let (_, family) = grants.redeem_code(&c, ok).unwrap().unwrap();
        let (_, r) = new_credential();
        grants.insert_refresh(r, grant(), Some(family), later);
        assert_eq!(grants.redeem_code(&c, ok).unwrap_err(), Refused::Replayed);
        assert_eq!(grants.use_refresh(&r, |_| Ok::<_, ()>(())).unwrap_err(), Refused::Unknown);
    }

    #[test]
    fn a_replayed_refresh_token_revokes_the_rotated_one() {
        let mut grants = Grants::default();
        let later = Instant::now() + Duration::from_secs(60);
        let (_, first) = new_credential();
        grants.insert_refresh(first, grant(), None, later);
        let (_, family) = grants.use_refresh(&first, |_| Ok::<_, ()>(())).unwrap().unwrap();
        let (_, second) = new_credential();
        grants.insert_refresh(second, grant(), Some(family), later);
        assert_eq!(grants.use_refresh(&first, |_| Ok::<_, ()>(())).unwrap_err(), Refused::Replayed);
        assert_eq!(grants.use_refresh(&second, |_| Ok::<_, ()>(())).unwrap_err(), Refused::Unknown);
    }

    #[test]
    fn a_refused_check_keeps_the_refresh_token() {
        let mut grants = Grants::default();
        let (_, r) = new_credential();
        grants.insert_refresh(r, grant(), None, Instant::now() + Duration::from_secs(60));
        assert_eq!(grants.use_refresh(&r, |_| Err("no")).unwrap().unwrap_err(), "no");
        assert!(grants.use_refresh(&r, |_| Ok::<_, ()>(())).unwrap().is_ok());
    }

    #[test]
    fn expired_entries_are_refused_before_any_sweep() {
        let mut grants = Grants::default();
        let (_, c) = new_credential();
        let (_, r) = new_credential();
        // Sweep now, so that the next one is a second away.
        grants.insert_code(new_credential().1, code(), Instant::now() + Duration::from_secs(60)).unwrap();
        grants.insert_code(c, code(), Instant::now()).unwrap();
        grants.insert_refresh(r, grant(), None, Instant::now());
        assert_eq!(grants.redeem_code(&c, ok).unwrap_err(), Refused::Unknown);
        assert_eq!(grants.use_refresh(&r, |_| Ok::<_, ()>(())).unwrap_err(), Refused::Unknown);
    }

    #[test]
    fn maps_are_bounded_and_swept() {
        let mut grants = Grants::default();
        let now = Instant::now();
        for i in 0..MAX_CODES {
            // Half of them expire at once.
            let expires = if i % 2 == 0 { now } else { now + Duration::from_secs(60) };
            grants.insert_code(new_credential().1, code(), expires).unwrap();
        }
        assert!(grants.insert_code(new_credential().1, code(), now + Duration::from_secs(60)).is_some());
        assert!(grants.counts().0 <= MAX_CODES / 2 + 1);
        for _ in 0..MAX_REFRESH_TOKENS + 10 {
            grants.insert_refresh(new_credential().1, grant(), None, now + Duration::from_secs(60));
        }
        assert_eq!(grants.counts().1, MAX_REFRESH_TOKENS);
    }
}
