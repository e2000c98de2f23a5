//! One run per group: a lease in an SSM parameter, renewed while its run works, taken over
//! by the next run once it has expired past a grace (its holder died: every stage is
//! idempotent, so the next run resumes its work).
//!
//! The lease is `/red5-rollout/locks/<group>`, created without overwrite: of two runs that
//! start together one creates it, the other is told who holds it. Its holder renews it
//! every third of its duration. A run that finds it expired past the grace takes it over
//! through a second parameter named after the expired lease, also created without
//! overwrite, so that of two runs taking over the same dead lease exactly one wins; the
//! winner overwrites the lease with its own and removes that parameter again.
//!
//! Whether a lease has expired is a pure function of the lease, the time and the terms,
//! tested over its cases.

use crate::cloud::{Cloud, CloudError, ErrorClass, Lock};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How long a lease lasts unless renewed, and how long after its end it is taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTerms {
    pub duration: Duration,
    pub grace: Duration,
}

impl LeaseTerms {
    /// 10 minutes, renewed every 3m20s; taken over 2 minutes after it ran out. A run that
    /// died holds its group for at most 12 minutes.
    pub const DEFAULT: LeaseTerms = LeaseTerms {
        duration: Duration::from_secs(600),
        grace: Duration::from_secs(120),
    };

    /// How often the holder renews: a third of the duration, so two renewals may fail in a
    /// row before the lease runs out.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }
}

/// The SSM parameter that holds a group's lease.
pub fn lease_name(group: &str) -> String {
    format!("/red5-rollout/locks/{group}")
}

/// The parameter a run creates to take over the expired lease `expired`: one per expired
/// lease, so only one run can take it over.
fn takeover_name(group: &str, expired: &Lock) -> String {
    let stamp: String = expired
        .expires
        .as_deref()
        .unwrap_or(&expired.started)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let run: String = expired
        .run
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    format!("/red5-rollout/takeovers/{group}/{run}-{stamp}")
}

pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// When `lock` ends: its `expires`, or for a lock written before leases existed, its start
/// plus the default duration.
pub fn ends_at(lock: &Lock) -> Option<OffsetDateTime> {
    match &lock.expires {
        Some(expires) => OffsetDateTime::parse(expires, &Rfc3339).ok(),
        None => OffsetDateTime::parse(&lock.started, &Rfc3339)
            .ok()
            .map(|started| started + LeaseTerms::DEFAULT.duration),
    }
}

/// Whether `lock` has expired past the grace at `now`: its holder is taken to be dead. A
/// lock whose times cannot be read is never taken over (`unlock` is for that).
pub fn is_abandoned(lock: &Lock, now: OffsetDateTime, terms: LeaseTerms) -> bool {
    ends_at(lock).is_some_and(|end| now > end + terms.grace)
}

/// `lock` with its expiry set to `now` plus the duration.
pub fn renewed(lock: &Lock, now: OffsetDateTime, terms: LeaseTerms) -> Lock {
    Lock {
        expires: Some(rfc3339(now + terms.duration)),
        ..lock.clone()
    }
}

/// How taking a lease went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The group was free.
    Taken,
    /// The lease of a run that died was taken over.
    TookOver { previous: Lock },
    /// Another run holds it.
    HeldBy { holder: Option<Lock> },
}

/// Takes the lease of `group` for `lock` (whose expiry this sets).
pub async fn acquire(
    cloud: &dyn Cloud,
    group: &str,
    lock: &Lock,
    terms: LeaseTerms,
) -> Result<Acquired, CloudError> {
    let name = lease_name(group);
    let now = OffsetDateTime::now_utc();
    let mine = renewed(lock, now, terms);
    match cloud.put_lock(&name, &mine).await {
        Ok(()) => return Ok(Acquired::Taken),
        Err(e) if e.is(ErrorClass::Conflict) => {}
        Err(e) => return Err(e),
    }
    let Some(holder) = cloud.read_lock(&name).await? else {
        // Released between our two calls: try once more.
        return match cloud.put_lock(&name, &mine).await {
            Ok(()) => Ok(Acquired::Taken),
            Err(e) if e.is(ErrorClass::Conflict) => Ok(Acquired::HeldBy { holder: None }),
            Err(e) => Err(e),
        };
    };
    if !is_abandoned(&holder, now, terms) {
        return Ok(Acquired::HeldBy {
            holder: Some(holder),
        });
    }
    let marker = takeover_name(group, &holder);
    match cloud.put_lock(&marker, &mine).await {
        Ok(()) => {}
        Err(e) if e.is(ErrorClass::Conflict) => {
            return Ok(Acquired::HeldBy {
                holder: cloud.read_lock(&name).await?,
            });
        }
        Err(e) => return Err(e),
    }
    cloud.renew_lock(&name, &mine).await?;
    cloud.delete_lock(&marker).await?;
    Ok(Acquired::TookOver { previous: holder })
}

