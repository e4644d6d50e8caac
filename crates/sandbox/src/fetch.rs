//! Fetching one URL as the analyzer sees it: redirects followed by hand (each hop recorded, a
//! loop or too many hops stop it), the body written to a file up to a size limit and hashed on
//! the way, everything within one deadline. This runs inside the isolated namespace
//! (the hub starts it there); nothing here decides whether the content is harmful.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha1::Digest;
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, timeout_at};

/// Longest URL taken (Vision One's limit).
pub const MAX_URL: usize = 2048;

/// What a fetch may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The whole fetch, redirects and body included.
    pub timeout: Duration,
    /// Body bytes kept (and scanned); more is not read.
    pub max_bytes: u64,
    /// Redirects followed.
    pub max_redirects: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(30),
            max_bytes: 16 << 20,
            max_redirects: 10,
        }
    }
}

/// One request of the chain and its answer's status (0: no answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    pub url: String,
    pub status: u16,
}

/// What a fetch saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Report {
    /// Every request made, the first one being the submitted URL.
    pub chain: Vec<Hop>,
    /// The URL whose body was read (the last of the chain), if one answered.
    pub final_url: Option<String>,
    pub content_type: Option<String>,
    /// Body bytes kept.
    pub bytes: u64,
    /// The body was longer than the limit (or the time ran out while reading it).
    pub truncated: bool,
    /// Of the bytes kept.
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    /// Why the fetch stopped short: unreachable, a redirect loop, too many redirects, the time
    /// limit. What was read before is still reported (and scanned).
    pub error: Option<String>,
}

/// Fetch `url` within `limits`, writing the body to `out`. Errors of the fetch itself are in
/// the report; only failing to write `out` is an error of this function.
pub async fn fetch(url: &str, limits: &Limits, out: &Path) -> std::io::Result<Report> {
    let mut report = Report::default();
    let mut file = tokio::fs::File::create(out).await?;
    let deadline = Instant::now() + limits.timeout;
    let client = match client(limits) {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(format!("no HTTP client: {e}"));
            return Ok(report);
        }
    };
    let mut next = match checked(url) {
        Ok(u) => u,
        Err(e) => {
            report.error = Some(e);
            return Ok(report);
        }
    };
    loop {
        if report.chain.iter().any(|h| h.url == next.as_str()) {
            report.error = Some(format!("redirect loop back to {next}"));
            break;
        }
        if report.chain.len() > limits.max_redirects as usize {
            report.error = Some(format!("more than {} redirects", limits.max_redirects));
            break;
        }
        let hop = report.chain.len();
        report.chain.push(Hop {
            url: next.to_string(),
            status: 0,
        });
        let resp = match timeout_at(deadline, client.get(next.clone()).send()).await {
            Err(_) => {
                report.error = Some(time_limit(limits));
                break;
            }
            Ok(Err(e)) => {
                report.error = Some(error_text(&e));
                break;
            }
            Ok(Ok(r)) => r,
        };
        report.chain[hop].status = resp.status().as_u16();
        if resp.status().is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match location.map(|l| next.join(&l)) {
                Some(Ok(u)) => match checked(u.as_str()) {
                    Ok(u) => {
                        next = u;
                        continue;
                    }
                    Err(e) => {
                        report.error = Some(format!("redirected to {u}: {e}"));
                        break;
                    }
                },
                Some(Err(e)) => {
                    report.error = Some(format!("a redirect to an unreadable location: {e}"));
                    break;
                }
                // A redirect status without a location: its body is the page.
                None => {}
            }
        }
        report.final_url = Some(next.to_string());
        report.content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        read_body(resp, limits, deadline, &mut file, &mut report).await?;
        break;
    }
    file.flush().await?;
    Ok(report)
}

/// The body, up to the limit and the deadline, into `file`; hashes and counts into `report`.
async fn read_body(
    mut resp: reqwest::Response,
    limits: &Limits,
    deadline: Instant,
    file: &mut tokio::fs::File,
    report: &mut Report,
) -> std::io::Result<()> {
    let mut sha1 = sha1::Sha1::new();
    let mut sha256 = sha2::Sha256::new();
    loop {
        match timeout_at(deadline, resp.chunk()).await {
            Err(_) => {
                report.truncated = true;
                report.error = Some(time_limit(limits));
                break;
            }
            Ok(Err(e)) => {
                report.error = Some(format!("reading the body: {}", error_text(&e)));
                break;
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => {
                let room = limits.max_bytes - report.bytes;
                let take = (chunk.len() as u64).min(room) as usize;
                file.write_all(&chunk[..take]).await?;
                sha1.update(&chunk[..take]);
                sha256.update(&chunk[..take]);
                report.bytes += take as u64;
                if take < chunk.len() || report.bytes == limits.max_bytes {
                    // Reading on to see whether more comes would read the rest: a full buffer
                    // at the limit counts as cut short.
                    report.truncated = true;
                    break;
                }
            }
        }
    }
    report.sha1 = Some(hex::encode(sha1.finalize()));
    report.sha256 = Some(hex::encode(sha2::Digest::finalize(sha256)));
    Ok(())
}

fn time_limit(limits: &Limits) -> String {
    format!("the time limit ({} s) ran out", limits.timeout.as_secs())
}

/// `url` if it is one the analyzer fetches: http or https, with a host, at most [`MAX_URL`].
pub fn checked(url: &str) -> Result<reqwest::Url, String> {
    if url.len() > MAX_URL {
        return Err(format!("longer than {MAX_URL} characters"));
    }
    let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{}: only http and https are analysed", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    Ok(u)
}

fn client(limits: &Limits) -> reqwest::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // The analyzer looks at what a site serves, whatever its certificate; it sends nothing
        // of its own.
        .tls_danger_accept_invalid_certs(true)
        .no_proxy()
        .connect_timeout(limits.timeout)
        .user_agent(concat!(
            "Mozilla/5.0 (compatible; rephub-sandbox/",
            env!("CARGO_PKG_VERSION"),
            ")"
        ))
        .build()
}

