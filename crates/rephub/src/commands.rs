//! One function per subcommand.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use rephub_model::{
    CategoryType, Clock, Criteria, Entry, Include, Kind, LineError, Query, SystemClock,
    TagCriterion,
};
use rephub_store::{AnyStore, OpenOptions, ReputationStore, StoreError, WriteMode, WriteTx};

use crate::Status;
use crate::args::{
    Args, CategoriesCommand, Command, CriteriaArgs, DeleteArgs, ExportArgs, FormatArg, ImportArgs,
    KeysCommand, KindArg, LogFormatArg, QueryArgs, SearchArgs, new_category,
};
use crate::files::{detect_format, export_to, open_input};
use crate::output::write_entry;
use crate::progress;
use rephub_store::import::{ImportOptions, InputFormat, import_reader};

/// Bad lines shown on the terminal; `--rejects FILE` keeps them all.
const SHOWN_REJECTS: u64 = 100;

pub(crate) fn run(args: Args) -> anyhow::Result<Status> {
    // The agent talks to a hub with a device token, not an API key.
    if let Command::Agent(a) = &args.command {
        return agent(a, args.hub.clone(), args.insecure);
    }
    match &args.command {
        Command::SandboxFetch {
            timeout_ms,
            max_bytes,
            max_redirects,
            out,
            url,
        } => {
            let limits = rephub_sandbox::Limits {
                timeout: std::time::Duration::from_millis(*timeout_ms),
                max_bytes: *max_bytes,
                max_redirects: *max_redirects,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the fetch's runtime")?;
            let report = rt
                .block_on(rephub_sandbox::fetch(url, &limits, out))
                .with_context(|| format!("writing {}", out.display()))?;
            serde_json::to_writer(std::io::stdout().lock(), &report)
                .context("writing the report")?;
            return Ok(Status::Ok);
        }
        Command::Completions { shell } => {
            let mut cmd = <Args as clap::CommandFactory>::command();
            // Into memory first: the generator panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "rephub", &mut script);
            std::io::stdout()
                .write_all(&script)
                .context("writing the completion script")?;
            return Ok(Status::Ok);
        }
        Command::Man { dir } => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(<Args as clap::CommandFactory>::command(), dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))?;
            return Ok(Status::Ok);
        }
        Command::Migrate { to } => return migrate(&args, to),
        _ => {}
    }
    if let Some((cmd, out)) = admin_command(&args.command) {
        let hub = args.hub.as_deref().unwrap_or(LOCAL_HUB);
        let remote = crate::remote::Remote::new(hub, &api_key(&args)?, args.insecure)?;
        return crate::admin::run(&remote, cmd, out);
    }
    if let Some(hub) = &args.hub {
        let remote = crate::remote::Remote::new(hub, &api_key(&args)?, args.insecure)?;
        return crate::remote::run(&remote, args.command, args.quiet);
    }
    if let Command::Serve {
        config,
        listen,
        tls_listen,
        clock_offset_secs,
        log_format,
    } = &args.command
    {
        return serve(
            config.as_deref(),
            (*listen, *tls_listen),
            (*clock_offset_secs, *log_format),
            args.data_dir.clone(),
            args.db.clone(),
            args.cache_mib,
        );
    }
    let at = args.db_location();
    let opts = OpenOptions {
        cache_mib: args.cache_mib,
        ..OpenOptions::default()
    };
    let mut store = AnyStore::open_with(&at, opts)
        .with_context(|| format!("opening the reputation database {at}"))?;
    let quiet = args.quiet;
    match args.command {
        Command::Import(a) => import(&mut store, a, quiet),
        Command::Query(a) => {
            sweep(&mut store, quiet)?;
            query(&store, a)
        }
        Command::Search(a) => {
            sweep(&mut store, quiet)?;
            search(&store, a, quiet)
        }
        Command::Export(a) => {
            sweep(&mut store, quiet)?;
            export(&store, a, quiet)
        }
        Command::Delete(a) => delete(&mut store, a, quiet),
        Command::Stats => {
            sweep(&mut store, quiet)?;
            stats(&store)
        }
        Command::Categories(c) => categories(&mut store, c),
        Command::Keys(k) => keys(&mut store, k),
        Command::Users(u) => users(&mut store, u),
        Command::Serve { .. }
        | Command::SandboxFetch { .. }
        | Command::Agent(_)
        | Command::Filters { .. }
        | Command::Profiles { .. }
        | Command::Devices { .. }
        | Command::Distributions { .. }
        | Command::Sources { .. }
        | Command::Targets { .. }
        | Command::Events { .. }
        | Command::Telemetry { .. }
        | Command::Status { .. }
        | Command::Completions { .. }
        | Command::Migrate { .. }
        | Command::Man { .. } => {
            unreachable!("handled before the database is opened")
        }
        Command::Connect { .. }
        | Command::Disconnect
        | Command::Connection { .. }
        | Command::Sharing(_) => {
            anyhow::bail!(
                "connect, disconnect, connection and sharing talk to a running hub: give --hub and --key"
            )
        }
        Command::Sweep => {
            let n = store.sweep_expired(SystemClock.now())?;
            println!("removed {n} expired assertions");
            Ok(Status::Ok)
        }
        Command::Compact { keep } => {
            let last = store.stats()?.last_seq;
            let n = store.compact(last.saturating_sub(keep))?;
            println!("dropped {n} change-log records");
            Ok(Status::Ok)
        }
    }
}

