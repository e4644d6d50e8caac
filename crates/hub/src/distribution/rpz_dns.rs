//! RPZ zones over DNS, for resolvers that take RPZ as a secondary zone (BIND 9, Knot Resolver,
//! PowerDNS Recursor): SOA queries over UDP and TCP, AXFR (RFC 5936) and IXFR (RFC 1995) over TCP,
//! NOTIFY (RFC 1996) to the configured secondaries when a zone changes, TSIG (RFC 8945) on all of
//! it when a key is configured. docs/rpz-transfer.md says how to point BIND at it.
//!
//! - The zone of profile `P` is `P.<zone_suffix>`; its records are those of `/rpz/P.zone`
//!   (distribution/rpz.rs) under that origin, with `SOA` and `NS localhost.` at the apex. The serial
//!   is the profile's cursor (see rpz_zone.rs); IXFR answers from the zone's journal, or with the
//!   whole zone when the journal does not reach back to the secondary's serial.
//! - Who may ask: with a TSIG key, requests signed with it (a bad signature is NOTAUTH/BADSIG, an
//!   unknown key NOTAUTH/BADKEY, a time outside the fudge NOTAUTH/BADTIME, each unsigned as the
//!   RFC says); unsigned requests only from `allow_unsigned` (loopback by default when no key is
//!   set). Others get REFUSED, whether or not the zone exists.
//! - Transfers go in messages of at most `PER_MESSAGE` records, every one signed (the first with
//!   the request's MAC, the others chained on the previous MAC, timers only). A transfer's
//!   messages are built whole before the first is sent (for a 1,000,000-entry zone, ~47 MB and a
//!   few seconds of one core); streaming them is left for later.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TSIG, TsigAlgorithm, make_tsig_record};
use hickory_proto::rr::rdata::{CNAME, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigResponseContext, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use rephub_store::DistributionStore;

use crate::config::RpzDnsConfig;
use crate::distribution::rpz_zone::{Diff, Rr, Transfer, Zone};
use crate::error::HubError;
use crate::metrics::RpzTransfers;
use crate::state::AppState;

/// Records per message of a transfer (well under 64 KiB with the longest owner names).
const PER_MESSAGE: usize = 200;
const TTL: u32 = 60;
const FUDGE: u16 = 300;
/// NOTIFY: tries per secondary and change, and how long each waits for the answer.
const NOTIFY_TRIES: u32 = 5;
const NOTIFY_WAIT: Duration = Duration::from_secs(1);
/// A TCP connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(30);
/// TCP connections served at once.
const MAX_CONNECTIONS: usize = 32;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A profile's zone and its name.
struct Served {
    apex: Name,
    zone: Zone,
}

/// The DNS side of the RPZ zones.
pub(crate) struct RpzDns {
    suffix: Name,
    signer: Option<TSigner>,
    unsigned: Vec<ipnet::IpNet>,
    refresh: u32,
    zones: Mutex<HashMap<i64, Served>>,
    /// NOTIFYs waiting for their answer, by message id: the secondary it went to.
    pending: Mutex<HashMap<u16, (SocketAddr, tokio::sync::oneshot::Sender<()>)>>,
    /// Transfers served (shown on `/metrics`).
    served: Arc<RpzTransfers>,
}

impl std::fmt::Debug for RpzDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The TSIG key stays out of logs.
        f.debug_struct("RpzDns")
            .field("suffix", &self.suffix)
            .field(
                "tsig",
                &self.signer.as_ref().map(|s| s.signer_name().to_string()),
            )
            .finish_non_exhaustive()
    }
}

