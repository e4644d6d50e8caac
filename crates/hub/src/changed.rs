//! What one hub replica announces to the others when it changes it (see `replicas.rs`).

/// What a replica announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Changed {
    Devices,
    Keys,
    /// Profiles or the filters they use.
    Profiles,
    Certificates,
    Catalog,
}

impl Changed {
    pub(crate) const ALL: [Changed; 5] = [
        Changed::Catalog,
        Changed::Profiles,
        Changed::Devices,
        Changed::Keys,
        Changed::Certificates,
    ];

    pub(crate) fn word(self) -> &'static str {
        match self {
            Changed::Devices => "devices",
            Changed::Keys => "keys",
            Changed::Profiles => "profiles",
            Changed::Certificates => "certificates",
            Changed::Catalog => "catalog",
        }
    }

    pub(crate) fn from_word(word: &str) -> Option<Changed> {
        Changed::ALL.into_iter().find(|c| c.word() == word)
    }
}
