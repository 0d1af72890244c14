//! Collapses concurrent loads of one key into one: the first caller starts the load on its own
//! task, later callers for the same key wait for that load's result instead of starting another.
//!
//! The load runs on a spawned task so that a caller giving up (a client disconnecting) does not
//! cancel it for the others, and the entry is removed by the load itself when it finishes.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};

type Flight<V> = Shared<BoxFuture<'static, Result<V, String>>>;

/// In-flight loads by key.
pub struct SingleFlight<K, V> {
    inflight: Mutex<HashMap<K, Flight<V>>>,
}

impl<K, V> std::fmt::Debug for SingleFlight<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inflight.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("SingleFlight")
            .field("inflight", &n)
            .finish()
    }
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self {
            inflight: Mutex::new(HashMap::new()),
        }
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The result of `load` for `key`, or of the load already running for it. `Err` only when
    /// the load's task panicked or was cancelled by the runtime shutting down.
    pub async fn run<F>(self: &Arc<Self>, key: K, load: F) -> Result<V, String>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let flight = {
            let mut inflight = self
                .inflight
                .lock()
                .map_err(|_| "single-flight table poisoned".to_owned())?;
            match inflight.get(&key) {
                Some(flight) => flight.clone(),
                None => {
                    let this = Arc::clone(self);
                    let owned_key = key.clone();
                    // The task removes its own entry; it cannot do so before the insert below,
                    // since it needs the lock this scope holds.
                    let task = tokio::spawn(async move {
                        let value = load.await;
                        if let Ok(mut inflight) = this.inflight.lock() {
                            inflight.remove(&owned_key);
                        }
                        value
                    });
                    let flight = async move { task.await.map_err(|e| e.to_string()) }
                        .boxed()
                        .shared();
                    inflight.insert(key, flight.clone());
                    flight
                }
            }
        };
        flight.await
    }

    /// Loads running now.
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_loads_of_one_key_run_once() {
        let flights = Arc::new(SingleFlight::<String, u64>::default());
        let loads = Arc::new(AtomicUsize::new(0));
        let mut callers = Vec::new();
        for _ in 0..50 {
            let (flights, loads) = (Arc::clone(&flights), Arc::clone(&loads));
            callers.push(tokio::spawn(async move {
                flights
                    .run("sku-1".to_owned(), async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        42
                    })
                    .await
            }));
        }
        for caller in callers {
            assert_eq!(caller.await.expect("join"), Ok(42));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);

        // Once finished, the next load runs again, and other keys never wait for each other.
        let again = flights.run("sku-1".to_owned(), async { 7 }).await;
        let other = flights.run("sku-2".to_owned(), async { 8 }).await;
        assert_eq!((again, other), (Ok(7), Ok(8)));
    }

    #[tokio::test]
    async fn a_caller_giving_up_does_not_cancel_the_load_for_others() {
        let flights = Arc::new(SingleFlight::<u8, &'static str>::default());
        let first = {
            let flights = Arc::clone(&flights);
            tokio::spawn(async move {
                flights
                    .run(1, async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        "done"
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        first.abort();
        let second = flights.run(1, async { "second load" }).await;
        assert_eq!(second, Ok("done"));
    }
}
