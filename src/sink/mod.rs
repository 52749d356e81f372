//! The sink's stages, each testable alone (the way Vector splits its Elasticsearch sink):
//! [`journal`] (disk, the results log; its fsyncs run in order on a [`syncer`] thread),
//! [`checkpoint`], [`reader`], [`encoder`] (result → bulk line with its `_id`), [`bulk`] (the
//! call), [`retry`] (classification), wired by [`shipper`]; [`es_client`] builds the official
//! client from configuration; [`lock`] keeps the journal directory to one process; [`disk`]
//! has the write-fault hook and the retry backoff of disk errors.

pub mod bulk;
pub mod checkpoint;
pub mod dead_letter;
pub mod disk;
pub mod encoder;
pub mod es_client;
pub mod journal;
pub mod lock;
pub mod reader;
pub mod retry;
pub mod shipper;
pub mod syncer;
