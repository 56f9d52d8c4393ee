//! The job service: how documents become jobs ([`intake`]), what the process knows of its jobs
//! ([`jobs`], the registry), what survives a restart ([`store`], kept by the SQLite
//! [`journal`]), where jobs come from when nobody pushes them ([`source`]), and where accepted
//! jobs go when a cluster shares them ([`queue`], kept in NATS JetStream by [`cluster`]). The
//! HTTP edge and `pagemill run` call it; neither holds domain policy of its own.

pub mod cluster;
pub mod intake;
pub mod jobs;
pub mod journal;
pub mod keys;
pub mod lookup;
pub mod queue;
pub mod retention;
pub mod source;
pub mod store;
