//! The job service: how documents become jobs ([`intake`]), what the process knows of its jobs
//! ([`jobs`], the registry), and what survives a restart ([`journal`]). The HTTP edge and
//! `pagemill run` call it; neither holds domain policy of its own.

pub mod intake;
pub mod jobs;
pub mod journal;
pub mod lookup;
