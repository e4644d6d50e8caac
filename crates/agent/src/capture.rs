//! The agent's own TLS capture, for hosts without Suricata (docs/telemetry.md, "Without
//! Suricata"): frames read from an AF_PACKET socket on one interface (through `socket2`'s safe
//! API), each cut into Ethernet / IP / TCP by `etherparse`; a TCP payload that starts a TLS
//! handshake record is read as a ClientHello ([`crate::hello`]), and the server's flight of that
//! flow (its segments collected, [`Flows`]) completes the record with version, cipher, JA3S and
//! the certificate. [`Capturer`] is the loop the agent runs in a thread of its own.

use std::io::Read;
use std::net::IpAddr;
use std::time::Duration;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use rephub_model::telemetry::TlsRecord;
use socket2::{Domain, Protocol, SockFilter, Socket, Type};

/// ETH_P_ALL, in network order as AF_PACKET wants the protocol.
const ETH_P_ALL: u16 = 0x0003;

/// A raw socket on one interface.
#[derive(Debug)]
pub struct Capture {
    socket: Socket,
    buf: Vec<u8>,
    interface: String,
    /// The interface's index the filter keeps, and whether it keeps data segments only.
    index: u32,
    data_only: bool,
}

impl Capture {
    /// The TCP segments with a payload of `interface` (root or CAP_NET_RAW), each read waiting
    /// at most `timeout`.
    ///
    /// A packet socket sees every interface of its network namespace: SO_BINDTODEVICE does not
    /// narrow what it receives (only `bind` with a link-layer address does, which socket2 cannot
    /// build safely). So a classic BPF program, run by the kernel before a frame is queued, keeps
    /// the frames of this interface's index alone, and of those only TCP segments that carry
    /// data ([`filter`]): ACKs, handshakes of TCP itself and other protocols never reach the
    /// agent. Frames queued before the program was attached are read and dropped.
    pub fn open(interface: &str, timeout: Duration) -> std::io::Result<Capture> {
        Capture::open_with(interface, timeout, true)
    }

    /// Every frame of `interface`, as [`Capture::open`] was before it filtered on data: what
    /// the filter saves is measured against this (`benches/capture_live.rs`).
    pub fn open_all_frames(interface: &str, timeout: Duration) -> std::io::Result<Capture> {
        Capture::open_with(interface, timeout, false)
    }

    fn open_with(interface: &str, timeout: Duration, data_only: bool) -> std::io::Result<Capture> {
        let index = if_index(interface)?;
        let socket = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
        )?;
        socket.attach_filter(&filter(index, data_only))?;
        let mut buf = vec![0; 65_536];
        socket.set_nonblocking(true)?;
        loop {
            match (&socket).read(&mut buf) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(timeout))?;
        // A larger queue rides out bursts (the kernel caps it at net.core.rmem_max).
        let _ = socket.set_recv_buffer_size(8 << 20);
        Ok(Capture {
            socket,
            buf,
            interface: interface.to_string(),
            index,
            data_only,
        })
    }

    /// Follow the interface if it was made again (a new index: the filter would match nothing
    /// any more). An error says it is gone.
    pub fn refresh(&mut self) -> std::io::Result<()> {
        let index = if_index(&self.interface)?;
        if index != self.index {
            self.socket.attach_filter(&filter(index, self.data_only))?;
            tracing::info!(interface = %self.interface, index, "TLS capture: the interface was made again; following it");
            self.index = index;
        }
        Ok(())
    }

    /// The next frame, or `None` when none came within the timeout (or a signal cut the wait
    /// short: a read with a timeout is not restarted after one, and the agent's children send
    /// SIGCHLD).
    pub fn next_frame(&mut self) -> std::io::Result<Option<&[u8]>> {
        match self.socket.read(&mut self.buf) {
            Ok(n) => Ok(Some(&self.buf[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// The index of `interface` in this network namespace (sysfs shows the namespace's own).
fn if_index(interface: &str) -> std::io::Result<u32> {
    if interface.is_empty() || interface.contains('/') || interface.starts_with('.') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{interface:?} is not an interface name"),
        ));
    }
    let path = format!("/sys/class/net/{interface}/ifindex");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("no interface {interface:?} ({path}: {e})"),
        )
    })?;
    text.trim().parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{path}: {text:?} is not an index"),
        )
    })
}

