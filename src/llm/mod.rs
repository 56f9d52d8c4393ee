//! The LLM client pagemill's summarize stage uses, shared by every pipeline that names the
//! same server: the OpenAI-compatible chat client with its retries and cache ([`client`]),
//! flow control per server (circuit breaker, rate ceilings: [`endpoint`]), and the adaptive
//! concurrency limit ([`limiter`]). It is not a stage: it knows nothing of jobs or edges.

pub mod client;
pub mod endpoint;
pub mod error;
pub mod limiter;
