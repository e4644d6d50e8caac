//! YARA rules (yara-x): compiled once from the shipped rule and a directory of `.yar`/`.yara`
//! files, each file in a namespace of its own (two files may name a rule alike), and a scan that
//! turns matching rules into a verdict through their metadata.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::RiskLevel;

/// The rule rephub ships (the EICAR test string): always loaded, so that the sandbox can be
/// checked end to end before any rule is installed.
pub const SHIPPED: &str = include_str!("../rules/eicar.yar");

/// The risk of a matching rule without (or with an unreadable) `risk_level`: a detection, but
/// not one that blocks by itself (only high-risk objects become suspicious objects).
pub const DEFAULT_RISK: RiskLevel = RiskLevel::Medium;

/// Longest a scan may run (yara-x counts in whole seconds).
const SCAN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("the rules directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("scanning: {0}")]
    Scan(String),
}

/// Compiled rules, shareable between scans (each scan makes its own scanner).
pub struct Rules {
    rules: yara_x::Rules,
    files: usize,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("rules", &self.rules.iter().len())
            .field("files", &self.files)
            .finish()
    }
}

/// One matching rule, as its metadata describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// `namespace.rule`.
    pub rule: String,
    pub risk: RiskLevel,
    /// `threat_type`, if the rule names one.
    pub threat_type: Option<String>,
    /// `threat_name`, else the rule's identifier.
    pub threat_name: String,
}

/// What a scan concludes: the highest risk of the matching rules (no risk without a match), their
/// threat types and names, each once, in rule order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub risk: RiskLevel,
    pub threat_types: Vec<String>,
    pub detection_names: Vec<String>,
}

impl Verdict {
    pub fn of(detections: &[Detection]) -> Verdict {
        let mut v = Verdict {
            risk: RiskLevel::NoRisk,
            threat_types: Vec::new(),
            detection_names: Vec::new(),
        };
        for d in detections {
            v.risk = v.risk.max(d.risk);
            if let Some(t) = &d.threat_type
                && !v.threat_types.contains(t)
            {
                v.threat_types.push(t.clone());
            }
            if !v.detection_names.contains(&d.threat_name) {
                v.detection_names.push(d.threat_name.clone());
            }
        }
        v
    }
}

