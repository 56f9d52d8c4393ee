//! The hard limits a pipeline cannot exceed, and the process-wide defaults, named. The default
//! of each pipeline key sits beside its field in `src/config/<section>.rs`.

use std::time::Duration;

/// No pipeline may allow more pages than this.
pub const HARD_MAX_PAGES: u32 = 100_000;
/// No pipeline may allow bigger pages than this (hayro renders at most 65535 px per side).
pub const HARD_MAX_PAGE_PIXELS: u64 = 1_000_000_000;
/// Longest side in pixels that the PDF renderer supports.
pub const MAX_RENDER_SIDE_PX: u64 = u16::MAX as u64;

/// The range of rendering resolutions a pipeline may ask for.
pub const MIN_DPI: u32 = 50;
pub const MAX_DPI: u32 = 1200;
/// Resolution assumed for an image whose metadata is missing or not credible.
pub const FALLBACK_IMAGE_DPI: u32 = 300;
/// Image resolutions outside this range are treated as missing.
pub const CREDIBLE_DPI: std::ops::RangeInclusive<u32> = 70..=2400;

/// The largest x-height a pipeline may ask for.
pub const MAX_TARGET_X_HEIGHT_PX: u32 = 200;
/// Largest capacity of one edge between stages.
pub const MAX_EDGE_CAPACITY: usize = 10_000;

/// How long a stopping daemon waits for accepted jobs to finish.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Highest `concurrency.max` a pipeline may set.
pub const MAX_LLM_CONCURRENCY: usize = 1024;
