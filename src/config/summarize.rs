//! The `summarize:` section: the local summarizer, or an LLM server and how to treat it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::check::Checker;
use crate::limits;

/// Where `engine: llm` sends requests unless the pipeline says otherwise.
pub const DEFAULT_LLM_BASE_URL: &str = "http://127.0.0.1:8000/v1";
/// LLM requests in flight at first, before the limit adapts to the server.
pub const DEFAULT_LLM_CONCURRENCY_INITIAL: usize = 2;
/// Most LLM requests in flight, however well the server answers.
pub const DEFAULT_LLM_CONCURRENCY_MAX: usize = 16;
/// Prompt of the structured extraction.
pub const DEFAULT_LLM_EXTRACT_PROMPT: &str = "Extract the fields described by the JSON schema from the following document, in {language}. Answer with one JSON object. Document name: {name}.\n\n{text}";
/// The model asked for unless the pipeline says otherwise.
pub const DEFAULT_LLM_MODEL: &str = "default";
/// The prompt unless the pipeline gives one.
pub const DEFAULT_LLM_PROMPT: &str = "Summarize the following document in a few sentences, in {language}. Document name: {name}.\n\n{text}";
/// Sentences in an extractive summary.
pub const DEFAULT_SUMMARY_SENTENCES: usize = 5;

/// Defaults of the `summarize.llm` keys a pipeline leaves out (`pipelines/default.yaml` says
/// the same; a test keeps them in agreement).
pub const DEFAULT_LLM_MAX_TOKENS: u32 = 400;
pub const DEFAULT_LLM_TEMPERATURE: f32 = 0.2;
pub const DEFAULT_LLM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_LLM_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_LLM_MAX_RETRIES: u32 = 4;
pub const DEFAULT_LLM_MAX_INPUT_CHARS: usize = 12_000;
pub const DEFAULT_LLM_CIRCUIT_FAILURES: u32 = 5;
pub const DEFAULT_LLM_CIRCUIT_COOLDOWN: Duration = Duration::from_secs(30);
/// 0: no ceiling.
pub const DEFAULT_LLM_MAX_REQUESTS_PER_MINUTE: u32 = 0;
/// 0: no ceiling.
pub const DEFAULT_LLM_MAX_TOKENS_PER_MINUTE: u32 = 0;

/// The summarizer engine a pipeline uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SummarizeEngineKind {
    /// Local extractive summary: the highest-scoring sentences, no network.
    Extractive,
    /// An LLM server speaking the OpenAI-compatible chat completions API.
    Llm,
}

