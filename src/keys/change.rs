//! Key changes: rotation (with recovery of interrupted ones), retirement and revocation, each
//! committed in one transaction with the log entry that records it.
use super::*;

/// Which pending versions a recovery settles.
#[derive(Debug, Clone, Copy)]
pub(super) enum PendingVersions {
    /// Every one (at start-up, before this process rotates anything).
    All,
    /// The one a failed rotation of this process left.
    Only(u32),
    /// Those taken before this Unix time: left over, not in progress anywhere.
    TakenBefore(i64),
}

impl PendingVersions {
    pub(super) fn includes(self, version: &KeyVersionRecord) -> bool {
        match self {
            PendingVersions::All => true,
            PendingVersions::Only(number) => version.version == number,
            PendingVersions::TakenBefore(time) => version.created_at < time,
        }
    }
}

impl KeyRing {
    /// A rotation a crash (or a failure) interrupted is finished when its backend key was
    /// recorded, and undone otherwise; the log says which, by whom, and `when`.
    pub(super) async fn recover_interrupted_rotation(
        &self,
        key: &ManagedKey,
        context: &KeyContext<'_>,
        which: PendingVersions,
        actor: &Actor,
        when: &str,
    ) -> Result<(), KeyError> {
        let versions = context.store.key_versions(&key.config.name).await?;
        for pending in versions
            .iter()
            .filter(|v| v.state == KeyState::Pending && which.includes(v))
        {
            if pending.backend_ref.is_empty() {
                tracing::warn!(key = %key.config.name, version = pending.version, "rolling back a rotation interrupted before its backend key was recorded");
                self.abandon(
                    key,
                    pending.version,
                    &format!("interrupted before its backend key was recorded; rolled back {when}"),
                    context,
                )
                .await?;
            } else {
                tracing::warn!(key = %key.config.name, version = pending.version, "completing a rotation interrupted after its backend key was made");
                let previous = versions
                    .iter()
                    .rev()
                    .find(|v| v.state == KeyState::Active)
                    .cloned();
                let mut record = pending.clone();
                record.state = KeyState::Active;
                self.activate(
                    key,
                    &record,
                    previous.as_ref(),
                    actor,
                    &format!("interrupted after its backend key was made; completed {when}"),
                    context,
                )
                .await?;
            }
        }
        self.reload_key(key, context.store).await?;
        Ok(())
    }

    /// Rotates `name`: a new version is created inside the backend, then becomes active in the
    /// same commit as its `key_rotated` log entry; the active one turns verify-only for the
    /// key's grace period.
    pub async fn rotate(
        &self,
        name: &str,
        actor: &Actor,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<KeyVersionRecord, KeyError> {
        let key = self.signing_key(name)?;
        let _one_at_a_time = key.changing.lock().await;
        self.rotate_locked(key, actor, reason, context).await
    }

    pub(super) async fn rotate_locked(
        &self,
        key: &ManagedKey,
        actor: &Actor,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<KeyVersionRecord, KeyError> {
        let name = &key.config.name;
        let conflict = |reason: String| KeyError::Conflict {
            key: name.clone(),
            reason,
        };
        let versions = context.store.key_versions(name).await?;
        if let Some(pending) = versions.iter().find(|v| v.state == KeyState::Pending) {
            return Err(conflict(format!(
                "a rotation is already under way (version {} pending since {}; if the process \
                 making it died, a running daemon completes or undoes it {} minutes after that)",
                pending.version,
                crate::clock::rfc3339(pending.created_at),
                super::schedule::STALE_PENDING_SECONDS / 60
            )));
        }
        let current = versions
            .iter()
            .rev()
            .find(|v| v.state == KeyState::Active)
            .cloned()
            .ok_or_else(|| conflict("it has no active version".into()))?;
        let number = versions.last().map_or(1, |v| v.version + 1);
        let pending = KeyVersionRecord {
            key: name.clone(),
            version: number,
            key_id: String::new(),
            backend: key.backend.name().to_string(),
            backend_ref: String::new(),
            algorithm: key.config.algorithm,
            public_key_spki: Vec::new(),
            state: KeyState::Pending,
            created_at: context.clock.now_unix(),
            retire_at: None,
            log_index: None,
            revocation: None,
        };
        // The version number is taken in the store first: of two replicas rotating at once,
        // one gets a conflict here.
        context
            .store
            .insert_key_version(&pending)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(reason) => conflict(reason),
                other => other.into(),
            })?;
        let number = pending.version;
        let error = match self
            .make_and_activate(key, pending, &current, actor, reason, context)
            .await
        {
            Ok(record) => return Ok(record),
            Err(error) => error,
        };
        // Leave this pending version behind in no case (it would block every later rotation):
        // finish or undo it now, as a restart would. If that fails too, the scheduler retries.
        let recovered = self
            .recover_interrupted_rotation(
                key,
                context,
                PendingVersions::Only(number),
                actor,
                "after the rotation failed",
            )
            .await;
        match recovered {
            // Finished after all (its backend key was made): the rotation happened.
            Ok(()) => {
                if let Some(done) = key
                    .versions()
                    .into_iter()
                    .find(|v| v.version == number && v.state == KeyState::Active)
                {
                    return Ok(done);
                }
            }
            Err(e) => {
                tracing::warn!(key = %name, error = %e, "could not settle a failed rotation; will retry")
            }
        }
        Err(error)
    }

