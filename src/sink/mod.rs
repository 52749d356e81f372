//! The sink's stages, each testable alone: the journal (disk), and — when Elasticsearch is
//! configured — checkpoint, encoder, bulk call and retry classification, wired by the shipper.

pub mod journal;
