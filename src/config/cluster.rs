//! The `cluster:` section: how a pipeline's big documents are shared by the nodes of a
//! cluster (`pagemill serve --cluster`). One machine ignores it.

use serde::{Deserialize, Serialize};

/// Pages per range of a split document, unless a pipeline says otherwise.
pub const DEFAULT_SPLIT_PAGES: u32 = 8;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// A document with more pages than this is split into ranges of this many pages, which
    /// any node may render and OCR; 0: never split.
    #[serde(default)]
    pub split_pages: Option<u32>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClusterConfig {
    pub split_pages: u32,
}

impl RawCluster {
    pub fn validate(&self) -> ClusterConfig {
        ClusterConfig {
            split_pages: self.split_pages.unwrap_or(DEFAULT_SPLIT_PAGES),
        }
    }
}
