//! The persisted metadata log.
use crate::controller::MetadataRecord;
use crate::Result;

/// Placeholder.
#[derive(Debug)]
pub(crate) struct MetadataLog;
impl MetadataLog {
    pub(crate) fn open(dir: &std::path::Path) -> Result<(MetadataLog, Vec<MetadataRecord>)> {
        let _ = dir;
        todo!()
    }
    pub(crate) fn append(&mut self, records: &[MetadataRecord]) -> Result<()> {
        let _ = records;
        todo!()
    }
}
