//! Commands answered 202, known to every edge instance: a caller told "pending" may poll
//! `GET /v1/commands/{id}` on any instance, also after the one that took the command stopped.
//!
//! The instance that answers 202 records, in Redis beside the idempotency keys (and for as long
//! as they live), who sent the command, to which aggregate, and when. When its results reader
//! later sees the answer, it stores that too. Another instance polled for the command finds the
//! record; if the answer is not stored (the first instance stopped before it arrived), it reads
//! the command's results partition from the time the command was sent, bounded, and stores what
//! it finds. Only the sender is told anything about the command.

use std::collections::HashMap;

use redis::Script;
use streamcart_schemas::envelope::CommandResult;
use uuid::Uuid;

use crate::idempotency::{IdempotencyKeys, KeyError, Stored};

/// KEYS[1] the command's record; ARGV[1] the answer. Stores the answer only beside a record of
/// the command (a result alone says nothing of who may read it), keeping the first one.
const STORE_ANSWER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], 'result', ARGV[1])
";

/// What the ledger knows of a command, for its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remembered {
    /// Sent to `aggregate_id` at `sent_at_ms` (UTC milliseconds); no answer stored yet.
    Waiting {
        /// The aggregate the command was sent to.
        aggregate_id: String,
        /// When the edge sent it.
        sent_at_ms: i64,
    },
    /// Its first answer.
    Done(CommandResult),
}

impl IdempotencyKeys {
    fn ledger_key(&self, id: Uuid) -> String {
        format!("{}{}", self.ledger_prefix, id.hyphenated())
    }

    /// Records that `owner` was told 202 for command `id`, sent to `aggregate_id` at
    /// `sent_at_ms`.
    pub async fn remember_pending(
        &self,
        id: Uuid,
        owner: &str,
        aggregate_id: &str,
        sent_at_ms: i64,
    ) -> Result<(), KeyError> {
        let mut connection = self.connection()?;
        let key = self.ledger_key(id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                &key,
                &[
                    ("owner", owner.to_owned()),
                    ("aggregate_id", aggregate_id.to_owned()),
                    ("sent_at_ms", sent_at_ms.to_string()),
                ],
            )
            .ignore()
            .pexpire(&key, self.ttl.as_millis() as i64)
            .ignore();
        self.bounded(pipe.query_async::<()>(&mut connection)).await
    }

    /// Stores `result` beside its command's record, if there is one and it holds no answer
    /// yet; true when stored. A duplicate's answer is never stored: it would hide the first.
    pub async fn remember_result(&self, result: &CommandResult) -> Result<bool, KeyError> {
        let Some(stored) = Stored::of(result) else {
            return Ok(false);
        };
        let text = serde_json::to_string(&stored)
            .map_err(|e| KeyError::Unavailable(format!("encoding an answer: {e}")))?;
        let mut connection = self.connection()?;
        let script = Script::new(STORE_ANSWER);
        let mut call = script.key(self.ledger_key(result.command_id));
        call.arg(text);
        let stored: i64 = self.bounded(call.invoke_async(&mut connection)).await?;
        Ok(stored == 1)
    }

    /// What the ledger knows of command `id`, if `caller` sent it.
    pub async fn remembered(&self, id: Uuid, caller: &str) -> Result<Option<Remembered>, KeyError> {
        let mut connection = self.connection()?;
        let fields: HashMap<String, String> = self
            .bounded(
                redis::cmd("HGETALL")
                    .arg(self.ledger_key(id))
                    .query_async(&mut connection),
            )
            .await?;
        Ok(read_record(id, caller, &fields))
    }
}

/// The record's meaning for `caller`: nothing unless it sent the command.
fn read_record(id: Uuid, caller: &str, fields: &HashMap<String, String>) -> Option<Remembered> {
    if fields.get("owner").map(String::as_str) != Some(caller) {
        return None;
    }
    let aggregate_id = fields.get("aggregate_id")?.clone();
    if let Some(stored) = fields
        .get("result")
        .and_then(|text| serde_json::from_str::<Stored>(text).ok())
    {
        let result = stored.into_result(id);
        // An answer at another aggregate answers someone else's command with the same id.
        if result.aggregate_id == aggregate_id {
            return Some(Remembered::Done(result));
        }
    }
    let sent_at_ms = fields.get("sent_at_ms")?.parse().ok()?;
    Some(Remembered::Waiting {
        aggregate_id,
        sent_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamcart_schemas::envelope::Outcome;

    fn record(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_the_sender_learns_anything() {
        let id = Uuid::from_u128(5);
        let fields = record(&[
            ("owner", "alice"),
            ("aggregate_id", "SKU-1"),
            ("sent_at_ms", "1700000000000"),
        ]);
        assert_eq!(read_record(id, "bob", &fields), None);
        assert_eq!(
            read_record(id, "alice", &fields),
            Some(Remembered::Waiting {
                aggregate_id: "SKU-1".into(),
                sent_at_ms: 1_700_000_000_000
            })
        );
        assert_eq!(read_record(id, "alice", &HashMap::new()), None);
    }

    #[test]
    fn a_stored_answer_is_returned_for_its_aggregate_only() {
        let id = Uuid::from_u128(6);
        let answer = CommandResult {
            command_id: id,
            aggregate_id: "SKU-1".into(),
            outcome: Outcome::Accepted {
                version: 3,
                event_ids: vec![Uuid::from_u128(1)],
            },
        };
        let text = serde_json::to_string(&Stored::of(&answer).expect("stored")).expect("json");
        let mut fields = record(&[
            ("owner", "alice"),
            ("aggregate_id", "SKU-1"),
            ("sent_at_ms", "1"),
        ]);
        fields.insert("result".into(), text.clone());
        assert_eq!(
            read_record(id, "alice", &fields),
            Some(Remembered::Done(answer))
        );
        fields.insert("aggregate_id".into(), "SKU-2".into());
        assert!(matches!(
            read_record(id, "alice", &fields),
            Some(Remembered::Waiting { .. })
        ));
    }
}
