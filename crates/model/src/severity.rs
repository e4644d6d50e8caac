//! Severity, risk-level thresholds and scan actions, as producers and Vision One express them.

use std::fmt;
use std::str::FromStr;

/// The values of `Trend Micro Severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    /// The tag value, as the built-in list category spells it.
    pub fn tag_value(self) -> &'static str {
        match self {
            Severity::High => "High",
            Severity::Medium => "Medium",
            Severity::Low => "Low",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag_value())
    }
}

impl FromStr for Severity {
    type Err = String;

    /// Case-insensitive; Vision One's `riskLevel` uses `high`, `medium`, `low`.
    fn from_str(s: &str) -> Result<Severity, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "high" => Ok(Severity::High),
            "medium" => Ok(Severity::Medium),
            "low" => Ok(Severity::Low),
            _ => Err(format!(
                "unknown severity {s:?} (expected high, medium or low)"
            )),
        }
    }
}

/// A producer's "risk level" setting (seed 000): which severities it distributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiskThreshold {
    HighOnly,
    HighAndMedium,
    All,
}

impl RiskThreshold {
    pub fn includes(self, s: Severity) -> bool {
        match self {
            RiskThreshold::HighOnly => s == Severity::High,
            RiskThreshold::HighAndMedium => s >= Severity::Medium,
            RiskThreshold::All => true,
        }
    }
}

/// The values of `Trend Micro Scan Action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanAction {
    Log,
    Block,
}

impl ScanAction {
    pub fn tag_value(self) -> &'static str {
        match self {
            ScanAction::Log => "log",
            ScanAction::Block => "block",
        }
    }
}

impl FromStr for ScanAction {
    type Err = String;

    fn from_str(s: &str) -> Result<ScanAction, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "log" => Ok(ScanAction::Log),
            "block" => Ok(ScanAction::Block),
            _ => Err(format!("unknown scan action {s:?} (expected log or block)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert!(RiskThreshold::HighOnly.includes(Severity::High));
        assert!(!RiskThreshold::HighOnly.includes(Severity::Medium));
        assert!(RiskThreshold::HighAndMedium.includes(Severity::Medium));
        assert!(!RiskThreshold::HighAndMedium.includes(Severity::Low));
        assert!(RiskThreshold::All.includes(Severity::Low));
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
        assert!("critical".parse::<Severity>().is_err());
        assert_eq!("Block".parse::<ScanAction>(), Ok(ScanAction::Block));
    }
}
