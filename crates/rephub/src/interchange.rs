//! The exports that are more than one stream of an entry per line, written the same way whether
//! the entries come from the database itself or from a hub (`--hub`): an nftables script, and a
//! MISP feed directory.

use std::path::Path;

use anyhow::Context;

use rephub_model::{Clock, Entry, FeedFiles, Kind, SystemClock};

use crate::files::export_to;

/// The agent's nftables table holding `entries` (address or network, expiry) as an `nft -f`
/// script; other kinds are left out. Returns how many went in.
pub(crate) fn write_nft(
    entries: impl IntoIterator<Item = (Entry, Option<i64>)>,
    output: Option<&Path>,
) -> anyhow::Result<usize> {
    let items: Vec<(Entry, rephub_agent::answer::Rule)> = entries
        .into_iter()
        .filter(|(e, _)| matches!(e.kind(), Kind::Ipv4 | Kind::Ipv6))
        .map(|(e, expires)| {
            let rule = rephub_agent::answer::Rule {
                action: rephub_model::ActionSet::Block,
                filter: std::sync::Arc::from("export"),
                expires,
            };
            (e, rule)
        })
        .collect();
    let script = rephub_agent::nft::Nft::export_script(
        "rephub",
        items.iter().map(|(e, r)| (e, r)),
        SystemClock.now(),
    );
    export_to(output, &mut |out| {
        out.write_all(script.as_bytes())?;
        Ok(())
    })?;
    Ok(items.len())
}

/// A MISP feed directory. The events first, the manifest last: a MISP instance polling meanwhile
/// never finds an event in the manifest that is not there yet.
pub(crate) fn write_misp(files: &FeedFiles, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (uuid, event) in &files.events {
        let path = dir.join(format!("{uuid}.json"));
        export_to(Some(&path), &mut |out| {
            serde_json::to_writer(&mut *out, event)?;
            Ok(())
        })?;
    }
    export_to(Some(&dir.join("hashes.csv")), &mut |out| {
        out.write_all(files.hashes.as_bytes())?;
        Ok(())
    })?;
    export_to(Some(&dir.join("manifest.json")), &mut |out| {
        serde_json::to_writer(&mut *out, &files.manifest)?;
        Ok(())
    })
}
