//! rephub's own analyzer for sandbox URL analysis (seed 002, chapter 9; docs/sandbox.md): fetch a
//! URL **from an isolated network namespace** within strict limits (time, size, redirects),
//! record what happened on the way (the redirect chain, the final URL, the content type, the
//! content's SHA-1 and SHA-256), and scan what came back with YARA rules through yara-x, whose
//! metadata give the risk level, threat type and threat name of a detection.
//!
//! The fetch runs in a child process placed in the namespace (`ip netns exec`, see
//! [`isolated`]): the hub's own process never opens a connection to an analysed URL, and a
//! fetch that hangs or floods is killed from outside. The child writes the body to a file and
//! its [`Report`] on standard output; the scan runs in the hub, where the rules are compiled once.

pub mod fetch;
pub mod isolated;
pub mod rules;

use serde::{Deserialize, Serialize};

pub use fetch::{Hop, Limits, Report, fetch};
pub use isolated::{Isolation, IsolationError};
pub use rules::{Detection, Rules, RulesError, Verdict};

/// A risk level as Vision One's sandbox names it (`riskLevel`), ordered from none to high.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RiskLevel {
    NoRisk,
    Low,
    Medium,
    High,
}

impl RiskLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::NoRisk => "noRisk",
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
        }
    }

    /// A rule's `risk_level` metadata: Vision One's names, and the seed's console words
    /// ("No risk"), in any case.
    pub fn parse(s: &str) -> Option<RiskLevel> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace([' ', '_', '-'], "")
            .as_str()
        {
            "norisk" | "none" => Some(RiskLevel::NoRisk),
            "low" => Some(RiskLevel::Low),
            "medium" => Some(RiskLevel::Medium),
            "high" => Some(RiskLevel::High),
            _ => None,
        }
    }
}
