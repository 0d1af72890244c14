//! Errors of the ScyllaDB store, each saying whether a retry can help.

use scylla::errors::{DbError, ExecutionError, NewSessionError, PrepareError, RequestAttemptError};

/// Boxed cause of a row that could not be read back.
pub type DecodeSource = Box<dyn std::error::Error + Send + Sync>;

/// Why a store operation failed. [`StoreError::is_transient`] tells a consumer whether to back
/// off and retry (and keep its offsets) or to stop and report.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No session could be opened; transient when nodes were unreachable, permanent when the
    /// configuration is wrong.
    #[error("cannot connect to the CQL cluster: {0}")]
    Connect(Box<NewSessionError>),
    /// A statement could not be prepared.
    #[error("cannot prepare a statement: {0}")]
    Prepare(Box<PrepareError>),
    /// A statement failed; timeouts and unavailable replicas are transient.
    #[error("a statement failed: {0}")]
    Execute(Box<ExecutionError>),
    /// A row did not have the expected shape; permanent (schema and code disagree).
    #[error("cannot read {what}: {source}")]
    Decode {
        /// What was being read.
        what: &'static str,
        /// The cause.
        source: DecodeSource,
    },
    /// A keyspace, projection name or generation is not usable; permanent.
    #[error("invalid {kind} {value:?}: {expected}")]
    InvalidName {
        /// What was refused.
        kind: &'static str,
        /// The refused value.
        value: String,
        /// The accepted shape.
        expected: &'static str,
    },
    /// A number does not fit the column or the row type; permanent.
    #[error("{field} = {value} is out of range")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value, as text.
        value: String,
    },
    /// An applied migration differs from the one this build would apply; permanent: released
    /// migrations are never edited, a new one is added instead.
    #[error(
        "migration {scope}/{id} ({name}) was applied with checksum {applied:#x}, this build has {expected:#x}"
    )]
    MigrationChanged {
        /// `global` or the generation (`g1`, `g2`, ...).
        scope: String,
        /// Migration number.
        id: i32,
        /// Migration name.
        name: &'static str,
        /// Checksum recorded when it was applied.
        applied: i64,
        /// Checksum of this build's migration.
        expected: i64,
    },
    /// The keyspace exists with another replication than the configuration asks for;
    /// permanent: an operator alters the keyspace (then repairs) or changes the setting.
    #[error(
        "keyspace {keyspace} is replicated as {found}, the configuration asks for {wanted}: \
         ALTER KEYSPACE {keyspace} WITH replication = {wanted} (then run a full repair), or \
         change store.replication_factor / store.datacenters"
    )]
    ReplicationDiffers {
        /// The keyspace.
        keyspace: String,
        /// Its replication, as the cluster reports it.
        found: String,
        /// The replication configured, as CQL.
        wanted: String,
    },
    /// A generation whose tables were never created cannot be activated; permanent.
    #[error("generation {generation} has no tables yet; connect to it before activating it")]
    GenerationNotReady {
        /// The refused generation.
        generation: u32,
    },
}

// Driver errors are large; boxing them keeps every `Result` of the store small.
impl From<NewSessionError> for StoreError {
    fn from(e: NewSessionError) -> Self {
        StoreError::Connect(Box::new(e))
    }
}

impl From<PrepareError> for StoreError {
    fn from(e: PrepareError) -> Self {
        StoreError::Prepare(Box::new(e))
    }
}

impl From<ExecutionError> for StoreError {
    fn from(e: ExecutionError) -> Self {
        StoreError::Execute(Box::new(e))
    }
}

impl StoreError {
    /// True when retrying the same operation later can succeed (nodes down or overloaded,
    /// timeouts, broken connections); false for errors that will repeat.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect(e) => !matches!(
                **e,
                NewSessionError::EmptyKnownNodesList | NewSessionError::IllegalConfig(_)
            ),
            StoreError::Prepare(e) => prepare_is_transient(e),
            StoreError::Execute(e) => execution_is_transient(e),
            StoreError::Decode { .. }
            | StoreError::InvalidName { .. }
            | StoreError::OutOfRange { .. }
            | StoreError::MigrationChanged { .. }
            | StoreError::ReplicationDiffers { .. }
            | StoreError::GenerationNotReady { .. } => false,
        }
    }

    pub(crate) fn decode(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Decode {
            what,
            source: Box::new(source),
        }
    }
}

fn prepare_is_transient(e: &PrepareError) -> bool {
    match e {
        PrepareError::ConnectionPoolError(_) => true,
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_is_transient(first_attempt),
        _ => false,
    }
}

fn execution_is_transient(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::EmptyPlan
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_)
        | ExecutionError::UseKeyspaceError(_)
        | ExecutionError::SchemaAgreementError(_)
        | ExecutionError::MetadataError(_) => true,
        ExecutionError::PrepareError(e) => prepare_is_transient(e),
        ExecutionError::LastAttemptError(e) => attempt_is_transient(e),
        _ => false,
    }
}

fn attempt_is_transient(e: &RequestAttemptError) -> bool {
    match e {
        RequestAttemptError::UnableToAllocStreamId
        | RequestAttemptError::BrokenConnectionError(_) => true,
        RequestAttemptError::DbError(db, _) => matches!(
            db,
            DbError::Unavailable { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::ReadTimeout { .. }
                | DbError::WriteTimeout { .. }
                | DbError::ReadFailure { .. }
                | DbError::WriteFailure { .. }
                | DbError::TruncateError
                | DbError::RateLimitReached { .. }
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timeouts_and_unavailable_replicas_are_transient() {
        let timeout = StoreError::from(ExecutionError::RequestTimeout(Duration::from_secs(1)));
        assert!(timeout.is_transient());
        let unavailable = StoreError::from(ExecutionError::LastAttemptError(
            RequestAttemptError::DbError(
                DbError::Unavailable {
                    consistency: scylla::frame::types::Consistency::One,
                    required: 1,
                    alive: 0,
                },
                "down".into(),
            ),
        ));
        assert!(unavailable.is_transient());
        assert!(StoreError::from(ExecutionError::EmptyPlan).is_transient());
    }

    #[test]
    fn bad_statements_and_bad_input_are_permanent() {
        let syntax = StoreError::from(ExecutionError::LastAttemptError(
            RequestAttemptError::DbError(DbError::SyntaxError, "bad".into()),
        ));
        assert!(!syntax.is_transient());
        assert!(!StoreError::from(NewSessionError::EmptyKnownNodesList).is_transient());
        let name = StoreError::InvalidName {
            kind: "keyspace",
            value: "a-b".into(),
            expected: "x",
        };
        assert!(!name.is_transient());
    }
}
