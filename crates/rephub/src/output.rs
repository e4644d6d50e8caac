//! Writing entries as SMS CSV lines, JSON lines or plain values.

use std::collections::BTreeMap;
use std::io::Write;

use rephub_model::{Catalog, ExportRecord, format_sms_line};
use rephub_store::StoredEntry;

use crate::args::OutputFormat;

pub(crate) fn write_entry(
    out: &mut dyn Write,
    catalog: &Catalog,
    e: &StoredEntry,
    format: OutputFormat,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Plain => writeln!(out, "{}", e.entry),
        OutputFormat::Sms => {
            let pairs = catalog.named(&e.tags).map(|(n, v)| (n, v.to_string()));
            // Mixed output uses commas; a URL holding a comma is quoted, which rephub import reads.
            writeln!(out, "{}", format_sms_line(&e.entry.to_string(), pairs, ','))
        }
        OutputFormat::Jsonl => {
            let tags: BTreeMap<&str, serde_json::Value> = catalog
                .named(&e.tags)
                .map(|(n, v)| (n, ExportRecord::tag_json(v)))
                .collect();
            let rec = ExportRecord {
                kind: e.entry.kind(),
                value: e.entry.to_string(),
                tags,
                sources: e.assertions.iter().map(|a| a.source.as_str()).collect(),
            };
            serde_json::to_writer(&mut *out, &rec)?;
            writeln!(out)
        }
    }
}