fn algorithm(name: &str) -> TsigAlgorithm {
    match name {
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        _ => TsigAlgorithm::HmacSha256,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    u16::from_be_bytes(b)
}

fn config_error(e: impl std::fmt::Display) -> HubError {
    HubError::Config(format!("rpz_dns: {e}"))
}

impl RpzDns {
    /// `refresh`: the SOA refresh the zones announce (seconds).
    pub(crate) fn new(cfg: &RpzDnsConfig, refresh: u32) -> Result<RpzDns, HubError> {
        use base64::Engine as _;
        let suffix = Name::from_ascii(&cfg.zone_suffix)
            .map_err(config_error)?
            .to_lowercase();
        let secret = match (&cfg.tsig_secret, &cfg.tsig_secret_file) {
            (Some(s), _) => Some(s.trim().to_string()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .map_err(HubError::file(f))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let signer = match (&cfg.tsig_name, secret) {
            (Some(name), Some(secret)) => {
                let key = base64::engine::general_purpose::STANDARD
                    .decode(secret)
                    .map_err(|e| config_error(format!("tsig secret: not base64: {e}")))?;
                let name = Name::from_ascii(name).map_err(config_error)?;
                Some(
                    TSigner::new(key, algorithm(&cfg.tsig_algorithm), name, FUDGE)
                        .map_err(config_error)?,
                )
            }
            _ => None,
        };
        let unsigned = match (&cfg.allow_unsigned, &signer) {
            (Some(list), _) => list.clone(),
            (None, Some(_)) => Vec::new(),
            (None, None) => vec![
                "127.0.0.0/8".parse().map_err(config_error)?,
                "::1/128".parse().map_err(config_error)?,
            ],
        };
        Ok(RpzDns {
            suffix,
            signer,
            unsigned,
            refresh,
            zones: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            served: Arc::default(),
        })
    }

    fn serial_of(&self, apex: &Name) -> Option<u32> {
        lock(&self.zones)
            .values()
            .find(|s| &s.apex == apex)
            .map(|s| s.zone.serial)
    }

    /// Bring every profile's zone up to its filter set. Returns the zones whose serial moved:
    /// `(apex, serial)`.
    async fn refresh(&self, state: &AppState) -> Result<Vec<(Name, u32)>, HubError> {
        let profiles = state.read(|s| s.profiles()).await??;
        let engine = state.engine();
        let mut moved = Vec::new();
        let mut keep = Vec::new();
        for p in profiles {
            keep.push(p.id);
            let Ok(label) = Name::from_ascii(&p.name) else {
                tracing::warn!(profile = %p.name, "profile name is not a DNS name: no RPZ zone over DNS");
                continue;
            };
            let Ok(apex) = label.append_domain(&self.suffix) else {
                tracing::warn!(profile = %p.name, "zone name too long: no RPZ zone over DNS");
                continue;
            };
            let apex = apex.to_lowercase();
            // A zone is served from its first complete build on: before it, a secondary would
            // take an empty zone.
            let (cursor, fresh) = {
                let mut zones = lock(&self.zones);
                match zones.get_mut(&p.id) {
                    Some(served) => {
                        served.apex = apex.clone();
                        (served.zone.cursor, false)
                    }
                    None => (0, true),
                }
            };
            let last = engine.last_change(p.id).unwrap_or(0);
            if !fresh && last <= cursor {
                continue;
            }
            let e = engine.clone();
            let id = p.id;
            let from = (!fresh).then_some(cursor);
            let answer = tokio::task::spawn_blocking(move || e.answer(id, from)).await??;
            if fresh && answer.is_none() {
                // The profile is not in the filter sets yet (just made): next time.
                continue;
            }
            let mut zones = lock(&self.zones);
            let served = zones.entry(p.id).or_insert_with(|| Served {
                apex: apex.clone(),
                zone: Zone::default(),
            });
            match answer {
                Some(a) => {
                    if served.zone.apply(a, last).is_some() {
                        moved.push((served.apex.clone(), served.zone.serial));
                    }
                }
                None => served.zone.cursor = served.zone.cursor.max(last),
            }
        }
        lock(&self.zones).retain(|id, _| keep.contains(id));
        Ok(moved)
    }

    fn soa(&self, apex: &Name, serial: u32) -> Record {
        let host = Name::from_ascii("localhost.").unwrap_or_else(|_| Name::root());
        let mail = Name::from_ascii("hostmaster.localhost.").unwrap_or_else(|_| Name::root());
        let refresh = i32::try_from(self.refresh).unwrap_or(i32::MAX);
        Record::from_rdata(
            apex.clone(),
            TTL,
            RData::SOA(SOA::new(
                host,
                mail,
                serial,
                refresh,
                (refresh / 2).max(1),
                604_800,
                30,
            )),
        )
    }

    fn ns(apex: &Name) -> Record {
        let host = Name::from_ascii("localhost.").unwrap_or_else(|_| Name::root());
        Record::from_rdata(apex.clone(), TTL, RData::NS(NS(host)))
    }

    fn rr(apex: &Name, (owner, target): &Rr) -> Option<Record> {
        let name = Name::from_ascii(owner).ok()?.append_domain(apex).ok()?;
        let target = Name::from_ascii(target).ok()?;
        Some(Record::from_rdata(name, TTL, RData::CNAME(CNAME(target))))
    }

    /// The records of an answer to a query for `qtype` at `apex`, or `None` when the zone is not
    /// served here. For transfers, the records in order.
    fn answer_records(
        &self,
        apex: &Name,
        qtype: RecordType,
        client_serial: Option<u32>,
        tcp: bool,
    ) -> Option<Vec<Record>> {
        let zones = lock(&self.zones);
        let served = zones.values().find(|s| &s.apex == apex)?;
        let z = &served.zone;
        let soa = self.soa(apex, z.serial);
        let whole = |out: &mut Vec<Record>| {
            out.push(soa.clone());
            out.push(Self::ns(apex));
            out.extend(z.records().filter_map(|r| Self::rr(apex, &r)));
            out.push(soa.clone());
        };
        let mut out = Vec::new();
        match qtype {
            RecordType::SOA => out.push(soa.clone()),
            RecordType::NS => out.push(Self::ns(apex)),
            RecordType::AXFR if tcp => {
                whole(&mut out);
                self.served.whole.fetch_add(1, Ordering::Relaxed);
            }
            // Over UDP an IXFR gets the current SOA: the secondary then asks over TCP.
            RecordType::IXFR if !tcp => out.push(soa.clone()),
            RecordType::IXFR => match client_serial.map(|s| z.transfer(s)) {
                Some(Transfer::Current) => out.push(soa.clone()),
                Some(Transfer::Incremental(diffs)) => {
                    out.push(soa.clone());
                    for d in diffs {
                        incremental(&mut out, d, apex, |s| self.soa(apex, s));
                    }
                    out.push(soa.clone());
                    self.served.incremental.fetch_add(1, Ordering::Relaxed);
                }
                Some(Transfer::Whole) | None => {
                    whole(&mut out);
                    self.served.whole.fetch_add(1, Ordering::Relaxed);
                }
            },
            _ => {}
        }
        Some(out)
    }

    /// Whether an unsigned request from `peer` may be answered.
    fn unsigned_ok(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.unsigned.iter().any(|n| n.contains(&peer))
    }

    /// Answer one request: the messages to send back (several for a transfer).
    pub(crate) fn handle(&self, bytes: &[u8], peer: SocketAddr, tcp: bool) -> Vec<Vec<u8>> {
        let req = match Message::from_vec(bytes) {
            Ok(m) => m,
            Err(_) => {
                // FORMERR, if there is an id to answer to.
                if bytes.len() < 12 {
                    return Vec::new();
                }
                let id = u16::from_be_bytes([bytes[0], bytes[1]]);
                return encode(&Message::error_msg(
                    id,
                    OpCode::Query,
                    ResponseCode::FormErr,
                ))
                .into_iter()
                .collect();
            }
        };
        if req.metadata.message_type == MessageType::Response {
            // The answer to one of our NOTIFYs.
            // Only from the secondary it went to: anyone else guessing the id could otherwise
            // stop the retries.
            if req.metadata.op_code == OpCode::Notify {
                let mut pending = lock(&self.pending);
                if pending
                    .get(&req.metadata.id)
                    .is_some_and(|(target, _)| target.ip() == peer.ip())
                {
                    if let Some((_, tx)) = pending.remove(&req.metadata.id) {
                        let _ = tx.send(());
                    }
                }
            }
            return Vec::new();
        }
        let id = req.metadata.id;
        let op = req.metadata.op_code;
        // TSIG first: nothing is said to a request that fails it.
        let mut request_mac = None;
        if let Some(sig) = &req.signature {
            let Some(signer) = &self.signer else {
                return self.unsigned_error(
                    id,
                    op,
                    TSigResponseContext::unknown_key(id, now(), sig.name.clone()),
                );
            };
            if sig.name != *signer.signer_name() || sig.data.algorithm != *signer.algorithm() {
                return self.unsigned_error(
                    id,
                    op,
                    TSigResponseContext::unknown_key(id, now(), sig.name.clone()),
                );
            }
            match signer.verify_message_byte(bytes, None, true) {
                Ok((mac, _, window)) => {
                    if !window.contains(&now()) {
                        let ctx = TSigResponseContext::new(
                            id,
                            now(),
                            signer.clone(),
                            mac,
                            Some(hickory_proto::rr::rdata::tsig::TsigError::BadTime),
                        );
                        let mut m = Message::error_msg(id, op, ResponseCode::NotAuth);
                        return sign_one(&mut m, ctx).into_iter().collect();
                    }
                    request_mac = Some(mac);
                }
                Err(_) => {
                    return self.unsigned_error(
                        id,
                        op,
                        TSigResponseContext::bad_signature(id, now(), signer.clone()),
                    );
                }
            }
        } else if !self.unsigned_ok(peer.ip()) {
            return encode(&Message::error_msg(id, op, ResponseCode::Refused))
                .into_iter()
                .collect();
        }
        let mut head = Message::response(id, op);
        head.metadata.authoritative = true;
        head.add_queries(req.queries.iter().cloned());
        let question = match (op, req.queries.as_slice()) {
            (OpCode::Query, [q]) if q.query_class() == DNSClass::IN => q.clone(),
            (OpCode::Query, _) => {
                head.metadata.response_code = ResponseCode::FormErr;
                head.metadata.authoritative = false;
                return self.sign_all(vec![head], id, request_mac);
            }
            _ => {
                head.metadata.response_code = ResponseCode::NotImp;
                head.metadata.authoritative = false;
                return self.sign_all(vec![head], id, request_mac);
            }
        };
        let apex = question.name().to_lowercase();
        let client_serial = req.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(s) => Some(s.serial),
            _ => None,
        });
        let Some(records) = self.answer_records(&apex, question.query_type(), client_serial, tcp)
        else {
            head.metadata.response_code = ResponseCode::Refused;
            head.metadata.authoritative = false;
            return self.sign_all(vec![head], id, request_mac);
        };
        let mut messages = Vec::new();
        let mut chunks = records.chunks(PER_MESSAGE).peekable();
        if chunks.peek().is_none() {
            messages.push(head);
        }
        for (i, chunk) in chunks.enumerate() {
            let mut m = Message::response(id, op);
            m.metadata.authoritative = true;
            if i == 0 {
                m.add_queries(req.queries.iter().cloned());
            }
            m.add_answers(chunk.iter().cloned());
            messages.push(m);
        }
        self.sign_all(messages, id, request_mac)
    }

    fn unsigned_error(&self, id: u16, op: OpCode, ctx: TSigResponseContext) -> Vec<Vec<u8>> {
        let mut m = Message::error_msg(id, op, ResponseCode::NotAuth);
        sign_one(&mut m, ctx).into_iter().collect()
    }

    /// Encode the messages of an answer, signed when the request was.
    fn sign_all(
        &self,
        messages: Vec<Message>,
        id: u16,
        request_mac: Option<Vec<u8>>,
    ) -> Vec<Vec<u8>> {
        let (Some(signer), Some(mut prev)) = (&self.signer, request_mac) else {
            return messages.iter().filter_map(encode).collect();
        };
        let time = now();
        let mut out = Vec::with_capacity(messages.len());
        for (i, mut m) in messages.into_iter().enumerate() {
            let Some(bytes) = encode(&m) else { break };
            let record = if i == 0 {
                TSigResponseContext::new(id, time, signer.clone(), prev.clone(), None).sign(&bytes)
            } else {
                // RFC 8945 5.3.1: the previous MAC, the message, and the timers only.
                let mut tbs = Vec::with_capacity(prev.len() + bytes.len() + 10);
                tbs.extend_from_slice(&(prev.len() as u16).to_be_bytes());
                tbs.extend_from_slice(&prev);
                tbs.extend_from_slice(&bytes);
                tbs.extend_from_slice(&((time >> 32) as u16).to_be_bytes());
                tbs.extend_from_slice(&(time as u32).to_be_bytes());
                tbs.extend_from_slice(&FUDGE.to_be_bytes());
                signer
                    .sign(&tbs)
                    .map(|mac| {
                        Box::new(make_tsig_record(
                            signer.signer_name().clone(),
                            TSIG::new(
                                signer.algorithm().clone(),
                                time,
                                FUDGE,
                                mac,
                                id,
                                None,
                                Vec::new(),
                            ),
                        ))
                    })
                    .map_err(|e| hickory_proto::ProtoError::from(e.to_string()))
            };
            let Ok(record) = record else {
                tracing::error!("signing a DNS answer failed");
                break;
            };
            prev = record.data.mac.clone();
            m.set_signature(record);
            match encode(&m) {
                Some(b) => out.push(b),
                None => break,
            }
        }
        out
    }

    /// NOTIFY every secondary of a zone (in the background; retried, bounded).
    fn notify(
        self: &Arc<Self>,
        socket: &Arc<UdpSocket>,
        targets: &[SocketAddr],
        apex: Name,
        serial: u32,
    ) {
        for target in targets.iter().copied() {
            let (me, socket, apex) = (self.clone(), socket.clone(), apex.clone());
            tokio::spawn(async move {
                for attempt in 1..=NOTIFY_TRIES {
                    // A newer serial has its own NOTIFY: stop repeating this one.
                    if me.serial_of(&apex) != Some(serial) {
                        return;
                    }
                    let mut m = Message::new(random_id(), MessageType::Query, OpCode::Notify);
                    m.metadata.authoritative = true;
                    m.add_query(Query::query(apex.clone(), RecordType::SOA));
                    m.add_answer(me.soa(&apex, serial));
                    if let Some(signer) = &me.signer {
                        if m.finalize(signer, now()).is_err() {
                            tracing::error!("signing a NOTIFY failed");
                            return;
                        }
                    }
                    let Some(bytes) = encode(&m) else { return };
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    lock(&me.pending).insert(m.metadata.id, (target, tx));
                    if let Err(e) = socket.send_to(&bytes, target).await {
                        tracing::warn!(%target, error = %e, "sending NOTIFY failed");
                    }
                    let answered = tokio::time::timeout(NOTIFY_WAIT * attempt, rx).await;
                    lock(&me.pending).remove(&m.metadata.id);
                    if matches!(answered, Ok(Ok(()))) {
                        tracing::debug!(%target, zone = %apex, serial, "NOTIFY acknowledged");
                        return;
                    }
                }
                tracing::warn!(%target, zone = %apex, serial, "NOTIFY not acknowledged; the secondary will find the change at its next refresh");
            });
        }
    }
}

/// IXFR's difference sequence: the old SOA, what goes, the new SOA, what comes.
fn incremental(out: &mut Vec<Record>, d: &Diff, apex: &Name, soa: impl Fn(u32) -> Record) {
    out.push(soa(d.from));
    out.extend(d.deleted.iter().filter_map(|r| RpzDns::rr(apex, r)));
    out.push(soa(d.to));
    out.extend(d.added.iter().filter_map(|r| RpzDns::rr(apex, r)));
}

fn encode(m: &Message) -> Option<Vec<u8>> {
    match m.to_vec() {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!(error = %e, "encoding a DNS answer failed");
            None
        }
    }
}

