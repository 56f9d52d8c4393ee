//! Ingest stage: reads a submitted file and opens it; hashes it and detects its type unless
//! intake already did (an upload is hashed and typed while it streams to the spool).
//!
//! The pure work is [`ingest_bytes`]; the actor reads the file (I/O on tokio), runs the
//! parsing on the CPU pool and passes the opened document, or the reason it cannot be opened,
//! to render. Emits stage received/sent/errors metrics with `stage="ingest"`.

use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use sha2::{Digest, Sha256};

use crate::config::LimitsConfig;
use crate::model::document::{Document, open_document_as};
use crate::model::error::JobError;
use crate::model::media_type::detect_media_type;
use crate::model::result::SourceRecord;
use crate::pipeline::context::StageContext;
use crate::pipeline::edge::Downstream;
use crate::pipeline::events::{Discard, Discarded, DocumentOpened, Received};
use crate::pipeline::job::{JobInfo, SourceInfo};
use crate::pipeline::messages::{
    IngestMsg, JobRequest, KnownSource, RenderMsg, RenderWork, Submission,
};
use crate::pipeline::progress::Progress;
use crate::pipeline::stage::Stage;
use crate::runtime::pool::Lane;

/// Hashes, types and opens a document's bytes, checking the pipeline's limits. What `known`
/// already says (from intake) is not worked out again.
pub fn ingest_bytes(
    name: &str,
    bytes: Vec<u8>,
    known: Option<&KnownSource>,
    limits: &LimitsConfig,
) -> (SourceRecord, Result<Document, JobError>) {
    let media_type = match known {
        Some(k) => Ok(k.media_type),
        None => detect_media_type(&bytes),
    };
    let record = SourceRecord {
        name: name.to_string(),
        sha256: match known {
            Some(k) => k.sha256.clone(),
            None => format!("{:x}", Sha256::digest(&bytes)),
        },
        bytes: bytes.len() as u64,
        media_type: media_type.as_ref().ok().map(|t| t.as_str().to_string()),
        tenant: None,
    };
    let document = media_type.and_then(|t| open_document_as(bytes, t, limits));
    (record, document)
}

pub struct IngestStage;

pub struct IngestState {
    ctx: StageContext,
    render: Downstream<RenderMsg>,
}

impl Actor for IngestStage {
    type Msg = IngestMsg;
    type State = IngestState;
    type Arguments = (StageContext, Downstream<RenderMsg>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (ctx, render): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(IngestState { ctx, render })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let IngestMsg::Job(submission, credit) = msg;
        let Submission {
            request,
            submitted,
            cancel,
            span,
            superseded,
            attempt,
            fail,
        } = submission;
        let ctx = &state.ctx;
        ctx.recovery.handling(Stage::Ingest, Some(&request.id));
        Received {
            stage: Stage::Ingest,
            items: 1,
        }
        .emit(ctx);
        if superseded.load(std::sync::atomic::Ordering::Relaxed) {
            Discarded {
                job_id: &request.id,
                stage: Stage::Ingest,
                items: 1,
                why: Discard::Superseded,
            }
            .emit(ctx);
            return Ok(());
        }
        crate::pipeline::faults::inject(Stage::Ingest, &request.name, 0);
        let started = Instant::now();
        let mut info = JobInfo::new(
            request.id.clone(),
            ctx.pipeline.name.as_str().into(),
            submitted,
            cancel,
            &span,
        );
        info.superseded = superseded;
        info.attempt = attempt;
        info.document = request.name.as_str().into();
        info.pages = request.pages;
        let info = Arc::new(info);
        ctx.jobs.started(&info.id);
        let limits = ctx.pipeline.limits;
        let read = if let Some(error) = fail {
            Err(error)
        } else if info.is_cancelled() {
            Err(JobError::Cancelled)
        } else {
            read_bounded(&request.path, limits.max_document_bytes).await
        };
        let (record, document) = match read {
            Ok(bytes) => {
                Progress::add(&ctx.progress.documents_loaded, 1);
                let name = request.name.clone();
                let known = request.known.clone();
                ctx.pool
                    .run_in(Lane::Short, move || {
                        ingest_bytes(&name, bytes, known.as_ref(), &limits)
                    })
                    .await
                    .map(|(mut record, document)| {
                        record.tenant = request.tenant.clone();
                        (record, document)
                    })
                    .unwrap_or_else(|e| (unread_source(&request), Err(e)))
            }
            Err(e) => (unread_source(&request), Err(e)),
        };
        DocumentOpened {
            info: &info,
            record: &record,
            document: document.as_ref(),
            seconds: started.elapsed().as_secs_f64(),
        }
        .emit(ctx);
        let source = SourceInfo {
            record,
            ingest_ms: started.elapsed().as_millis() as u64,
        };
        state
            .render
            .send_with(|c| {
                RenderMsg::Document(
                    RenderWork {
                        info,
                        source,
                        document,
                    },
                    c,
                )
            })
            .await;
        drop(credit);
        Ok(())
    }
}

fn unread_source(request: &JobRequest) -> SourceRecord {
    SourceRecord {
        name: request.name.clone(),
        sha256: String::new(),
        bytes: 0,
        media_type: None,
        tenant: request.tenant.clone(),
    }
}

/// Reads a file, refusing it before reading if it is larger than `limit`.
async fn read_bounded(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, JobError> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| JobError::Io(format!("{}: {e}", path.display())))?;
    if meta.len() > limit {
        return Err(JobError::TooLarge {
            bytes: meta.len(),
            limit,
        });
    }
    tokio::fs::read(path)
        .await
        .map_err(|e| JobError::Io(format!("{}: {e}", path.display())))
}
