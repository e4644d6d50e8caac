//! A client of the SMS Web API (`/repEntries/{import,delete,query,add}`, the TippingPoint SMS Web API guide),
//! as a producer uses it: bulk `import` of CSV files, `delete` with `criteria=entry`, `query` to
//! confirm what the target took.

use std::collections::HashSet;

use reqwest::multipart::{Form, Part};
use reqwest::{Client, StatusCode};

use crate::http::client as http;

/// How a target is authenticated.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    /// `X-SMS-API-KEY`.
    Key(String),
    /// HTTP Basic (never `smsuser`/`smspass` in the URL, where logs would keep them).
    Basic(String, String),
}

#[derive(Debug)]
pub(crate) struct Sms {
    client: Client,
    base: String,
    auth: Auth,
}

/// Why a request to the target failed, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct SmsError(pub(crate) String);

fn explain(status: StatusCode, body: &str) -> SmsError {
    let detail: String = body.trim().chars().take(300).collect();
    SmsError(match status.as_u16() {
        401 => format!("the target refused the credentials (401) {detail}"),
        403 => format!("the target's user lacks web-services access (403) {detail}"),
        412 => format!(
            "the target refused the request (412 precondition failed: are the tag categories defined there?) {detail}"
        ),
        400 => format!("the target found the request malformed (400) {detail}"),
        s => format!("the target answered HTTP {s} {detail}"),
    }
    .trim_end()
    .to_string())
}

impl Sms {
    pub(crate) fn new(client: Client, base: String, auth: Auth) -> Sms {
        Sms { client, base, auth }
    }

    fn post(&self, op: &str) -> reqwest::RequestBuilder {
        let r = self.client.post(format!("{}/repEntries/{op}", self.base));
        match &self.auth {
            Auth::Key(k) => match http::secret(k) {
                Ok(v) => r.header("X-SMS-API-KEY", v),
                Err(_) => r,
            },
            Auth::Basic(u, p) => r.basic_auth(u, Some(p)),
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<(StatusCode, String), SmsError> {
        let resp = req.send().await.map_err(|e| {
            SmsError(format!(
                "{what}: the target is unreachable: {}",
                http::error_text(&e)
            ))
        })?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        Ok((status, body))
    }

    /// Import one file of one kind (`ipv4`, `ipv6`, `dns`, `url`).
    pub(crate) async fn import(&self, kind: &str, file: String) -> Result<(), SmsError> {
        let part = Part::text(file)
            .file_name(format!("rephub-{kind}.csv"))
            .mime_str("text/csv")
            .map_err(|e| SmsError(e.to_string()))?;
        let form = Form::new()
            .text("type", kind.to_string())
            .part("file", part);
        let (status, body) = self
            .send(self.post("import").multipart(form), "import")
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(explain(status, &body))
        }
    }

    /// Delete these values (`param` = `ip`, `dns` or `url`) with `criteria=entry`. Values the
    /// target does not have are no error.
    pub(crate) async fn delete(&self, param: &str, values: &[String]) -> Result<(), SmsError> {
        let mut form: Vec<(&str, &str)> = vec![("criteria", "entry")];
        form.extend(values.iter().map(|v| (param, v.as_str())));
        let (status, body) = self.send(self.post("delete").form(&form), "delete").await?;
        // 404: none of them was there, which is what was wanted.
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(explain(status, &body))
        }
    }

    /// Which of these values (one kind) the target has: the addresses of its answer lines.
    pub(crate) async fn query(
        &self,
        param: &str,
        values: &[String],
    ) -> Result<HashSet<String>, SmsError> {
        let form: Vec<(&str, &str)> = values.iter().map(|v| (param, v.as_str())).collect();
        let (status, body) = self.send(self.post("query").form(&form), "query").await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(HashSet::new());
        }
        if !status.is_success() {
            return Err(explain(status, &body));
        }
        Ok(body.lines().filter_map(first_field).collect())
    }

    /// Add a probe entry with these tags, then delete it: checks credentials, write access and
    /// that the tag categories exist (the target answers 412 for an unknown category).
    pub(crate) async fn probe(&self, probe: &str, tag_data: &str) -> Result<(), SmsError> {
        let form = [("ip", probe), ("TagData", tag_data)];
        let (status, body) = self.send(self.post("add").form(&form), "add").await?;
        if !status.is_success() {
            return Err(explain(status, &body));
        }
        self.delete("ip", &[probe.to_string()]).await
    }
}

/// The address of a query answer line (`address,cat,value,…`, the address maybe quoted).
fn first_field(line: &str) -> Option<String> {
    let line = line.trim_end_matches('\r');
    if line.is_empty() {
        return None;
    }
    if let Some(rest) = line.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    out.push('"');
                } else {
                    return Some(out);
                }
            } else {
                out.push(c);
            }
        }
        return None;
    }
    Some(line.split(',').next().unwrap_or(line).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_lines() {
        assert_eq!(first_field("1.2.3.4,Cat,V").as_deref(), Some("1.2.3.4"));
        assert_eq!(
            first_field("\"http://x/a,b\",Cat,V").as_deref(),
            Some("http://x/a,b")
        );
        assert_eq!(
            first_field("\"say \"\"x\"\"\",C").as_deref(),
            Some("say \"x\"")
        );
        assert_eq!(first_field("evil.example").as_deref(), Some("evil.example"));
        assert_eq!(first_field(""), None);
        assert_eq!(first_field("\"open"), None);
        assert!(
            explain(StatusCode::PRECONDITION_FAILED, "x")
                .0
                .contains("tag categories")
        );
        assert!(
            explain(StatusCode::UNAUTHORIZED, "")
                .0
                .contains("credentials")
        );
    }
}