/// `rephub migrate --to postgres://…`: the SQLite database into a new PostgreSQL database.
fn migrate(args: &Args, to: &str) -> anyhow::Result<Status> {
    use rephub_store::Location;
    let Location::Sqlite(path) = args.db_location() else {
        bail!(
            "migrate copies a SQLite database (--db FILE or --data-dir) into PostgreSQL; --db names PostgreSQL already"
        );
    };
    let target = Location::parse(to);
    let Location::Postgres(conninfo) = &target else {
        bail!(
            "--to must be a PostgreSQL connection string (postgres://user@host/db or host=… dbname=…)"
        );
    };
    if !args.quiet {
        eprintln!("copying {} into {target}", path.display());
    }
    let quiet = args.quiet;
    let report = rephub_store::migrate_sqlite_to_postgres(&path, conninfo, &mut |table, rows| {
        if !quiet {
            eprintln!("  {table}: {rows} rows");
        }
    })
    .with_context(|| format!("copying {} into {target}", path.display()))?;
    let rows: u64 = report.tables.iter().map(|(_, n)| n).sum();
    println!(
        "copied {} tables, {rows} rows, into {target}",
        report.tables.len()
    );
    if !quiet {
        // Stored credentials (targets, sources) are encrypted with the data directory's key: the
        // replicas need that same key.
        let key = args
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("rephub-data"))
            .join("secret.key");
        eprintln!(
            "start every replica with --db (or REPHUB_DB) set to that database and \
             REPHUB_SECRET_KEY_FILE={} (the key the stored credentials are encrypted with; \
             copy it to each replica's machine). Sharing spools stay in each data directory.",
            key.display()
        );
    }
    Ok(Status::Ok)
}