/// Renews the lease of `group` held by `lock`'s run. `Ok(false)` when another run holds it
/// now (this run was taken for dead).
pub async fn renew(
    cloud: &dyn Cloud,
    group: &str,
    lock: &Lock,
    terms: LeaseTerms,
) -> Result<bool, CloudError> {
    let name = lease_name(group);
    match cloud.read_lock(&name).await? {
        Some(held) if held.run == lock.run => {
            cloud
                .renew_lock(&name, &renewed(lock, OffsetDateTime::now_utc(), terms))
                .await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Releases the lease of `group` if `run` holds it.
pub async fn release(cloud: &dyn Cloud, group: &str, run: &str) -> Result<(), CloudError> {
    let name = lease_name(group);
    if let Some(held) = cloud.read_lock(&name).await?
        && held.run == run
    {
        cloud.delete_lock(&name).await?;
    }
    Ok(())
}

/// Removes the lease of `group` when its run died (expired past the grace); returns it.
pub async fn clear_abandoned(
    cloud: &dyn Cloud,
    group: &str,
    terms: LeaseTerms,
) -> Result<Option<Lock>, CloudError> {
    let name = lease_name(group);
    match cloud.read_lock(&name).await? {
        Some(held) if is_abandoned(&held, OffsetDateTime::now_utc(), terms) => {
            cloud.delete_lock(&name).await?;
            Ok(Some(held))
        }
        _ => Ok(None),
    }
}

/// A lease holder in one line: "run R on HOST (commit C, CI run URL) since S, until E".
pub fn describe_holder(lock: &Lock) -> String {
    let commit = &lock.commit[..lock.commit.len().min(12)];
    let ci = match (&lock.ci_url, &lock.ci_run) {
        (Some(url), _) => format!(", CI run {url}"),
        (None, Some(run)) => format!(", CI run {run}"),
        _ => String::new(),
    };
    let until = lock
        .expires
        .as_deref()
        .map(|e| format!(", lease until {e}"))
        .unwrap_or_default();
    format!(
        "run {} on {} (commit {commit}{ci}) since {}{until}",
        lock.run, lock.host, lock.started
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn lock(started: &str, expires: Option<&str>) -> Lock {
        Lock {
            run: "20261130T080000Z-4f2a".into(),
            host: "runner-1".into(),
            commit: "0123456789abcdef".into(),
            started: started.into(),
            expires: expires.map(str::to_owned),
            ci_run: None,
            ci_url: None,
        }
    }

    #[test]
    fn a_lease_is_abandoned_only_once_it_expired_past_the_grace() {
        let terms = LeaseTerms {
            duration: Duration::from_secs(60),
            grace: Duration::from_secs(30),
        };
        let held = lock("2026-11-30T08:00:00Z", Some("2026-11-30T08:01:00Z"));
        let table = [
            (datetime!(2026-11-30 08:00:30 UTC), false),
            (datetime!(2026-11-30 08:01:00 UTC), false),
            (datetime!(2026-11-30 08:01:30 UTC), false),
            (datetime!(2026-11-30 08:01:31 UTC), true),
        ];
        for (now, abandoned) in table {
            assert_eq!(is_abandoned(&held, now, terms), abandoned, "{now}");
        }
        // A lock from before leases ends after the default duration.
        let old = lock("2026-11-30T08:00:00Z", None);
        assert!(!is_abandoned(
            &old,
            datetime!(2026-11-30 08:10:30 UTC),
            terms
        ));
        assert!(is_abandoned(
            &old,
            datetime!(2026-11-30 08:10:31 UTC),
            terms
        ));
        // A lock whose times cannot be read is never taken over.
        let unreadable = lock("yesterday", Some("soon"));
        assert!(!is_abandoned(
            &unreadable,
            datetime!(2030-01-01 00:00 UTC),
            terms
        ));
    }

    #[test]
    fn a_renewed_lease_ends_one_duration_after_now() {
        let held = lock("2026-11-30T08:00:00Z", Some("2026-11-30T08:01:00Z"));
        let renewed = renewed(
            &held,
            datetime!(2026-11-30 08:05:00 UTC),
            LeaseTerms::DEFAULT,
        );
        assert_eq!(renewed.expires.as_deref(), Some("2026-11-30T08:15:00Z"));
        assert_eq!(renewed.started, held.started);
    }

    #[test]
    fn every_expired_lease_has_its_own_takeover_parameter_with_a_valid_name() {
        let a = takeover_name("red5pro-sm-asg", &lock("s", Some("2026-11-30T08:01:00Z")));
        let b = takeover_name("red5pro-sm-asg", &lock("s", Some("2026-11-30T08:02:00Z")));
        assert_ne!(a, b);
        assert_eq!(
            a,
            "/red5-rollout/takeovers/red5pro-sm-asg/20261130T080000Z-4f2a-20261130080100"
        );
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
        );
    }
}