impl Rules {
    /// The shipped rule and every `.yar`/`.yara` file of `dir` (if given). A file that does not
    /// compile is left out and named in the problems returned with the rules (the others still
    /// work); an unreadable directory is an error.
    pub fn load(dir: Option<&Path>) -> Result<(Rules, Vec<String>), RulesError> {
        let mut files = Vec::new();
        if let Some(dir) = dir {
            let list = std::fs::read_dir(dir).map_err(|e| RulesError::Dir(dir.into(), e))?;
            for f in list {
                let path = f.map_err(|e| RulesError::Dir(dir.into(), e))?.path();
                if matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yar" | "yara")
                ) {
                    files.push(path);
                }
            }
        }
        files.sort();
        let mut problems = Vec::new();
        let mut sources: Vec<(String, String, String)> =
            vec![("rephub".into(), "shipped eicar.yar".into(), SHIPPED.into())];
        for path in &files {
            match std::fs::read_to_string(path) {
                Ok(text) => sources.push((namespace(path), path.display().to_string(), text)),
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
        let mut compiler = yara_x::Compiler::new();
        let mut loaded = 0;
        for (ns, origin, text) in &sources {
            // A file that fails is compiled alone first, so that its error does not leave half a
            // namespace in the shared compiler.
            let mut alone = yara_x::Compiler::new();
            if let Err(e) = alone.add_source(yara_x::SourceCode::from(text.as_str())) {
                problems.push(format!("{origin}: {e}"));
                continue;
            }
            compiler.new_namespace(ns);
            match compiler
                .add_source(yara_x::SourceCode::from(text.as_str()).with_origin(origin.as_str()))
            {
                Ok(_) => loaded += 1,
                Err(e) => problems.push(format!("{origin}: {e}")),
            }
        }
        Ok((
            Rules {
                rules: compiler.build(),
                files: loaded,
            },
            problems,
        ))
    }

    /// How many rules are compiled.
    pub fn len(&self) -> usize {
        self.rules.iter().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many files (the shipped one included) compiled.
    pub fn files(&self) -> usize {
        self.files
    }

    /// The rules that match `data`.
    pub fn scan(&self, data: &[u8]) -> Result<Vec<Detection>, RulesError> {
        let mut scanner = yara_x::Scanner::new(&self.rules);
        scanner.set_timeout(SCAN_TIMEOUT);
        let results = scanner
            .scan(data)
            .map_err(|e| RulesError::Scan(e.to_string()))?;
        Ok(results.matching_rules().map(|r| detection(&r)).collect())
    }
}

/// A file's namespace: its name without the extension.
fn namespace(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rules".into())
}

fn detection(rule: &yara_x::Rule<'_, '_>) -> Detection {
    let mut risk = None;
    let mut threat_type = None;
    let mut threat_name = None;
    for (key, value) in rule.metadata() {
        let yara_x::MetaValue::String(text) = value else {
            continue;
        };
        let text = text.trim();
        match key {
            "risk_level" => risk = RiskLevel::parse(text),
            "threat_type" if !text.is_empty() => threat_type = Some(text.to_string()),
            "threat_name" if !text.is_empty() => threat_name = Some(text.to_string()),
            _ => {}
        }
    }
    Detection {
        rule: format!("{}.{}", rule.namespace(), rule.identifier()),
        risk: risk.unwrap_or(DEFAULT_RISK),
        threat_type,
        threat_name: threat_name.unwrap_or_else(|| rule.identifier().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

    #[test]
    fn the_shipped_rule_finds_eicar_in_a_page_and_nothing_in_a_plain_one() {
        let (rules, problems) = Rules::load(None).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let page = format!("<html><body><pre>{EICAR}</pre></body></html>");
        let found = rules.scan(page.as_bytes()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].risk, RiskLevel::High);
        assert_eq!(found[0].threat_name, "EICAR-Test-File");
        assert_eq!(found[0].threat_type.as_deref(), Some("Test file"));
        assert!(rules.scan(b"<html>hello</html>").unwrap().is_empty());
        assert_eq!(Verdict::of(&[]).risk, RiskLevel::NoRisk);
    }

    #[test]
    fn a_directory_adds_rules_and_a_broken_file_is_named_and_left_out() {
        let dir = tempfile::tempdir().unwrap();
        // The same rule name as in another file: each file is a namespace.
        std::fs::write(
            dir.path().join("a.yar"),
            "rule Marker { meta: threat_name = \"Marker-A\" risk_level = \"low\" strings: $m = \"rephub-marker\" condition: $m }",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.yara"),
            "rule Marker { meta: risk_level = \"nonsense\" strings: $m = \"rephub-marker\" condition: $m }",
        )
        .unwrap();
        std::fs::write(dir.path().join("broken.yar"), "rule { condition: }").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a rule").unwrap();
        let (rules, problems) = Rules::load(Some(dir.path())).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("broken.yar"), "{problems:?}");
        assert_eq!(rules.files(), 3);
        let found = rules.scan(b"..rephub-marker..").unwrap();
        let v = Verdict::of(&found);
        assert_eq!(found.len(), 2);
        // An unreadable risk level counts as the default.
        assert_eq!(v.risk, DEFAULT_RISK);
        assert_eq!(v.detection_names, vec!["Marker-A", "Marker"]);
        assert!(Rules::load(Some(&dir.path().join("missing"))).is_err());
    }

    #[test]
    fn risk_levels_read_in_the_spellings_people_write() {
        for (s, r) in [
            ("high", RiskLevel::High),
            ("No risk", RiskLevel::NoRisk),
            ("noRisk", RiskLevel::NoRisk),
            ("MEDIUM", RiskLevel::Medium),
            ("low", RiskLevel::Low),
        ] {
            assert_eq!(RiskLevel::parse(s), Some(r), "{s}");
        }
        assert_eq!(RiskLevel::parse("severe"), None);
    }
}
