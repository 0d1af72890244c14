//! A consumed record as every loop's handler sees it: borrowed from the client's message, with
//! its headers in order.

use rdkafka::message::{Headers, Message};

/// One consumed record.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Offset in the source partition.
    pub offset: i64,
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value.
    pub payload: Option<&'a [u8]>,
    /// Record headers, in order (a header without value is empty).
    pub headers: Vec<(&'a str, &'a [u8])>,
}

impl<'a> Record<'a> {
    /// The record of a consumed message, borrowing its bytes.
    pub fn of<M: Message>(m: &'a M) -> Self
    where
        M::Headers: 'a,
    {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key, h.value.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
            payload: m.payload(),
            headers,
        }
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
}
