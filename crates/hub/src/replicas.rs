//! Several hub replicas on one PostgreSQL database (docs/postgresql.md).
//!
//! Every replica keeps parts of the database in memory: the filter sets of the profiles, the
//! devices by token, the API keys, the good client certificates, the tag catalog. Entry changes
//! need nothing more: every commit notifies, and wakes each replica's engine, which reads the
//! change log as it does for its own writes. The rest a replica announces when it changes it
//! (`AppState::changed`), and the others read it again:
//! - devices, keys, certificates and the catalog are read again whole;
//! - profiles: each replica installs the filters of every profile whose filters differ from its
//!   own, and touches the entries whose decision changes *for it* — the replica that made the
//!   change touched them too, but its touches may reach this one before the announcement does,
//!   and would then have been decided with the old filters. A touch more is harmless (an entry
//!   decided again gives the same answer); a touch less would leave a device wrong.
//!
//! After the listening connection is lost and made again, everything is read again (the
//! notifications sent meanwhile are lost).

use std::time::Duration;

use rephub_store::{DistributionStore, Notice, ReputationStore, StoreError};

use crate::changed::Changed;
use crate::distribution::engine::profile_filters;
use crate::error::HubError;
use crate::state::AppState;

/// Listen to the other replicas (a thread of its own, for as long as the hub runs).
pub(crate) fn follow(state: &AppState, conninfo: String) -> Result<(), HubError> {
    let weak = state.downgrade();
    // Announcements are handled by one worker. What queued up meanwhile is read once per kind, in
    // `Changed::ALL`'s order (the catalog before profiles before devices): every read is of the
    // database as it is now, so reading a kind once after several announcements of it is as good
    // as reading it for each — and an operator registering 10,000 devices through one replica
    // must not make every other replica read the whole device table 10,000 times. The order keeps
    // a device announced after its new profile from being served before the profile is installed.
    let (queue, mut work) = tokio::sync::mpsc::unbounded_channel::<Vec<Changed>>();
    let worker = weak.clone();
    tokio::spawn(async move {
        while let Some(first) = work.recv().await {
            let mut due = first;
            while let Ok(more) = work.try_recv() {
                due.extend(more);
            }
            let Some(state) = worker.upgrade() else {
                return;
            };
            for w in Changed::ALL.into_iter().filter(|w| due.contains(w)) {
                if let Err(e) = refresh(&state, w).await {
                    tracing::warn!(error = %e, what = w.word(), "reading another replica's change");
                }
            }
        }
    });
    let listen = move || loop {
        let heard =
            rephub_store::listen_for_commits(&conninfo, Duration::from_secs(1), &mut |notice| {
                let Some(state) = weak.upgrade() else {
                    return false;
                };
                let what: Vec<Changed> = match notice {
                    Notice::Changes => {
                        state.engine().wake();
                        return true;
                    }
                    Notice::Idle => return true,
                    Notice::Listening => {
                        state.engine().wake();
                        Changed::ALL.to_vec()
                    }
                    Notice::Announced(word) => Changed::from_word(&word).into_iter().collect(),
                };
                queue.send(what).is_ok()
            });
        match heard {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "listening to the other replicas failed; again in 1 s");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    std::thread::Builder::new()
        .name("rephub-replicas".into())
        .spawn(listen)
        .map_err(HubError::file(std::path::Path::new("the replicas thread")))?;
    Ok(())
}

async fn refresh(state: &AppState, what: Changed) -> Result<(), HubError> {
    match what {
        Changed::Devices => state.reload_devices().await,
        Changed::Keys => state.reload_keys().await,
        Changed::Certificates => state.reload_enrolled().await,
        Changed::Catalog => state.reload_catalog().await.map(drop),
        Changed::Profiles => sync_profiles(state).await,
    }
}

/// Install every profile whose filters differ from the engine's, drop the ones that are gone.
async fn sync_profiles(state: &AppState) -> Result<(), HubError> {
    let (catalog, filters, rows) = state
        .read(|s| Ok::<_, StoreError>((s.catalog()?, s.filters()?, s.profiles()?)))
        .await??;
    let engine = state.engine();
    let mut kept = Vec::with_capacity(rows.len());
    for p in rows {
        kept.push(p.id);
        let want = profile_filters(&catalog, &p.filters, &filters)?;
        if engine.filters_of(p.id).as_ref() != Some(&want) {
            crate::admin::install_profile_here(state, p.id, &p.name, &p.filters).await?;
        }
    }
    for id in engine.profile_ids() {
        if !kept.contains(&id) {
            engine.remove_profile(id);
        }
    }
    state.reload_devices().await
}