/// The kernel-side filter (classic BPF, `man 7 socket` SO_ATTACH_FILTER): frames of interface
/// `index` that are IPv4 or IPv6 TCP segments with a payload; IPv6 frames with extension
/// headers and VLAN-tagged ones are kept for the parser to judge; the rest is dropped. Each accepted frame is kept
/// whole (the return value is a byte count).
fn filter(index: u32, data_only: bool) -> Vec<SockFilter> {
    let prog = if data_only {
        program(index)
    } else {
        vec![
            (LD_W_ABS, 0, 0, IFINDEX),
            (JEQ_K, 0, 1, index),
            (RET_K, 0, 0, KEEP),
            (RET_K, 0, 0, 0),
        ]
    };
    prog.into_iter()
        .map(|(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
        .collect()
}

// Opcodes of linux/filter.h.
const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_B_IND: u16 = 0x50;
const LD_MEM: u16 = 0x60;
const LDX_B_MSH: u16 = 0xb1;
const ST: u16 = 0x02;
const ALU_SUB_X: u16 = 0x1c;
const ALU_AND_K: u16 = 0x54;
const ALU_RSH_K: u16 = 0x74;
const TAX: u16 = 0x07;
const JEQ_K: u16 = 0x15;
const JGT_X: u16 = 0x2d;
const RET_K: u16 = 0x06;
/// SKF_AD_OFF + SKF_AD_IFINDEX: the index of the interface the frame is on.
const IFINDEX: u32 = 0xffff_f000 + 8;
const KEEP: u32 = 0x0004_0000;

/// One instruction: code, jump if true, jump if false, constant.
type Insn = (u16, u8, u8, u32);

/// [`filter`]'s instructions.
fn program(index: u32) -> Vec<Insn> {
    let f = |code, jt, jf, k| (code, jt, jf, k);
    // Jump offsets count from the next instruction; the last two lines are the two ends.
    vec![
        /* 0 */ f(LD_W_ABS, 0, 0, IFINDEX),
        /* 1 */ f(JEQ_K, 0, 31, index),
        /* 2 */ f(LD_H_ABS, 0, 0, 12), // EtherType
        /* 3 */ f(JEQ_K, 0, 12, 0x0800),
        // IPv4: protocol TCP; the IP header's length to X; total length − X, kept in M[0];
        // the TCP header's length to X; more than that is a payload.
        /* 4 */
        f(LD_B_ABS, 0, 0, 23),
        /* 5 */ f(JEQ_K, 0, 27, 6),
        /* 6 */ f(LDX_B_MSH, 0, 0, 14),
        /* 7 */ f(LD_H_ABS, 0, 0, 16),
        /* 8 */ f(ALU_SUB_X, 0, 0, 0),
        /* 9 */ f(ST, 0, 0, 0),
        /* 10 */ f(LD_B_IND, 0, 0, 14 + 12), // the TCP data offset, in its high nibble
        /* 11 */ f(ALU_AND_K, 0, 0, 0xf0),
        /* 12 */ f(ALU_RSH_K, 0, 0, 2),
        /* 13 */ f(TAX, 0, 0, 0),
        /* 14 */ f(LD_MEM, 0, 0, 0),
        /* 15 */ f(JGT_X, 16, 17, 0),
        // IPv6: next header TCP, its payload length against the TCP header's; an extension
        // header (hop-by-hop, routing, fragment, destination options, AH) is kept for the
        // parser; anything else (UDP, ICMPv6, …) dropped.
        /* 16 */
        f(JEQ_K, 0, 13, 0x86dd),
        /* 17 */ f(LD_B_ABS, 0, 0, 20),
        /* 18 */ f(JEQ_K, 0, 6, 6),
        /* 19 */ f(LD_B_ABS, 0, 0, 14 + 40 + 12),
        /* 20 */ f(ALU_AND_K, 0, 0, 0xf0),
        /* 21 */ f(ALU_RSH_K, 0, 0, 2),
        /* 22 */ f(TAX, 0, 0, 0),
        /* 23 */ f(LD_H_ABS, 0, 0, 18),
        /* 24 */ f(JGT_X, 7, 8, 0),
        /* 25 */ f(JEQ_K, 6, 0, 0),
        /* 26 */ f(JEQ_K, 5, 0, 43),
        /* 27 */ f(JEQ_K, 4, 0, 44),
        /* 28 */ f(JEQ_K, 3, 0, 60),
        /* 29 */ f(JEQ_K, 2, 3, 51),
        // VLAN-tagged (802.1Q, 802.1ad) frames the NIC did not untag: kept.
        /* 30 */
        f(JEQ_K, 1, 0, 0x8100),
        /* 31 */ f(JEQ_K, 0, 1, 0x88a8),
        /* 32 */ f(RET_K, 0, 0, KEEP),
        /* 33 */ f(RET_K, 0, 0, 0),
    ]
}

/// A capture and the handshakes it is in the middle of: what the agent's capture thread runs.
#[derive(Debug)]
pub struct Capturer {
    capture: Capture,
    flows: Flows,
    expired_at: i64,
    frames: u64,
    /// When the interface was last looked up, and why it could not be, if it could not.
    checked_at: i64,
    missing: Option<String>,
}

/// How long a ClientHello waits for its server's flight before it is given alone.
const FLIGHT_WAIT_MS: i64 = 5_000;
/// How often the interface's index is looked up again (an interface made again gets a new one).
const INTERFACE_CHECK_MS: i64 = 5_000;

impl Capturer {
    pub fn new(capture: Capture) -> Capturer {
        Capturer {
            capture,
            flows: Flows::default(),
            expired_at: 0,
            frames: 0,
            checked_at: 0,
            missing: None,
        }
    }

    /// Read one frame (or wait out the read timeout) at `now_ms`: the handshakes now whole, and
    /// once a second those that waited too long for their server.
    pub fn step(&mut self, now_ms: i64) -> std::io::Result<Vec<TlsRecord>> {
        let mut done = match self.capture.next_frame()? {
            Some(frame) => {
                self.frames += 1;
                self.flows.push(frame, now_ms)
            }
            None => Vec::new(),
        };
        if now_ms - self.expired_at >= 1_000 {
            done.extend(self.flows.expire(now_ms - FLIGHT_WAIT_MS));
            self.expired_at = now_ms;
        }
        if now_ms - self.checked_at >= INTERFACE_CHECK_MS {
            self.checked_at = now_ms;
            self.missing = self.capture.refresh().err().map(|e| e.to_string());
        }
        Ok(done)
    }

    /// Why the interface cannot be captured now (it is gone), if it cannot.
    pub fn missing(&self) -> Option<&str> {
        self.missing.as_deref()
    }

    /// Frames read so far.
    pub fn frames_read(&self) -> u64 {
        self.frames
    }

    /// Every handshake still waiting, given as it is (at the end of a capture).
    pub fn finish(&mut self) -> Vec<TlsRecord> {
        self.flows.expire(i64::MAX)
    }
}

/// The record of a ClientHello carried by an Ethernet `frame` seen at `at_ms`, if it carries
/// one (whole, in this one segment).
pub fn client_record(frame: &[u8], at_ms: i64) -> Option<TlsRecord> {
    hello_record(segment(frame)?, at_ms)
}

/// The record of a ClientHello a TCP segment carries, if it starts one.
fn hello_record(seg: Segment<'_>, at_ms: i64) -> Option<TlsRecord> {
    let (src, spt, dst, dpt, payload) = seg;
    // A handshake record (22) of TLS 1.0–1.3's record versions, holding a ClientHello (1).
    if payload.len() < 6 || payload[0] != 0x16 || payload[1] != 0x03 || payload[5] != 0x01 {
        return None;
    }
    let hello = crate::hello::client_hello(payload)?;
    Some(TlsRecord {
        at_ms,
        src: Some(src),
        spt: Some(spt),
        dst: Some(dst),
        dpt: Some(dpt),
        sni: hello.sni,
        alpn: hello.alpn,
        ja3: Some(hello.ja3_hash),
        ja4: Some(hello.ja4),
        ..TlsRecord::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .tcp(50_000, 443, 1, 64_000);
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn a_frame_with_a_client_hello_is_a_record_and_others_are_not() {
        let hello = include_bytes!("testdata/curl-hello-tls13.bin");
        let r = client_record(&frame(hello), 7).unwrap();
        assert_eq!(r.at_ms, 7);
        assert_eq!(r.src, Some("192.0.2.1".parse().unwrap()));
        assert_eq!((r.spt, r.dpt), (Some(50_000), Some(443)));
        assert_eq!(r.sni.as_deref(), Some("rephub.test"));
        assert_eq!(
            r.ja4.as_deref(),
            Some("t13d3112h2_e8f1e7e78f70_b26ce05bbdd6")
        );
        assert!(r.check().is_ok(), "{:?}", r.check());
        assert_eq!(client_record(&frame(b"GET / HTTP/1.1\r\n\r\n"), 7), None);
        assert_eq!(client_record(&frame(&hello[..100]), 7), None);
        assert_eq!(client_record(&[0u8; 10], 7), None);
    }

    /// Root only: curl to `openssl s_server` on loopback, the hello read off `lo`.
    #[test]
    fn a_hello_is_read_off_the_loopback_interface() {
        use std::process::{Command, Stdio};
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        if !root || Command::new("openssl").arg("version").output().is_err() {
            eprintln!("SKIPPED: needs root and openssl");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("k.pem"), dir.path().join("c.pem"));
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=capture.test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(made.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-accept",
                &port.to_string(),
                "-cert",
            ])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Until the server listens (bounded: 10 s).
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut cap = Capture::open("lo", Duration::from_millis(200)).unwrap();
        let url = format!("https://capture.test:{port}/");
        let resolve = format!("capture.test:{port}:127.0.0.1");
        let _ = Command::new("curl")
            .args(["-s", "-k", "-m", "3", "--resolve", &resolve, &url])
            .stdout(Stdio::null())
            .status();
        let mut found = None;
        for _ in 0..5_000 {
            match cap.next_frame().unwrap() {
                Some(f) => {
                    if let Some(r) = client_record(f, 0)
                        && r.dpt == Some(port)
                    {
                        found = Some(r);
                        break;
                    }
                }
                None => break,
            }
        }
        let _ = server.kill();
        let _ = server.wait();
        let r = found.expect("no ClientHello seen on lo");
        assert_eq!(r.sni.as_deref(), Some("capture.test"));
        assert!(r.ja4.unwrap().starts_with("t13d"));
    }
}

/// A flow's addresses and ports, client first.
type FlowKey = (IpAddr, u16, IpAddr, u16);

/// Most handshakes waiting for their server's flight, and bytes kept of a flight.
const MAX_FLOWS: usize = 100_000;
const MAX_FLIGHT: usize = 32 * 1024;

/// Handshakes being seen: a ClientHello waits for its server's flight (its segments collected
/// until the flight is complete), then the record is whole. One that waits too long is given as
/// it is (the client's side alone).
#[derive(Debug, Default)]
pub struct Flows {
    waiting: std::collections::HashMap<FlowKey, (TlsRecord, Vec<u8>)>,
    /// Handshakes given without waiting because `MAX_FLOWS` were waiting.
    pub overflowed: u64,
}

/// A TCP segment: source, source port, destination, destination port, payload.
type Segment<'a> = (IpAddr, u16, IpAddr, u16, &'a [u8]);

/// The TCP segment an Ethernet frame carries.
fn segment(frame: &[u8]) -> Option<Segment<'_>> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let (src, dst): (IpAddr, IpAddr) = match p.net? {
        NetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return None,
    };
    let TransportSlice::Tcp(tcp) = p.transport? else {
        return None;
    };
    Some((
        src,
        tcp.source_port(),
        dst,
        tcp.destination_port(),
        tcp.payload(),
    ))
}

