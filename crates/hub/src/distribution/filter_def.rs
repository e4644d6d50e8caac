//! A reputation filter as the API takes it and the store keeps it (JSON), and its compilation into
//! the model's [`Filter`].

use serde::{Deserialize, Serialize};

use rephub_model::{ActionSet, Catalog, Filter, FilterError, Kind};

/// A filter as the API and the store write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterDef {
    #[serde(default = "yes")]
    pub(crate) enabled: bool,
    #[serde(default)]
    pub(crate) precedence: i64,
    pub(crate) action: String,
    #[serde(default)]
    pub(crate) kinds: Vec<String>,
    #[serde(default)]
    pub(crate) criteria: Vec<String>,
}

fn yes() -> bool {
    true
}

impl FilterDef {
    pub(crate) fn build(
        &self,
        catalog: &Catalog,
        id: i64,
        name: &str,
    ) -> Result<Filter, FilterError> {
        let action: ActionSet = self.action.parse().map_err(|reason| FilterError {
            field: "action",
            reason,
        })?;
        let mut kinds = Vec::new();
        for (i, k) in self.kinds.iter().enumerate() {
            kinds.push(k.parse::<Kind>().map_err(|e| FilterError {
                field: "kinds",
                reason: format!("[{i}] {e}"),
            })?);
        }
        Filter::new(
            catalog,
            id,
            name,
            self.enabled,
            self.precedence,
            action,
            kinds,
            self.criteria.clone(),
        )
    }
}
