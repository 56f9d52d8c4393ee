//! The one list of a pipeline's stages.

/// The stages of every pipeline, in the order a job goes through them. This is the one list
/// of them: their names are the `stage` metric label and log field, and the supervisor
/// spawns them in the reverse order (downstream first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Ingest,
    Render,
    Ocr,
    Assemble,
    Summarize,
    Save,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Ingest,
        Stage::Render,
        Stage::Ocr,
        Stage::Assemble,
        Stage::Summarize,
        Stage::Save,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Render => "render",
            Stage::Ocr => "ocr",
            Stage::Assemble => "assemble",
            Stage::Summarize => "summarize",
            Stage::Save => "save",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
