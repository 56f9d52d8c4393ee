//! Where jobs come from when nobody pushes them.
//!
//! The HTTP edge pushes each upload into intake itself. A source is pulled instead: `pagemill
//! run` takes the files named on its command line ([`FileSource`]), and a cluster node takes
//! jobs from a queue. [`Intake::drain`] submits every document a source offers through the same
//! admission, typing and journal as an upload, waiting for admission room rather than refusing,
//! and reports what became of each.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc::UnboundedSender;

use crate::service::intake::{Accepted, Intake, IntakeError};

/// Longest wait for admission room before asking again, whatever the suggested retry time.
const MAX_ROOM_WAIT: Duration = Duration::from_secs(1);

/// A document a source offers, lying on this machine.
#[derive(Debug, Clone)]
pub struct SourcedDocument {
    /// The name the job is known by (a file name).
    pub name: String,
    pub path: PathBuf,
}

/// Documents to make jobs of, one at a time.
#[async_trait]
pub trait JobSource: Send {
    /// The next document, or `None` when the source has no more.
    async fn next(&mut self) -> Option<SourcedDocument>;
}

/// The files of a batch, in order, read where they lie.
pub struct FileSource {
    files: std::vec::IntoIter<PathBuf>,
}

impl FileSource {
    pub fn new(files: Vec<PathBuf>) -> FileSource {
        FileSource {
            files: files.into_iter(),
        }
    }
}

#[async_trait]
impl JobSource for FileSource {
    async fn next(&mut self) -> Option<SourcedDocument> {
        let path = self.files.next()?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Some(SourcedDocument { name, path })
    }
}

/// What became of the `index`-th document of a source: the id of its job, or why it was
/// refused.
#[derive(Debug)]
pub struct Taken {
    pub index: usize,
    pub name: String,
    pub job: Result<String, IntakeError>,
}

impl Intake {
    /// Submits every document `source` offers to `pipeline`, in order, sending what became of
    /// each to `taken`. A full admission budget is waited out (until a job's status changes,
    /// or the suggested retry time); every other refusal is reported and the next document
    /// taken.
    pub async fn drain(
        self: Arc<Self>,
        pipeline: String,
        mut source: impl JobSource,
        taken: UnboundedSender<Taken>,
    ) {
        let mut index = 0;
        while let Some(document) = source.next().await {
            let job = self.take(&pipeline, &document).await;
            let name = document.name;
            if taken.send(Taken { index, name, job }).is_err() {
                return;
            }
            index += 1;
        }
    }

    async fn take(
        self: &Arc<Self>,
        pipeline: &str,
        document: &SourcedDocument,
    ) -> Result<String, IntakeError> {
        let bytes = tokio::fs::metadata(&document.path)
            .await
            .map_err(|e| IntakeError::BadBody(format!("{}: {e}", document.path.display())))?
            .len();
        let admission = loop {
            let room = self.jobs.changed().notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.admit(pipeline, Some(bytes), None, None) {
                Err(IntakeError::AdmissionFull {
                    retry_after_secs, ..
                }) => {
                    let wait = Duration::from_secs(retry_after_secs).min(MAX_ROOM_WAIT);
                    let _ = tokio::time::timeout(wait, room).await;
                }
                admitted => break admitted?,
            }
        };
        let received = admission.in_place(&document.path).await?;
        match admission.accept(received, document.name.clone()).await? {
            Accepted::New(status) => Ok(status.id),
            Accepted::Existing { id, .. } => Ok(id),
        }
    }
}