impl Flows {
    /// Take one frame; the handshakes it completes.
    pub fn push(&mut self, frame: &[u8], at_ms: i64) -> Vec<TlsRecord> {
        // The frame is cut once: the hello's record and the flight are read from that.
        let Some(seg) = segment(frame) else {
            return Vec::new();
        };
        let (src, spt, dst, dpt, payload) = seg;
        if payload.is_empty() {
            return Vec::new();
        }
        if let Some(r) = hello_record(seg, at_ms) {
            if self.waiting.len() >= MAX_FLOWS {
                self.overflowed += 1;
                return vec![r];
            }
            self.waiting.insert((src, spt, dst, dpt), (r, Vec::new()));
            return Vec::new();
        }
        let key = (dst, dpt, src, spt);
        let Some((_, flight)) = self.waiting.get_mut(&key) else {
            return Vec::new();
        };
        let room = MAX_FLIGHT.saturating_sub(flight.len());
        flight.extend_from_slice(&payload[..payload.len().min(room)]);
        if !crate::hello::flight_complete(flight) && flight.len() < MAX_FLIGHT {
            return Vec::new();
        }
        match self.waiting.remove(&key) {
            Some((r, flight)) => vec![merge(r, &flight)],
            None => Vec::new(),
        }
    }

    /// Handshakes that waited since before `before_ms`, given as they are.
    pub fn expire(&mut self, before_ms: i64) -> Vec<TlsRecord> {
        let old: Vec<FlowKey> = self
            .waiting
            .iter()
            .filter(|(_, (r, _))| r.at_ms < before_ms)
            .map(|(k, _)| *k)
            .collect();
        old.into_iter()
            .filter_map(|k| self.waiting.remove(&k))
            .map(|(r, flight)| merge(r, &flight))
            .collect()
    }
}