/// A reqwest error with its causes.
fn error_text(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// A web server on loopback that answers by path: `/page`, `/loop-a` ↔ `/loop-b`, `/hop/N`
    /// (a redirect to `/hop/N+1`), `/huge` (an endless body), `/slow` (never answers).
    async fn server() -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut line = String::new();
                    let mut r = BufReader::new(r);
                    if r.read_line(&mut line).await.is_err() {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                    let redirect = |to: &str| {
                        format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
                    };
                    let head = match path.as_str() {
                        "/page" => "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello".to_string(),
                        "/loop-a" => redirect("/loop-b"),
                        "/loop-b" => redirect("/loop-a"),
                        "/huge" => "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_string(),
                        "/slow" => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                        p if p.starts_with("/hop/") => {
                            let n: u32 = p[5..].parse().unwrap_or(0);
                            redirect(&format!("/hop/{}", n + 1))
                        }
                        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
                    };
                    if w.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    if path == "/huge" {
                        let chunk = vec![b'a'; 65536];
                        // Bounded: 1 GiB at most, stopped by the reader long before.
                        for _ in 0..16_384 {
                            if w.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    fn limits() -> Limits {
        Limits {
            timeout: Duration::from_secs(5),
            max_bytes: 1 << 20,
            max_redirects: 4,
        }
    }

    #[tokio::test]
    async fn a_page_is_kept_hashed_and_typed() {
        let base = server().await;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("body");
        let r = fetch(&format!("{base}/page"), &limits(), &out)
            .await
            .unwrap();
        assert_eq!(r.error, None);
        assert_eq!(r.chain.len(), 1);
        assert_eq!(r.chain[0].status, 200);
        assert_eq!(r.content_type.as_deref(), Some("text/html"));
        assert_eq!(std::fs::read(&out).unwrap(), b"hello");
        assert_eq!(
            r.sha1.as_deref(),
            Some("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d")
        );
        assert!(!r.truncated);
    }

    #[tokio::test]
    async fn redirects_are_recorded_and_loops_and_long_chains_stopped() {
        let base = server().await;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("body");
        let r = fetch(&format!("{base}/loop-a"), &limits(), &out)
            .await
            .unwrap();
        assert!(
            r.error.as_deref().unwrap().contains("redirect loop"),
            "{r:?}"
        );
        assert_eq!(r.chain.len(), 2);
        assert_eq!(r.final_url, None);
        let r = fetch(&format!("{base}/hop/0"), &limits(), &out)
            .await
            .unwrap();
        assert!(r.error.as_deref().unwrap().contains("more than 4"), "{r:?}");
        assert_eq!(r.chain.len(), 5);
        assert!(r.chain.iter().all(|h| h.status == 302));
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_at_the_limit_and_a_silent_server_at_the_deadline() {
        let base = server().await;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("body");
        let r = fetch(&format!("{base}/huge"), &limits(), &out)
            .await
            .unwrap();
        assert!(r.truncated);
        assert_eq!(r.bytes, 1 << 20);
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 1 << 20);
        let short = Limits {
            timeout: Duration::from_millis(300),
            ..limits()
        };
        let r = fetch(&format!("{base}/slow"), &short, &out).await.unwrap();
        assert!(r.error.as_deref().unwrap().contains("time limit"), "{r:?}");
    }

    #[tokio::test]
    async fn only_web_urls_are_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("body");
        for bad in ["file:///etc/passwd", "ftp://x/", "not a url", "http://"] {
            let r = fetch(bad, &limits(), &out).await.unwrap();
            assert!(r.error.is_some(), "{bad}");
            assert!(r.chain.is_empty(), "{bad}");
        }
        let unreachable = fetch("http://127.0.0.1:1/", &limits(), &out).await.unwrap();
        assert_eq!(unreachable.chain.len(), 1);
        assert_eq!(unreachable.chain[0].status, 0);
        assert!(unreachable.error.is_some());
    }
}
