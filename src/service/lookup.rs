//! Finding jobs: the registry knows the jobs of this process, the job store every job ever
//! accepted. Lookups try the registry first and fall back to the journal, so a job submitted
//! before a restart still has a status, a place in listings and its result.

use std::path::PathBuf;

use crate::service::intake::{Intake, IntakeError};
use crate::service::jobs::JobStatus;
use crate::service::journal::ListFilter;
use crate::service::keys::Caller;

impl Intake {
    /// A job's status from the registry, else from the journal (jobs of an earlier run).
    pub async fn status(&self, id: &str) -> Option<JobStatus> {
        self.lookup(id).await.ok().flatten()
    }

    /// [`Intake::status`], saying when the job store cannot be reached (a cluster's servers
    /// are down) rather than answering that the job is unknown.
    async fn lookup(&self, id: &str) -> Result<Option<JobStatus>, IntakeError> {
        // In a cluster the store has every job's status, kept up by the node running it; this
        // node may run only a range of it.
        if !self.is_clustered()
            && let Some(status) = self.jobs.get(id)
        {
            return Ok(Some(status));
        }
        match self.store.status(id).await {
            Ok(None) => Ok(self.jobs.get(id)),
            Ok(status) => Ok(status),
            Err(e) if e.is_unavailable() => Err(IntakeError::ClusterUnavailable {
                reason: format!("cannot read job {id}: {e}"),
                retry_after_secs: crate::service::intake::STORE_UNAVAILABLE_RETRY_AFTER_SECS,
            }),
            Err(e) => {
                tracing::warn!(job_id = id, error = %e, "cannot read a job from the job store");
                Ok(None)
            }
        }
    }

    /// A job's status, if `caller` may see it: another tenant's job is as unknown as one that
    /// does not exist. An error when the job store cannot be reached.
    pub async fn status_for(
        &self,
        id: &str,
        caller: &Caller,
    ) -> Result<Option<JobStatus>, IntakeError> {
        Ok(self
            .lookup(id)
            .await?
            .filter(|s| caller.sees(s.tenant.as_deref())))
    }

    /// Jobs from the journal matching `filter`, oldest first, each with its live status when
    /// this process runs it.
    pub async fn list(&self, filter: ListFilter) -> Result<Vec<JobStatus>, String> {
        let jobs = self.store.list(filter).await.map_err(|e| e.to_string())?;
        Ok(jobs
            .iter()
            .map(|j| {
                self.jobs
                    .get(&j.id)
                    .filter(|_| !self.is_clustered())
                    .unwrap_or_else(|| j.status())
            })
            .collect())
    }

    /// Where a finished job's result was written.
    pub async fn result_path(&self, id: &str) -> Option<PathBuf> {
        if let Some(path) = self.jobs.result_path(id) {
            return Some(path);
        }
        let job = self.store.get(id).await.ok().flatten()?;
        job.result_path.map(PathBuf::from)
    }
}

impl Intake {
    /// A finished job's result record: the file this node wrote, else from the job store
    /// (in a cluster, the node that ran the job may be another).
    pub async fn result(&self, id: &str) -> Option<Vec<u8>> {
        if let Some(path) = self.jobs.result_path(id)
            && let Ok(body) = tokio::fs::read(path).await
        {
            return Some(body);
        }
        self.store.result(id).await.ok().flatten()
    }
}