/// The client's record with what the server's flight adds.
fn merge(mut r: TlsRecord, flight: &[u8]) -> TlsRecord {
    if let Some(f) = crate::hello::server_flight(flight) {
        r.version = f.version;
        r.cipher = Some(rephub_model::telemetry::cipher_name(f.cipher));
        r.ja3s = Some(f.ja3s_hash);
        r.subject = f.subject;
        r.issuer = f.issuer;
        r.serial = f.serial;
        r.not_before = f.not_before;
        r.not_after = f.not_after;
        r.sha256 = f.sha256;
        r.sha1 = f.sha1;
    }
    r
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    /// The classic BPF machine for the instructions [`program`] uses (linux/filter.h): what it
    /// returns for `frame` on interface `on`. A load past the frame's end rejects it, as the
    /// kernel's does.
    fn run(prog: &[Insn], on: u32, frame: &[u8]) -> u32 {
        let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
        let byte = |at: usize| frame.get(at).map(|b| u32::from(*b));
        let half = |at: usize| Some(byte(at)? << 8 | byte(at + 1)?);
        loop {
            let (code, jt, jf, k) = prog[pc];
            pc += 1;
            let jump = |cond: bool| usize::from(if cond { jt } else { jf });
            match code {
                0x20 if k == 0xffff_f008 => a = on,
                0x28 => match half(k as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                0x30 => match byte(k as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                0x50 => match byte((x + k) as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                0xb1 => match byte(k as usize) {
                    Some(v) => x = (v & 0xf) * 4,
                    None => return 0,
                },
                0x60 => a = mem[k as usize],
                0x02 => mem[k as usize] = a,
                0x1c => a = a.wrapping_sub(x),
                0x54 => a &= k,
                0x74 => a >>= k,
                0x07 => x = a,
                0x15 => pc += jump(a == k),
                0x2d => pc += jump(a > x),
                0x06 => return k,
                _ => panic!("instruction {code:#x} is not modelled"),
            }
        }
    }

    fn tcp4(payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .tcp(50_000, 443, 1, 64_000);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn tcp6(payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0x20; 16], [0x21; 16], 64)
            .tcp(50_000, 443, 1, 64_000);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn the_kernel_filter_keeps_tcp_segments_with_data_on_its_interface_alone() {
        let prog = program(7);
        let keep = |on: u32, frame: &[u8]| run(&prog, on, frame) > 0;
        let hello = include_bytes!("testdata/curl-hello-tls12.bin");
        assert!(keep(7, &tcp4(hello)));
        assert!(keep(7, &tcp4(b"x")));
        assert!(keep(7, &tcp6(hello)));
        // Kept whole.
        assert_eq!(run(&prog, 7, &tcp4(hello)), 0x0004_0000);
        // Another interface, an ACK (no data), UDP, ARP, a runt.
        assert!(!keep(8, &tcp4(hello)));
        assert!(!keep(7, &tcp4(b"")));
        assert!(!keep(7, &tcp6(b"")));
        let mut udp = Vec::new();
        etherparse::PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .udp(5000, 53)
            .write(&mut udp, b"query")
            .unwrap();
        assert!(!keep(7, &udp));
        let mut arp = tcp4(b"");
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!keep(7, &arp));
        assert!(!keep(7, &[0u8; 10]));
        // TCP options (a longer header): only what follows them is data.
        let mut opts = Vec::new();
        etherparse::PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .tcp(50_000, 443, 1, 64_000)
            .options(&[etherparse::TcpOptionElement::Timestamp(1, 2)])
            .unwrap()
            .write(&mut opts, b"")
            .unwrap();
        assert!(!keep(7, &opts));
        // IPv6 with an extension header, a VLAN tag: left to the parser.
        for next in [0u8, 43, 44, 60, 51] {
            let mut ext = tcp6(b"");
            ext[14 + 6] = next;
            assert!(keep(7, &ext), "next header {next}");
        }
        // IPv6 UDP and ICMPv6: dropped.
        for next in [17u8, 58] {
            let mut other = tcp6(b"x");
            other[14 + 6] = next;
            assert!(!keep(7, &other), "next header {next}");
        }
        // IPv4 with options: the IP header's length is read, not assumed.
        let with_options = |payload: &[u8]| {
            let mut f = tcp4(payload);
            f.splice(14 + 20..14 + 20, [1u8, 1, 1, 0]);
            f[14] = 0x46;
            let total = u16::from_be_bytes([f[16], f[17]]) + 4;
            f[16..18].copy_from_slice(&total.to_be_bytes());
            f
        };
        assert!(keep(7, &with_options(b"data")));
        assert!(!keep(7, &with_options(b"")));
        let mut tagged = tcp4(b"");
        tagged[12..14].copy_from_slice(&[0x81, 0x00]);
        assert!(keep(7, &tagged));
    }

    proptest::proptest! {
        /// Any frame: the program ends (every jump is forward) and keeps or drops it whole.
        #[test]
        fn any_frame_is_kept_whole_or_dropped(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            on in 0u32..10,
        ) {
            let r = run(&program(3), on, &data);
            proptest::prop_assert!(r == 0 || r == 0x0004_0000);
        }
    }
}

#[cfg(test)]
mod flow_tests {
    use super::*;

    fn frame(from_client: bool, payload: &[u8]) -> Vec<u8> {
        let (a, b, pa, pb) = if from_client {
            ([192, 0, 2, 1], [192, 0, 2, 2], 50_000, 443)
        } else {
            ([192, 0, 2, 2], [192, 0, 2, 1], 443, 50_000)
        };
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(a, b, 64)
            .tcp(pa, pb, 1, 64_000);
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn a_handshake_in_segments_becomes_one_whole_record() {
        let hello = include_bytes!("testdata/curl-hello-tls12.bin");
        let flight = include_bytes!("testdata/openssl-server-flight-tls12.bin");
        let mut flows = Flows::default();
        assert!(flows.push(&frame(true, hello), 1_000).is_empty());
        // The flight in three segments, as a 500-byte MSS would cut it.
        let mut got = Vec::new();
        for part in flight.chunks(500) {
            got.extend(flows.push(&frame(false, part), 1_001));
        }
        assert_eq!(got.len(), 1, "{got:?}");
        let r = &got[0];
        assert_eq!(r.sni.as_deref(), Some("rephub.test"));
        assert_eq!(
            r.ja4.as_deref(),
            Some("t12d2807h2_d943125447b4_a44c6288192a")
        );
        assert_eq!(r.version.as_deref(), Some("TLS 1.2"));
        assert_eq!(r.ja3s.as_deref(), Some("e54965894d6b45ecb4323c7ea3d6c115"));
        assert_eq!(
            r.sha1.as_deref(),
            Some("6bb65a245d42459d0bccac056458ed0f0f2a5ad6")
        );
        assert!(r.check().is_ok(), "{:?}", r.check());
        assert!(flows.waiting.is_empty());
        // A hello whose server never answers is given, the client's side alone, when it expires.
        assert!(flows.push(&frame(true, hello), 2_000).is_empty());
        assert!(flows.expire(2_000).is_empty());
        let alone = flows.expire(2_001);
        assert_eq!(alone.len(), 1);
        assert_eq!(alone[0].sha256, None);
    }
}

#[cfg(test)]
mod never_panics {
    use super::*;

    proptest::proptest! {
        /// Whatever comes off the wire: frames, hellos and flights are read or refused, never a
        /// panic (a real hello with bytes flipped included).
        #[test]
        fn any_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
                     flip in 0usize..517, to in proptest::num::u8::ANY) {
            let _ = crate::hello::client_hello(&data);
            let _ = crate::hello::server_flight(&data);
            let _ = crate::hello::flight_complete(&data);
            let mut flows = Flows::default();
            let _ = flows.push(&data, 0);
            let mut hello = include_bytes!("testdata/curl-hello-tls13.bin").to_vec();
            hello[flip] = to;
            let _ = crate::hello::client_hello(&hello);
        }
    }
}