    /// The rest of a rotation once its version number is taken: the backend key, then the
    /// activation with its log entry.
    pub(super) async fn make_and_activate(
        &self,
        key: &ManagedKey,
        pending: KeyVersionRecord,
        current: &KeyVersionRecord,
        actor: &Actor,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<KeyVersionRecord, KeyError> {
        let name = &key.config.name;
        let number = pending.version;
        let made = match key
            .backend
            .create_version(&key.spec(), &current.backend_ref, number)
            .await
        {
            Ok(made) => made,
            Err(e) => {
                let reason = format!("the backend could not create it: {e}");
                self.abandon(key, number, &reason, context).await?;
                return Err(e.into());
            }
        };
        let jwk =
            jwks::jwk_from_spki(&made.public_key_spki, key.config.algorithm).map_err(|source| {
                KeyError::PublicKey {
                    key: name.clone(),
                    source,
                }
            })?;
        context
            .store
            .record_pending_key(
                name,
                number,
                &made.reference,
                &made.public_key_spki,
                &jwk.kid,
            )
            .await?;
        failpoint("rotation.after_backend_key");
        let record = KeyVersionRecord {
            key_id: jwk.kid,
            backend_ref: made.reference,
            public_key_spki: made.public_key_spki,
            state: KeyState::Active,
            ..pending
        };
        self.activate(key, &record, Some(current), actor, reason, context)
            .await?;
        tracing::info!(key = %name, version = number, kid = %record.key_id, "rotated");
        Ok(self
            .get(name)?
            .versions()
            .into_iter()
            .find(|v| v.version == number)
            .unwrap_or(record))
    }

    /// Makes a pending version active, committed with its log entry, under the key's gate.
    pub(super) async fn activate(
        &self,
        key: &ManagedKey,
        record: &KeyVersionRecord,
        previous: Option<&KeyVersionRecord>,
        actor: &Actor,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<(), KeyError> {
        let now = context.clock.now_unix();
        let grace = i64::try_from(key.config.grace_period.get().as_secs()).unwrap_or(i64::MAX);
        let retire_at = now.saturating_add(grace);
        let event = LogEvent::key_rotated(record, previous, retire_at, actor, reason, now);
        let change = KeyChange::Activate {
            key: key.config.name.clone(),
            version: record.version,
            retire_at,
            now,
        };
        // Signatures in flight finish and are logged first; new ones wait for the new version.
        let _gate = key.gate.write().await;
        let outcome = context.log.append_key_change(change, &[event]).await?;
        self.reload_key(key, context.store).await?;
        self.republish()?;
        match outcome {
            AppendOutcome::Appended { .. } => Ok(()),
            AppendOutcome::Stale(reason) => Err(KeyError::Conflict {
                key: key.config.name.clone(),
                reason,
            }),
            AppendOutcome::Refused(_) => Err(KeyError::Inconsistent {
                key: key.config.name.clone(),
                reason: "an uncharged append was refused".into(),
            }),
        }
    }

    /// Drops a pending version, committed with a `key_rotation_rolled_back` entry.
    pub(super) async fn abandon(
        &self,
        key: &ManagedKey,
        version: u32,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<(), KeyError> {
        let now = context.clock.now_unix();
        let event = LogEvent::key_rotation_rolled_back(&key.config.name, version, reason, now);
        let change = KeyChange::Abandon {
            key: key.config.name.clone(),
            version,
        };
        context.log.append_key_change(change, &[event]).await?;
        self.reload_key(key, context.store).await
    }

    /// Retires `version` of `name` at once: gone from the JWKS, kept for audit; what it signed
    /// stays valid (a compromise is `revoke`). An active version is first replaced.
    pub async fn retire(
        &self,
        name: &str,
        version: u32,
        actor: &Actor,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<KeyVersionRecord, KeyError> {
        let key = self.signing_key(name)?;
        let _one_at_a_time = key.changing.lock().await;
        let target = self
            .take_out_of_service(key, version, "retired", actor, reason, context)
            .await?;
        if target.state == KeyState::Retired {
            return Err(KeyError::BadVersion {
                key: name.to_string(),
                reason: format!("version {version} is already retired"),
            });
        }
        let event = LogEvent::key_retired(&target, actor, reason, context.clock.now_unix());
        let change = KeyChange::Retire {
            key: name.to_string(),
            version,
        };
        let retired = self.commit_change(key, change, event, context).await?;
        tracing::info!(key = %name, version, "retired");
        Ok(retired.unwrap_or(target))
    }

    /// Revokes `version` of `name` as compromised from `compromised_since` (Unix seconds, not in
    /// the future): irreversible. Signatures it made that were logged from then on stop
    /// verifying; earlier ones still do. An active version is first replaced by a new one.
    pub async fn revoke(
        &self,
        name: &str,
        version: u32,
        compromised_since: i64,
        actor: &Actor,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<KeyVersionRecord, KeyError> {
        let key = self.signing_key(name)?;
        let _one_at_a_time = key.changing.lock().await;
        let bad = |reason: String| KeyError::BadVersion {
            key: name.to_string(),
            reason,
        };
        if compromised_since > context.clock.now_unix() {
            return Err(bad("compromised_since is in the future".into()));
        }
        // A revoked version is retired, so this never rotates one that is already revoked.
        let target = self
            .take_out_of_service(key, version, "revoked", actor, reason, context)
            .await?;
        if target.revocation.is_some() {
            return Err(bad(format!("version {version} is already revoked")));
        }
        let event = LogEvent::key_revoked(
            &target,
            compromised_since,
            actor,
            reason,
            context.clock.now_unix(),
        );
        let change = KeyChange::Revoke {
            key: name.to_string(),
            version,
            compromised_since,
        };
        let revoked = self.commit_change(key, change, event, context).await?;
        tracing::warn!(key = %name, version, compromised_since, "revoked");
        Ok(revoked.unwrap_or(target))
    }

    /// The recorded `version` of `key`, which is about to be `doing` (retired, revoked): an
    /// active one is first replaced by a new version, so signing goes on.
    pub(super) async fn take_out_of_service(
        &self,
        key: &ManagedKey,
        version: u32,
        doing: &str,
        actor: &Actor,
        reason: &str,
        context: &KeyContext<'_>,
    ) -> Result<KeyVersionRecord, KeyError> {
        let name = &key.config.name;
        let bad = |reason: String| KeyError::BadVersion {
            key: name.clone(),
            reason,
        };
        let target = context
            .store
            .key_versions(name)
            .await?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| bad(format!("it has no version {version}")))?;
        match target.state {
            KeyState::Pending => Err(bad(format!("version {version} is being created"))),
            KeyState::Active => {
                self.rotate_locked(
                    key,
                    actor,
                    &format!("replacing version {version}, which is being {doing}: {reason}"),
                    context,
                )
                .await?;
                Ok(target)
            }
            KeyState::VerifyOnly | KeyState::Retired => Ok(target),
        }
    }

    /// Commits `change` with its log `event`, then republishes; the version as it now stands.
    pub(super) async fn commit_change(
        &self,
        key: &ManagedKey,
        change: KeyChange,
        event: LogEvent,
        context: &KeyContext<'_>,
    ) -> Result<Option<KeyVersionRecord>, KeyError> {
        let version = match &change {
            KeyChange::Activate { version, .. }
            | KeyChange::Retire { version, .. }
            | KeyChange::Abandon { version, .. }
            | KeyChange::Revoke { version, .. } => *version,
        };
        let outcome = context.log.append_key_change(change, &[event]).await?;
        self.reload_key(key, context.store).await?;
        self.republish()?;
        if let AppendOutcome::Stale(reason) = outcome {
            return Err(KeyError::Conflict {
                key: key.config.name.clone(),
                reason,
            });
        }
        Ok(key.versions().into_iter().find(|v| v.version == version))
    }
}

/// Test hook for crash tests: `SIGNET_FAILPOINT=NAME` aborts the process at the point `NAME`.
/// Only with the `failpoints` feature, which only `cargo test` turns on.
#[cfg(feature = "failpoints")]
fn failpoint(name: &str) {
    if std::env::var("SIGNET_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::error!(failpoint = name, "failpoint reached: aborting");
        std::process::abort();
    }
}

#[cfg(not(feature = "failpoints"))]
fn failpoint(_name: &str) {}