/// What the summarize stage does when the LLM cannot be reached or keeps failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmFallback {
    /// Summarize locally instead; the result records `extractive` as the engine.
    Extractive,
    /// No local summary: after a failure that may pass (unreachable, timeouts, 429, 5xx, the
    /// circuit open) the document waits in the stage, on its edge credit, and tries again
    /// until the job's deadline (`limits.max_job_time`), then the job fails
    /// `llm_unavailable`; after any other failure the job fails at once (`summary_failed`).
    None,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSummarize {
    /// Summarizer engine: `extractive` or `llm`.
    #[serde(default)]
    pub engine: Option<SummarizeEngineKind>,
    /// Most sentences in an extractive summary.
    #[serde(default)]
    pub max_sentences: Option<Spanned<usize>>,
    /// The LLM server, for `engine: llm`.
    #[serde(default)]
    pub llm: RawLlm,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLlm {
    /// Base URL of the OpenAI-compatible API, e.g. "http://127.0.0.1:8000/v1".
    #[serde(default)]
    pub base_url: Option<Spanned<String>>,
    /// Model name sent with each request.
    #[serde(default)]
    pub model: Option<String>,
    /// Name of the environment variable holding the API key (the key never goes in YAML).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub max_tokens: Option<Spanned<u32>>,
    #[serde(default)]
    pub temperature: Option<Spanned<f32>>,
    /// Time to connect to the server.
    #[serde(default, with = "humantime_serde::option")]
    pub connect_timeout: Option<Duration>,
    /// Time for one whole request.
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// Retries of a request answered 429 or 5xx, or timed out.
    #[serde(default)]
    pub max_retries: Option<Spanned<u32>>,
    /// Most characters of document text per request; longer documents are summarized in
    /// parts, then the parts' summaries are summarized.
    #[serde(default)]
    pub max_input_chars: Option<Spanned<usize>>,
    /// The prompt, with {text}, {name} and {language} placeholders.
    #[serde(default)]
    pub prompt: Option<Spanned<String>>,
    /// `extractive` or `none`: what to do when the LLM keeps failing (summarize locally, or
    /// wait for the server until the job's deadline).
    #[serde(default)]
    pub fallback: Option<LlmFallback>,
    /// Documents in a row the LLM must fail before requests stop for `circuit_cooldown`.
    #[serde(default)]
    pub circuit_failures: Option<Spanned<u32>>,
    /// How long requests stay stopped once the circuit opens; then one is tried again.
    #[serde(default, with = "humantime_serde::option")]
    pub circuit_cooldown: Option<Duration>,
    /// Requests in flight at once, adapted to the server's answers.
    #[serde(default)]
    pub concurrency: RawLlmConcurrency,
    /// Most requests sent per minute (retries count); 0: no ceiling.
    #[serde(default)]
    pub max_requests_per_minute: Option<Spanned<u32>>,
    /// Most tokens per minute, each request counted as its prompt's characters / 4 plus
    /// `max_tokens`; 0: no ceiling.
    #[serde(default)]
    pub max_tokens_per_minute: Option<Spanned<u32>>,
    /// A JSON object extracted from each document, as a JSON Schema describes it.
    #[serde(default)]
    pub extract: RawLlmExtract,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLlmConcurrency {
    /// Requests in flight at first.
    #[serde(default)]
    pub initial: Option<Spanned<usize>>,
    /// Most requests in flight, however well the server answers; `initial = max` fixes it.
    #[serde(default)]
    pub max: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLlmExtract {
    /// JSON Schema of the object; an empty mapping turns extraction off.
    #[serde(default)]
    pub schema: Option<Spanned<serde_json::Value>>,
    /// Name of the schema, sent with it.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// The prompt, with {text}, {name} and {language} placeholders.
    #[serde(default)]
    pub prompt: Option<Spanned<String>>,
    /// Answers asked for per document before giving up on one that matches the schema.
    #[serde(default)]
    pub max_attempts: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SummarizeConfig {
    pub engine: SummarizeEngineKind,
    pub max_sentences: usize,
    pub llm: LlmConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct LlmConfig {
    pub base_url: String,
    pub model: String,
    pub api_key_env: Option<String>,
    pub max_tokens: u32,
    pub temperature: f32,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub max_retries: u32,
    pub max_input_chars: usize,
    pub prompt: String,
    pub fallback: LlmFallback,
    pub circuit_failures: u32,
    #[serde(with = "humantime_serde")]
    pub circuit_cooldown: Duration,
    /// Requests in flight at first, then adapted (AIMD) between 1 and `concurrency_max`.
    pub concurrency_initial: usize,
    pub concurrency_max: usize,
    /// Ceilings per minute, 0 for none.
    pub max_requests_per_minute: u32,
    pub max_tokens_per_minute: u32,
    /// Structured extraction, when a schema is set.
    pub extract: Option<ExtractConfig>,
}

/// A JSON object asked of the LLM for each document, checked against a JSON Schema.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractConfig {
    pub name: String,
    /// A valid JSON Schema (checked when the pipeline is loaded).
    pub schema: serde_json::Value,
    pub prompt: String,
    pub max_attempts: u32,
}

/// Checks `summarize:`.
pub(crate) fn validate(c: &mut Checker<'_>, raw: &RawSummarize) -> SummarizeConfig {
    let l = &raw.llm;
    let prompt = match &l.prompt {
        Some(p) if !p.value.contains("{text}") => {
            c.push(p, "summarize.llm.prompt must contain {text}".into());
            String::new()
        }
        Some(p) => p.value.clone(),
        None => DEFAULT_LLM_PROMPT.to_string(),
    };
    let base_url = match &l.base_url {
        Some(u) if !(u.value.starts_with("http://") || u.value.starts_with("https://")) => {
            c.push(
                u,
                format!("summarize.llm.base_url {:?} is not an http(s) URL", u.value),
            );
            String::new()
        }
        Some(u) => u.value.trim_end_matches('/').to_string(),
        None => DEFAULT_LLM_BASE_URL.to_string(),
    };
    let llm = LlmConfig {
        base_url,
        model: l.model.clone().unwrap_or_else(|| DEFAULT_LLM_MODEL.into()),
        api_key_env: l.api_key_env.clone().filter(|v| !v.is_empty()),
        max_tokens: c.in_range(
            &l.max_tokens,
            "summarize.llm.max_tokens",
            DEFAULT_LLM_MAX_TOKENS,
            1,
            100_000,
        ),
        temperature: c.in_range(
            &l.temperature,
            "summarize.llm.temperature",
            DEFAULT_LLM_TEMPERATURE,
            0.0,
            2.0,
        ),
        connect_timeout: l.connect_timeout.unwrap_or(DEFAULT_LLM_CONNECT_TIMEOUT),
        timeout: l.timeout.unwrap_or(DEFAULT_LLM_TIMEOUT),
        max_retries: c.in_range(
            &l.max_retries,
            "summarize.llm.max_retries",
            DEFAULT_LLM_MAX_RETRIES,
            0,
            20,
        ),
        max_input_chars: c.in_range(
            &l.max_input_chars,
            "summarize.llm.max_input_chars",
            DEFAULT_LLM_MAX_INPUT_CHARS,
            200,
            10_000_000,
        ),
        prompt,
        fallback: l.fallback.unwrap_or(LlmFallback::Extractive),
        circuit_failures: c.in_range(
            &l.circuit_failures,
            "summarize.llm.circuit_failures",
            DEFAULT_LLM_CIRCUIT_FAILURES,
            1,
            1000,
        ),
        circuit_cooldown: l.circuit_cooldown.unwrap_or(DEFAULT_LLM_CIRCUIT_COOLDOWN),
        concurrency_initial: c.in_range(
            &l.concurrency.initial,
            "summarize.llm.concurrency.initial",
            DEFAULT_LLM_CONCURRENCY_INITIAL,
            1,
            limits::MAX_LLM_CONCURRENCY,
        ),
        concurrency_max: c.in_range(
            &l.concurrency.max,
            "summarize.llm.concurrency.max",
            DEFAULT_LLM_CONCURRENCY_MAX,
            1,
            limits::MAX_LLM_CONCURRENCY,
        ),
        max_requests_per_minute: c.in_range(
            &l.max_requests_per_minute,
            "summarize.llm.max_requests_per_minute",
            DEFAULT_LLM_MAX_REQUESTS_PER_MINUTE,
            0,
            10_000_000,
        ),
        max_tokens_per_minute: c.in_range(
            &l.max_tokens_per_minute,
            "summarize.llm.max_tokens_per_minute",
            DEFAULT_LLM_MAX_TOKENS_PER_MINUTE,
            0,
            1_000_000_000,
        ),
        extract: validate_extract(c, &l.extract),
    };
    if let (Some(i), Some(m)) = (&l.concurrency.initial, &l.concurrency.max)
        && i.value > m.value
    {
        c.push(
            i,
            format!(
                "summarize.llm.concurrency.initial ({}) must not be above max ({})",
                i.value, m.value
            ),
        );
    }
    SummarizeConfig {
        llm,
        engine: raw.engine.unwrap_or(SummarizeEngineKind::Extractive),
        max_sentences: c.in_range(
            &raw.max_sentences,
            "summarize.max_sentences",
            DEFAULT_SUMMARY_SENTENCES,
            1,
            100,
        ),
    }
}

/// Checks the `extract` section: off with an empty schema, else a schema that compiles.
fn validate_extract(c: &mut Checker<'_>, x: &RawLlmExtract) -> Option<ExtractConfig> {
    let schema = x.schema.as_ref()?;
    match &schema.value {
        serde_json::Value::Object(o) if o.is_empty() => return None,
        serde_json::Value::Object(_) => {}
        _ => {
            c.push(
                schema,
                "summarize.llm.extract.schema must be a mapping (a JSON Schema)".into(),
            );
            return None;
        }
    }
    if let Err(e) = jsonschema::validator_for(&schema.value) {
        c.push(
            schema,
            format!("summarize.llm.extract.schema is not a valid JSON Schema: {e}"),
        );
        return None;
    }
    let prompt = match &x.prompt {
        Some(p) if !p.value.contains("{text}") => {
            c.push(p, "summarize.llm.extract.prompt must contain {text}".into());
            String::new()
        }
        Some(p) => p.value.clone(),
        None => DEFAULT_LLM_EXTRACT_PROMPT.to_string(),
    };
    let name = match &x.name {
        Some(n) if !is_valid_schema_name(&n.value) => {
            c.push(
                n,
                format!(
                    "summarize.llm.extract.name {:?} must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'",
                    n.value
                ),
            );
            String::new()
        }
        Some(n) => n.value.clone(),
        None => "document".to_string(),
    };
    Some(ExtractConfig {
        name,
        schema: schema.value.clone(),
        prompt,
        max_attempts: c.in_range(
            &x.max_attempts,
            "summarize.llm.extract.max_attempts",
            3,
            1,
            20,
        ),
    })
}

/// Names the OpenAI API accepts for a `json_schema` response format.
fn is_valid_schema_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
