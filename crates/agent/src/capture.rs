//! The agent's own TLS capture (work in progress, branch `wip/native-tls`): frames read from an
//! AF_PACKET socket bound to one interface (through `socket2`'s safe API), each cut into
//! Ethernet / IP / TCP by `etherparse`, and a TCP payload that starts a TLS handshake record read
//! as a ClientHello ([`crate::hello`]). Not yet: the server's side (ServerHello, certificate),
//! segments reassembled, the agent's wiring and spool, a benchmark.

use std::io::Read;
use std::net::IpAddr;
use std::time::Duration;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use rephub_model::telemetry::TlsRecord;
use socket2::{Domain, Protocol, Socket, Type};

/// ETH_P_ALL, in network order as AF_PACKET wants the protocol.
const ETH_P_ALL: u16 = 0x0003;

/// A raw socket on one interface.
#[derive(Debug)]
pub struct Capture {
    socket: Socket,
    buf: Vec<u8>,
}

impl Capture {
    /// Every frame of `interface` (root or CAP_NET_RAW), each read waiting at most `timeout`.
    pub fn open(interface: &str, timeout: Duration) -> std::io::Result<Capture> {
        let socket = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
        )?;
        socket.bind_device(Some(interface.as_bytes()))?;
        socket.set_read_timeout(Some(timeout))?;
        Ok(Capture {
            socket,
            buf: vec![0; 65_536],
        })
    }

    /// The next frame, or `None` when none came within the timeout.
    pub fn next_frame(&mut self) -> std::io::Result<Option<&[u8]>> {
        match self.socket.read(&mut self.buf) {
            Ok(n) => Ok(Some(&self.buf[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
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
        std::thread::sleep(Duration::from_millis(500));
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