fn sign_one(m: &mut Message, ctx: TSigResponseContext) -> Option<Vec<u8>> {
    let bytes = encode(m)?;
    match ctx.sign(&bytes) {
        Ok(record) => {
            m.set_signature(record);
            encode(m)
        }
        Err(_) => Some(bytes),
    }
}

/// Bind the DNS listeners (TCP and UDP on one port) and serve; NOTIFY secondaries as zones
/// change. Returns the bound address.
pub(crate) async fn start(
    state: &AppState,
    cfg: &RpzDnsConfig,
    listen: SocketAddr,
) -> Result<(SocketAddr, Vec<tokio::task::JoinHandle<()>>), HubError> {
    let dns = Arc::new(RpzDns::new(cfg, state.config().rpz_refresh_secs)?);
    let tcp = TcpListener::bind(listen)
        .await
        .map_err(|e| HubError::Bind(listen.to_string(), e))?;
    let addr = tcp
        .local_addr()
        .map_err(|e| HubError::Bind(listen.to_string(), e))?;
    let udp = Arc::new(
        UdpSocket::bind(addr)
            .await
            .map_err(|e| HubError::Bind(addr.to_string(), e))?,
    );
    dns.refresh(state).await?;
    let _ = state.metrics().rpz.set(dns.served.clone());
    let mut tasks = Vec::new();
    {
        let dns = dns.clone();
        // Secondaries are few: a bounded number of connections at once, the others wait in the
        // listen queue.
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "DNS accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let dns = dns.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_tcp(&dns, stream, peer).await {
                        tracing::debug!(%peer, error = %e, "DNS connection ended");
                    }
                    drop(slot);
                });
            }
        }));
    }
    {
        let (dns, udp) = (dns.clone(), udp.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, peer) = match udp.recv_from(&mut buf).await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(error = %e, "DNS receive failed");
                        continue;
                    }
                };
                for answer in dns.handle(&buf[..n], peer, false) {
                    let _ = udp.send_to(&answer, peer).await;
                }
            }
        }));
    }
    {
        let targets = cfg.notify.clone();
        let state = state.clone();
        let mut changes = state.engine().subscribe();
        tasks.push(tokio::spawn(async move {
            loop {
                // Every change of the filter sets, and a tick for profiles made or renamed.
                let _ = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
                match dns.refresh(&state).await {
                    Ok(moved) => {
                        for (apex, serial) in moved {
                            dns.notify(&udp, &targets, apex, serial);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "refreshing the RPZ zones failed"),
                }
            }
        }));
    }
    tracing::info!(%addr, "RPZ zones served over DNS (AXFR, IXFR, NOTIFY)");
    Ok((addr, tasks))
}