/// Reads see the database as the TTL sweeper leaves it: expired entries are gone, not shown. A read
/// never waits for a writer (a long import in another process): then the sweep is left for later.
fn sweep(store: &mut AnyStore, quiet: bool) -> anyhow::Result<()> {
    store.set_busy_timeout(Duration::from_millis(200))?;
    let swept = store.sweep_expired(SystemClock.now());
    store.set_busy_timeout(Duration::from_secs(30))?;
    match swept {
        Ok(n) if n > 0 && !quiet => eprintln!("removed {n} expired assertions"),
        Ok(_) => {}
        Err(StoreError::Busy) => {
            if !quiet {
                eprintln!("another writer is busy; expired entries are swept later");
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn import(store: &mut AnyStore, a: ImportArgs, quiet: bool) -> anyhow::Result<Status> {
    // Into an empty database, each page written once (see `SqliteStore::begin_bulk_load`).
    let (status, back) = store
        .bulk_load(|store| import_files(store, a, quiet))
        .context("switching the journal for a bulk load")?;
    if let Some(e) = back {
        // What was imported is committed; the next opening of the database switches it back.
        eprintln!(
            "warning: the database stays in rollback-journal mode until it is next opened: {e}"
        );
    }
    status
}

fn import_files(store: &mut AnyStore, a: ImportArgs, quiet: bool) -> anyhow::Result<Status> {
    let mut rejects_file = match &a.rejects {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let mut status = Status::Ok;
    for path in &a.files {
        let (mut input, len) = open_input(path)?;
        let format = detect_format(a.format, path, &mut input);
        let opts = ImportOptions {
            kind: a.kind.kind(),
            format,
            strict: a.strict,
            source: a.source.clone(),
            min_prefix: (!a.force).then(rephub_model::MinPrefix::default),
            mode: if a.replace {
                WriteMode::Replace
            } else {
                WriteMode::Merge
            },
        };
        let bar = progress::bytes(len.unwrap_or(0), quiet || len.is_none());
        let name = path.display().to_string();
        let started = std::time::Instant::now();
        let mut shown = 0u64;
        let mut write_err: Option<std::io::Error> = None;
        let mut on_reject = |e: &LineError| {
            if let Some(w) = rejects_file.as_mut() {
                if let Err(err) = writeln!(w, "{name}:{}: {}", e.line, e.reason) {
                    write_err.get_or_insert(err);
                }
            }
            if shown < SHOWN_REJECTS {
                bar.suspend(|| eprintln!("{name}:{}: {}", e.line, e.reason));
            } else if shown == SHOWN_REJECTS {
                bar.suspend(|| {
                    eprintln!("{name}: more rejected lines not shown (use --rejects FILE)")
                });
            }
            shown += 1;
        };
        let summary = import_reader(
            store,
            input,
            &opts,
            &|pos| bar.set_position(pos),
            &mut on_reject,
        )
        .with_context(|| format!("importing {name}"))?;
        bar.finish_and_clear();
        if let Some(e) = write_err {
            return Err(e).context("writing the rejects file");
        }
        let secs = started.elapsed().as_secs_f64();
        if !summary.committed {
            eprintln!(
                "{name}: {} rejected line(s); nothing imported (--strict)",
                summary.rejected
            );
            return Ok(Status::Failed);
        }
        if !quiet {
            eprintln!(
                "{name}: {} accepted ({} added, {} merged, {} unchanged), {} rejected, {} empty value(s) dropped; cursor {}; {:.2} s ({:.0} entries/s)",
                summary.accepted,
                summary.added,
                summary.updated,
                summary.unchanged,
                summary.rejected,
                summary.dropped_pairs,
                summary.last_seq,
                secs,
                summary.accepted as f64 / secs.max(1e-9)
            );
        }
        if summary.rejected > 0 {
            status = Status::Partial;
        }
    }
    if let Some(mut w) = rejects_file {
        w.flush().context("writing the rejects file")?;
    }
    Ok(status)
}

fn parse_value(kind: KindArg, s: &str) -> Result<Entry, rephub_model::EntryError> {
    match kind.kind() {
        Some(k) => Entry::parse(k, s),
        None => Entry::parse_auto(s),
    }
}

fn query(store: &AnyStore, a: QueryArgs) -> anyhow::Result<Status> {
    let catalog = store.catalog()?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut status = Status::Ok;
    for v in &a.values {
        let entry = match parse_value(a.kind, v) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{v}: {e}");
                status = Status::Partial;
                continue;
            }
        };
        match store.get(&entry)? {
            Some(found) => write_entry(&mut out, &catalog, &found, a.format)?,
            None => {
                eprintln!("{entry}: not found");
                status = Status::Partial;
            }
        }
    }
    out.flush()?;
    Ok(status)
}

fn criteria(store: &AnyStore, c: &CriteriaArgs) -> anyhow::Result<Criteria> {
    let mut queries = Vec::new();
    if let Some(ip) = &c.ip {
        queries.push(Query::ip(ip)?);
    }
    if let Some(d) = &c.domain {
        queries.push(Query::domain(d, c.exact)?);
    }
    if let Some(u) = &c.url {
        queries.push(Query::url(u)?);
    }
    if let Some(h) = &c.hash {
        queries.push(Query::hash(h)?);
    }
    if queries.len() > 1 {
        bail!("give at most one of --ip, --domain, --url, --hash");
    }
    let catalog = store.catalog()?;
    let tags = c
        .tags
        .iter()
        .map(|t| TagCriterion::parse(&catalog, t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut kinds = Vec::new();
    for k in &c.kinds {
        match k.kind() {
            Some(k) => kinds.push(k),
            None => kinds.extend(Kind::ALL),
        }
    }
    Ok(Criteria {
        query: queries.pop(),
        kinds,
        tags,
        include: Include {
            tagged: !c.untagged_only,
            untagged: !c.tagged_only,
            user: !c.feed_only,
            feed: !c.user_only,
        },
        source: c.source.clone(),
    })
}

fn has_criteria(c: &CriteriaArgs) -> bool {
    c.ip.is_some()
        || c.domain.is_some()
        || c.url.is_some()
        || c.hash.is_some()
        || !c.kinds.is_empty()
        || !c.tags.is_empty()
        || c.source.is_some()
        || c.untagged_only
        || c.tagged_only
        || c.user_only
        || c.feed_only
}

fn search(store: &AnyStore, a: SearchArgs, quiet: bool) -> anyhow::Result<Status> {
    let crit = criteria(store, &a.criteria)?;
    let catalog = store.catalog()?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut n = 0usize;
    let mut err = None;
    store.search_each(&crit, &mut |e| {
        if let Err(x) = write_entry(&mut out, &catalog, &e, a.format) {
            err = Some(x);
            return false;
        }
        n += 1;
        a.limit == 0 || n < a.limit
    })?;
    if let Some(e) = err {
        return Err(e.into());
    }
    out.flush()?;
    if !quiet {
        let more = if a.limit != 0 && n == a.limit {
            " (limit reached; --limit 0 for all)"
        } else {
            ""
        };
        eprintln!("{n} entries{more}");
    }
    Ok(Status::Ok)
}

/// An interchange export (docs/interchange.md): one format to a file or standard output, or
/// every Suricata piece into a directory.
fn export_interchange(
    store: &AnyStore,
    a: &ExportArgs,
    format: Option<rephub_model::ExportFormat>,
    quiet: bool,
) -> anyhow::Result<Status> {
    let crit = criteria(store, &a.criteria)?;
    let catalog = store.catalog()?;
    let now = SystemClock.now();
    let pieces: Vec<(rephub_model::ExportFormat, Option<PathBuf>)> = match format {
        Some(f) => vec![(f, a.output.clone())],
        None => {
            let dir = a
                .output
                .as_ref()
                .context("-f suricata writes several files: give the directory with -o")?;
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            rephub_model::ExportFormat::SURICATA
                .iter()
                .map(|f| (*f, Some(dir.join(f.file_name()))))
                .collect()
        }
    };
    let mut total = 0u64;
    for (format, path) in pieces {
        let mut n = 0u64;
        let mut x = rephub_model::Exporter::new(format, now);
        export_to(path.as_deref(), &mut |out| {
            out.write_all(x.header().as_bytes())?;
            let mut err = None;
            store.search_each(&crit, &mut |e| {
                if let Some(piece) = x.item(&e.export_item(&catalog)) {
                    if let Err(w) = out.write_all(piece.as_bytes()) {
                        err = Some(w);
                        return false;
                    }
                    n += 1;
                }
                true
            })?;
            if let Some(e) = err {
                return Err(e.into());
            }
            out.write_all(x.footer().as_bytes())?;
            Ok(())
        })?;
        if !quiet && path.is_some() {
            eprintln!("{}: {n} entries", format.name());
        }
        total += n;
    }
    if !quiet {
        eprintln!("exported {total} entries");
    }
    Ok(Status::Ok)
}

/// `export -f nft`: the exported addresses and networks in the agent's table, dropped.
fn export_nft(store: &AnyStore, a: &ExportArgs, quiet: bool) -> anyhow::Result<Status> {
    let crit = criteria(store, &a.criteria)?;
    let mut entries = Vec::new();
    store.search_each(&crit, &mut |e| {
        entries.push((e.entry, e.expires_at));
        true
    })?;
    let n = crate::interchange::write_nft(entries, a.output.as_deref())?;
    if !quiet {
        eprintln!("exported {n} addresses and networks");
    }
    Ok(Status::Ok)
}

/// `export -f misp -o DIR`: the entries as a MISP feed directory.
fn export_misp(store: &AnyStore, a: &ExportArgs, quiet: bool) -> anyhow::Result<Status> {
    let dir = a
        .output
        .as_ref()
        .context("-f misp writes a feed directory: give it with -o")?;
    let crit = criteria(store, &a.criteria)?;
    let catalog = store.catalog()?;
    let mut feed = rephub_model::MispFeed::new();
    let mut n = 0u64;
    store.search_each(&crit, &mut |e| {
        feed.add(&e.export_item(&catalog));
        n += 1;
        true
    })?;
    let files = feed.finish();
    crate::interchange::write_misp(&files, dir)?;
    if !quiet {
        eprintln!(
            "exported {n} entries as {} MISP events into {}",
            files.events.len(),
            dir.display()
        );
    }
    Ok(Status::Ok)
}

fn export(store: &AnyStore, a: ExportArgs, quiet: bool) -> anyhow::Result<Status> {
    if a.format == crate::args::ExportFormatArg::Nft {
        return export_nft(store, &a, quiet);
    }
    if a.format == crate::args::ExportFormatArg::Misp {
        return export_misp(store, &a, quiet);
    }
    let line_format = match a.format.kind() {
        Ok(f) => f,
        Err(interchange) => return export_interchange(store, &a, interchange, quiet),
    };
    let crit = criteria(store, &a.criteria)?;
    let catalog = store.catalog()?;
    let bar = progress::count(quiet);
    let mut n = 0u64;
    let mut err = None;
    let mut write = |out: &mut dyn Write| -> anyhow::Result<()> {
        store.search_each(&crit, &mut |e| {
            if let Err(x) = write_entry(out, &catalog, &e, line_format) {
                err = Some(x);
                return false;
            }
            n += 1;
            if n % 10_000 == 0 {
                bar.set_position(n);
            }
            true
        })?;
        match err.take() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    };
    export_to(a.output.as_deref(), &mut write)?;
    bar.finish_and_clear();
    if !quiet {
        eprintln!("exported {n} entries");
    }
    Ok(Status::Ok)
}

fn delete(store: &mut AnyStore, a: DeleteArgs, quiet: bool) -> anyhow::Result<Status> {
    let by_criteria = has_criteria(&a.criteria) || a.all;
    let by_values = !a.values.is_empty() || a.file.is_some();
    if by_criteria && by_values {
        bail!("give either values (or --file) or criteria, not both");
    }
    if !by_criteria && !by_values && a.from_source.is_none() {
        bail!("nothing to delete: give values, --file, --from-source, criteria, or --all");
    }
    if by_criteria && !a.yes {
        bail!("deleting by criteria removes every matching entry; add --yes to confirm");
    }
    let mut status = Status::Ok;
    let mut entries = Vec::new();
    for v in &a.values {
        match parse_value(a.kind, v) {
            Ok(e) => entries.push(e),
            Err(e) => {
                eprintln!("{v}: {e}");
                status = Status::Partial;
            }
        }
    }
    if let Some(path) = &a.file {
        let (mut input, _) = open_input(path)?;
        let format = detect_format(FormatArg::Auto, path, &mut input);
        let sep = if a.kind == KindArg::Url { '|' } else { ',' };
        let values: Vec<Result<(u64, String), LineError>> = match format {
            InputFormat::Sms => rephub_model::SmsCsvReader::new(input, sep)
                .map(|r| r.map(|r| (r.line, r.address)))
                .collect(),
            InputFormat::Plain => rephub_model::Lines::new(input).collect(),
            InputFormat::Jsonl => rephub_model::Lines::new(input)
                .map(|l| {
                    l.and_then(|(line, text)| {
                        rephub_model::parse_json_line(&text)
                            .map(|(_, v, _)| (line, v))
                            .map_err(|reason| LineError { line, reason })
                    })
                })
                .collect(),
        };
        for v in values {
            match v.and_then(|(line, s)| {
                parse_value(a.kind, &s).map_err(|e| LineError {
                    line,
                    reason: e.to_string(),
                })
            }) {
                Ok(e) => entries.push(e),
                Err(e) => {
                    eprintln!("{}:{}: {}", path.display(), e.line, e.reason);
                    status = Status::Partial;
                }
            }
        }
    }
    let crit = if by_criteria {
        Some(criteria(store, &a.criteria)?)
    } else {
        None
    };
    // Withdrawing a source's assertions of matching entries needs the matches first.
    if let (Some(c), Some(_)) = (&crit, &a.from_source) {
        entries = store.search(c, 0)?.into_iter().map(|s| s.entry).collect();
    }
    let mut tx = store.begin()?;
    let mut removed = 0u64;
    let mut missing = 0u64;
    match (&a.from_source, &crit) {
        (Some(src), None) if !by_values => removed = tx.withdraw_source(src)?,
        // With criteria, the source's withdrawal became the list of matching entries above.
        (Some(src), _) => {
            for e in &entries {
                if tx.withdraw(src, e)? {
                    removed += 1
                } else {
                    missing += 1
                }
            }
        }
        (None, Some(c)) => removed = tx.remove_matching(c)?,
        (None, None) => {
            for e in &entries {
                if tx.remove(e)? {
                    removed += 1
                } else {
                    missing += 1
                }
            }
        }
    }
    let seq = tx.commit()?;
    if !quiet {
        let what = if a.from_source.is_some() {
            "withdrawn"
        } else {
            "deleted"
        };
        eprintln!("{removed} {what}, {missing} not found; cursor {seq}");
    }
    if missing > 0 {
        status = Status::Partial;
    }
    Ok(status)
}

fn stats(store: &AnyStore) -> anyhow::Result<Status> {
    let s = store.stats()?;
    println!("database     {}", store.location());
    println!("entries      {}", s.entries);
    for (k, n) in &s.per_kind {
        println!("  {:<10} {n}", k.as_str());
    }
    println!("sources");
    for (name, n) in &s.per_source {
        println!("  {name:<10} {n}");
    }
    println!("expiring     {}", s.expiring);
    println!("categories   {}", s.categories);
    println!(
        "cursor       {} (change log holds {}, horizon {})",
        s.last_seq, s.changes, s.horizon
    );
    println!(
        "size         {:.1} MiB ({:.0} bytes/entry)",
        s.db_bytes as f64 / 1048576.0,
        s.db_bytes as f64 / (s.entries.max(1) as f64)
    );
    Ok(Status::Ok)
}

fn categories(store: &mut AnyStore, c: CategoriesCommand) -> anyhow::Result<Status> {
    match c {
        CategoriesCommand::List { json } => {
            let catalog = store.catalog()?;
            for cat in catalog.categories() {
                if json {
                    println!("{}", serde_json::to_string(cat)?);
                    continue;
                }
                let detail = match &cat.kind {
                    CategoryType::List { values, multiple } => format!(
                        "list{} [{}]",
                        if *multiple { " (multiple)" } else { "" },
                        values.join(", ")
                    ),
                    CategoryType::Range { min, max } => format!("range {min}..{max}"),
                    other => other.name().to_string(),
                };
                let b = if cat.builtin { " (built-in)" } else { "" };
                println!("{:>3}  {}{b}: {detail}", cat.id, cat.name);
            }
            Ok(Status::Ok)
        }
        add @ CategoriesCommand::Add { .. } => {
            let cat = store.add_category(&new_category(add)?)?;
            println!(
                "added category {} ({}) with id {}",
                cat.name,
                cat.kind.name(),
                cat.id
            );
            Ok(Status::Ok)
        }
    }
}

/// Where the administration commands go without `--hub`: the hub's default listener.
const LOCAL_HUB: &str = "http://127.0.0.1:8080";

/// The API key: `--key`/`REPHUB_KEY`, or the first line of `--key-file`/`REPHUB_KEY_FILE`.
fn api_key(args: &Args) -> anyhow::Result<String> {
    if let Some(k) = &args.key {
        return Ok(k.clone());
    }
    let Some(path) = &args.key_file else {
        bail!("a hub needs an API key: --key, --key-file, REPHUB_KEY or REPHUB_KEY_FILE");
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key file {}", path.display()))?;
    let key = text.lines().next().unwrap_or("").trim().to_string();
    if key.is_empty() {
        bail!("the key file {} is empty", path.display());
    }
    Ok(key)
}

/// The administration commands (always through a hub's API), taken out of `cmd`.
fn admin_command(cmd: &Command) -> Option<(crate::admin::AdminCommand, crate::admin::Output)> {
    use crate::admin::AdminCommand as A;
    let pair = match cmd {
        Command::Filters { view, command } => (A::Filters(command.clone()), view.output),
        Command::Profiles { view, command } => (A::Profiles(command.clone()), view.output),
        Command::Devices { view, command } => (A::Devices(command.clone()), view.output),
        Command::Distributions { view, command } => {
            (A::Distributions(command.clone()), view.output)
        }
        Command::Sources { view, command } => (A::Sources(command.clone()), view.output),
        Command::Targets { view, command } => (A::Targets(command.clone()), view.output),
        Command::Events { view, args } => (A::Events(args.clone()), view.output),
        Command::Telemetry { view, args } => (A::Telemetry(args.clone()), view.output),
        Command::Status { view } => (A::Status, view.output),
        _ => return None,
    };
    Some(pair)
}

fn serve(
    config: Option<&Path>,
    (listen, tls_listen): (Option<std::net::SocketAddr>, Option<std::net::SocketAddr>),
    (clock_offset_secs, log_format): (i64, Option<LogFormatArg>),
    data_dir: Option<PathBuf>,
    db: Option<PathBuf>,
    cache_mib: u32,
) -> anyhow::Result<Status> {
    let mut cfg = rephub_hub::Config::load(config)?;
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    if db.is_some() {
        cfg.db = db;
    }
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(l) = tls_listen {
        cfg.tls_listen = l;
    }
    cfg.cache_mib = cache_mib;
    let format = log_format.unwrap_or(match cfg.log_format {
        rephub_hub::LogFormat::Text => LogFormatArg::Text,
        rephub_hub::LogFormat::Json => LogFormatArg::Json,
    });
    crate::logs::init(&cfg.log, format)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let hub = if clock_offset_secs == 0 {
            rephub_hub::start(cfg).await?
        } else {
            eprintln!(
                "warning: running {clock_offset_secs} s ahead of the system clock (--clock-offset-secs): for drills and tests only"
            );
            rephub_hub::start_with_clock(
                cfg,
                std::sync::Arc::new(rephub_model::OffsetClock(clock_offset_secs)),
            )
            .await?
        };
        if let Some(key) = &hub.initial_admin_key {
            println!(
                "created the admin API key; it is shown this once, only its hash is stored:\n  {key}"
            );
        }
        println!("rephub hub listening on http://{}", hub.addr);
        if let Some(tls) = hub.tls_addr {
            println!("rephub hub listening on https://{tls}");
        }
        hub.wait_for_signal().await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(Status::Ok)
}

fn keys(store: &mut AnyStore, k: KeysCommand) -> anyhow::Result<Status> {
    use rephub_store::KeyStore;
    match k {
        KeysCommand::Add { name, role } => {
            let role = rephub_hub::Role::parse(&role)
                .with_context(|| format!("role {role:?}: expected admin, producer or read-only"))?;
            let key = rephub_hub::new_key();
            store.add_api_key(&name, role.as_str(), &rephub_hub::hash_key(&key))?;
            println!("{key}");
            eprintln!(
                "created key {name:?} ({}); it is shown this once",
                role.as_str()
            );
        }
        KeysCommand::List => {
            for key in store.api_keys()? {
                println!(
                    "{:<20} {:<10} created {}",
                    key.name,
                    key.role,
                    rephub_model::format_utc(key.created_at)
                );
            }
        }
        KeysCommand::Delete { name } => {
            if !store.delete_api_key(&name)? {
                bail!("no key named {name:?}");
            }
            eprintln!("deleted key {name:?}");
        }
    }
    Ok(Status::Ok)
}

fn users(store: &mut AnyStore, u: crate::args::UsersCommand) -> anyhow::Result<Status> {
    use crate::args::UsersCommand as U;
    use rephub_store::UserStore;
    let role_of = |r: &str| {
        rephub_hub::Role::parse(r)
            .with_context(|| format!("role {r:?}: expected admin, producer or read-only"))
    };
    match u {
        U::Add { name, role } => {
            rephub_hub::check_user_name(&name).map_err(|e| anyhow::anyhow!("name: {e}"))?;
            let role = role_of(&role)?;
            let hash = rephub_hub::hash_password(&crate::password::read()?)
                .map_err(|e| anyhow::anyhow!("password: {e}"))?;
            store.add_user(&name, role.as_str(), &hash)?;
            eprintln!("added user {name:?} ({})", role.as_str());
        }
        U::List => {
            for u in store.users()? {
                println!(
                    "{:<20} {:<10} created {}",
                    u.name,
                    u.role,
                    rephub_model::format_utc(u.created_at)
                );
            }
        }
        U::Set {
            name,
            role,
            password,
        } => {
            let role = role.as_deref().map(role_of).transpose()?;
            let hash = if password {
                Some(
                    rephub_hub::hash_password(&crate::password::read()?)
                        .map_err(|e| anyhow::anyhow!("password: {e}"))?,
                )
            } else {
                None
            };
            if role.is_none() && hash.is_none() {
                bail!("nothing to change: give --role or --password");
            }
            if !store.update_user(&name, role.map(|r| r.as_str()), hash.as_deref())? {
                bail!("no user named {name:?}");
            }
            eprintln!(
                "changed user {name:?} (sessions of a running hub end within its next request)"
            );
        }
        U::Delete { name } => {
            if !store.delete_user(&name)? {
                bail!("no user named {name:?}");
            }
            eprintln!("deleted user {name:?}");
        }
    }
    Ok(Status::Ok)
}

fn agent(
    a: &crate::args::AgentArgs,
    hub: Option<String>,
    insecure: bool,
) -> anyhow::Result<Status> {
    let mut cfg = match &a.config {
        Some(p) => rephub_agent::AgentConfig::load(p)?,
        None => rephub_agent::AgentConfig::default(),
    };
    if let Some(h) = hub {
        cfg.hub = h;
    }
    if a.token.is_some() {
        cfg.token.clone_from(&a.token);
    }
    if a.token_file.is_some() {
        cfg.token_file.clone_from(&a.token_file);
    }
    if let Some(d) = &a.state_dir {
        cfg.data_dir.clone_from(d);
    }
    if let Some(b) = &a.backend {
        cfg.backend = match b.as_str() {
            "nftables" => rephub_agent::Backend::Nftables,
            "none" => rephub_agent::Backend::None,
            other => anyhow::bail!("--backend: {other:?} is not nftables or none"),
        };
    }
    if a.check_listen.is_some() {
        cfg.check_listen = a.check_listen;
    }
    if let Some(t) = &a.nft_table {
        cfg.nft_table.clone_from(t);
    }
    if a.name.is_some() {
        cfg.name.clone_from(&a.name);
    }
    if let Some(w) = a.wait {
        cfg.wait_secs = w;
    }
    if let Some(e) = a.events_secs {
        cfg.events_secs = e;
    }
    cfg.insecure |= insecure;
    crate::logs::init(&a.log, a.log_format)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(rephub_agent::run(cfg, async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        }
    }))?;
    Ok(Status::Ok)
}