async fn serve_tcp(
    dns: &Arc<RpzDns>,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(IDLE, stream.read_exact(&mut msg))
            .await
            .map_err(|_| std::io::Error::other("request not sent in time"))??;
        // A transfer is seconds of work for a large zone: not on the async workers.
        let d = dns.clone();
        let answers = tokio::task::spawn_blocking(move || d.handle(&msg, peer, true))
            .await
            .map_err(std::io::Error::other)?;
        for answer in answers {
            let Ok(n) = u16::try_from(answer.len()) else {
                return Err(std::io::Error::other("answer over 64 KiB"));
            };
            stream.write_all(&n.to_be_bytes()).await?;
            stream.write_all(&answer).await?;
        }
        stream.flush().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::engine::{Selected, SyncAnswer};
    use proptest::prelude::*;
    use rephub_model::{ActionSet, Decision, Entry};

    const SECRET: &str = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    /// A server with one zone `perimeter.rpz.rephub.` of 452 entries (a transfer of three
    /// messages).
    fn server(tsig: bool) -> RpzDns {
        let mut cfg = RpzDnsConfig::default();
        if tsig {
            cfg.tsig_name = Some("k".into());
            cfg.tsig_secret = Some(SECRET.into());
        }
        let dns = RpzDns::new(&cfg, 60).unwrap_or_else(|e| unreachable!("{e}"));
        let mut zone = Zone::default();
        let sel = |id, v: &str| Selected {
            id,
            entry: Entry::parse_auto(v).unwrap_or_else(|_| unreachable!()),
            decision: Decision {
                filter: 1,
                action: ActionSet::Block,
            },
            expires: None,
        };
        zone.apply(
            SyncAnswer::Snapshot {
                cursor: 7,
                items: [sel(1, "evil.example"), sel(2, "198.51.100.7")]
                    .into_iter()
                    .chain((0..450).map(|i| sel(10 + i, &format!("10.0.{}.{}", i / 200, i % 200))))
                    .collect(),
            },
            7,
        );
        let apex = Name::from_ascii("perimeter.rpz.rephub.").unwrap_or_else(|_| unreachable!());
        lock(&dns.zones).insert(1, Served { apex, zone });
        dns
    }

    fn query(qtype: RecordType) -> Message {
        let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("perimeter.rpz.rephub.").unwrap_or_else(|_| unreachable!()),
            qtype,
        ));
        m
    }

    fn answers(out: &[Vec<u8>]) -> Vec<Message> {
        out.iter()
            .map(|b| Message::from_vec(b).unwrap_or_else(|e| unreachable!("{e}")))
            .collect()
    }

    const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5353);
    const REMOTE: SocketAddr =
        SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9)), 5353);

    #[test]
    fn axfr_soa_and_who_may_ask() {
        let dns = server(false);
        let q = query(RecordType::AXFR).to_vec().unwrap_or_default();
        let out = answers(&dns.handle(&q, LOCAL, true));
        let records: Vec<&Record> = out.iter().flat_map(|m| &m.answers).collect();
        // SOA, NS, evil.example, *.evil.example, 451 IP triggers, SOA; in messages of 200.
        assert_eq!(records.len(), 456);
        assert_eq!(out.len(), 3);
        assert_eq!(records[0].record_type(), RecordType::SOA);
        assert_eq!(records[455].record_type(), RecordType::SOA);
        // Not over UDP; not from elsewhere unsigned; not for another zone.
        assert!(answers(&dns.handle(&q, LOCAL, false))[0].answers.is_empty());
        let far = answers(&dns.handle(&q, REMOTE, true));
        assert_eq!(far[0].metadata.response_code, ResponseCode::Refused);
        let mut other = Message::new(1, MessageType::Query, OpCode::Query);
        other.add_query(Query::query(
            Name::from_ascii("other.rpz.rephub.").unwrap_or_else(|_| unreachable!()),
            RecordType::SOA,
        ));
        let out = answers(&dns.handle(&other.to_vec().unwrap_or_default(), LOCAL, false));
        assert_eq!(out[0].metadata.response_code, ResponseCode::Refused);
        // IXFR from the current serial: one SOA.
        let mut ixfr = query(RecordType::IXFR);
        ixfr.add_authority(dns.soa(
            &Name::from_ascii("perimeter.rpz.rephub.").unwrap_or_else(|_| unreachable!()),
            7,
        ));
        let out = answers(&dns.handle(&ixfr.to_vec().unwrap_or_default(), LOCAL, true));
        assert_eq!(out[0].answers.len(), 1);
    }

    #[test]
    fn with_a_key_only_signed_requests_are_answered_and_answers_are_signed() {
        use base64::Engine as _;
        let dns = server(true);
        let q = query(RecordType::AXFR);
        // Unsigned, even from loopback: refused.
        let out = answers(&dns.handle(&q.to_vec().unwrap_or_default(), LOCAL, true));
        assert_eq!(out[0].metadata.response_code, ResponseCode::Refused);
        // Signed with the key: answered, every message signed, verifiable as a chain.
        let key = base64::engine::general_purpose::STANDARD
            .decode(SECRET)
            .unwrap_or_default();
        let name = Name::from_ascii("k").unwrap_or_else(|_| unreachable!());
        let signer = TSigner::new(key, TsigAlgorithm::HmacSha256, name, FUDGE)
            .unwrap_or_else(|_| unreachable!());
        let mut signed = q.clone();
        let verifier = signed
            .finalize(&signer, now())
            .unwrap_or_else(|e| unreachable!("{e}"));
        let out = dns.handle(&signed.to_vec().unwrap_or_default(), REMOTE, true);
        assert_eq!(out.len(), 3);
        let mut verifier = verifier.unwrap_or_else(|| unreachable!());
        for b in &out {
            verifier
                .verify(b)
                .unwrap_or_else(|e| unreachable!("answer does not verify: {e}"));
        }
        // Signed with another key: NOTAUTH.
        let other = TSigner::new(
            vec![7; 32],
            TsigAlgorithm::HmacSha256,
            Name::from_ascii("k").unwrap_or_else(|_| unreachable!()),
            FUDGE,
        )
        .unwrap_or_else(|_| unreachable!());
        let mut forged = q;
        let _ = forged.finalize(&other, now());
        let out = answers(&dns.handle(&forged.to_vec().unwrap_or_default(), REMOTE, true));
        assert_eq!(out[0].metadata.response_code, ResponseCode::NotAuth);
        assert!(out[0].answers.is_empty());
    }

    proptest! {
        /// Whatever arrives — bytes, or a valid request cut or flipped — the server answers or
        /// stays silent; it never panics.
        #[test]
        fn requests_never_panic(
            noise in proptest::collection::vec(any::<u8>(), 0..600),
            cut in 0usize..200,
            flip in 0usize..200,
            tsig in any::<bool>(),
        ) {
            let dns = server(tsig);
            let _ = dns.handle(&noise, LOCAL, true);
            let _ = dns.handle(&noise, REMOTE, false);
            let mut q = query(RecordType::IXFR).to_vec().unwrap_or_default();
            let at = flip % q.len().max(1);
            if let Some(b) = q.get_mut(at) {
                *b ^= 0x5a;
            }
            q.truncate(cut.max(1));
            let _ = dns.handle(&q, LOCAL, true);
        }
    }
}
