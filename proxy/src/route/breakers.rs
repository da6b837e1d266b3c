//! Envoy's circuit breakers for one cluster, from DestinationRule `connectionPool`: requests
//! beyond the limits get a fast 503 with flag UO instead of piling up on a struggling model.
//!
//! - `tcp.maxConnections`: an HTTP/1.1 connection carries one request at a time, so at most
//!   this many requests are in flight to the cluster over HTTP/1.1;
//! - `http.http1MaxPendingRequests`: how many more may wait for a connection to free up;
//! - `http.http2MaxRequests`: requests in flight to the cluster, whatever the protocol;
//! - `http.maxRetries`: retries in flight to the cluster; a retry beyond it is not made.
//!
//! Istio's defaults (2^32-1) leave every breaker open, and a cluster with only defaults has none
//! of this on its request path.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use augur_policies::ConnectionPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of one cluster and what is in flight against them.
#[derive(Debug)]
pub struct CircuitBreakers {
    max_requests: u32,
    max_pending: u32,
    max_retries: u32,
    /// One permit per allowed HTTP/1.1 connection; `None` when unlimited.
    connections: Option<Arc<Semaphore>>,
    requests: AtomicU32,
    pending: AtomicU32,
    retries: AtomicU32,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Too many requests (or waiting requests): Envoy's `UO`.
    Requests,
    /// The route timeout ran out while the request waited for a connection.
    Timeout,
}

/// A request's hold on the cluster's limits; released when dropped.
#[derive(Debug)]
pub struct Admission {
    breakers: Arc<CircuitBreakers>,
    _connection: Option<OwnedSemaphorePermit>,
    retry: bool,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.breakers.requests.fetch_sub(1, Ordering::Relaxed);
        if self.retry {
            self.breakers.retries.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Decrements a counter when dropped (a waiting request that gave up or got through).
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CircuitBreakers {
    /// The breakers `pool` asks for; `None` when every limit is Istio's default (unlimited).
    pub fn from_pool(pool: &ConnectionPool) -> Option<Arc<Self>> {
        let open = ConnectionPool::default();
        let limited = pool.max_connections != open.max_connections
            || pool.http1_max_pending_requests != open.http1_max_pending_requests
            || pool.http2_max_requests != open.http2_max_requests
            || pool.max_retries != open.max_retries;
        limited.then(|| {
            Arc::new(Self {
                max_requests: pool.http2_max_requests,
                max_pending: pool.http1_max_pending_requests,
                max_retries: pool.max_retries,
                connections: (pool.max_connections != open.max_connections)
                    .then(|| Arc::new(Semaphore::new(pool.max_connections as usize))),
                requests: AtomicU32::new(0),
                pending: AtomicU32::new(0),
                retries: AtomicU32::new(0),
            })
        })
    }

    /// Whether one more retry is allowed now (`maxRetries`).
    pub fn retry_allowed(&self) -> bool {
        self.retries.load(Ordering::Relaxed) < self.max_retries
    }

    /// Admits one attempt: at once while under the limits, after a wait for an HTTP/1.1
    /// connection while the pending queue has room (at most `wait_limit`), else [`Overflow`].
    pub async fn admit(
        self: &Arc<Self>,
        http1: bool,
        retry: bool,
        wait_limit: Option<std::time::Duration>,
    ) -> Result<Admission, Overflow> {
        if self.requests.fetch_add(1, Ordering::Relaxed) >= self.max_requests {
            self.requests.fetch_sub(1, Ordering::Relaxed);
            return Err(Overflow::Requests);
        }
        if retry {
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
        // From here on the admission undoes the counts if anything fails.
        let mut admission = Admission {
            breakers: Arc::clone(self),
            _connection: None,
            retry,
        };
        let Some(connections) = self.connections.as_ref().filter(|_| http1) else {
            return Ok(admission);
        };
        if let Ok(permit) = Arc::clone(connections).try_acquire_owned() {
            admission._connection = Some(permit);
            return Ok(admission);
        }
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.max_pending {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            return Err(Overflow::Requests);
        }
        let _waiting = Waiting(&self.pending);
        let acquire = Arc::clone(connections).acquire_owned();
        let permit = match wait_limit {
            None => acquire.await,
            Some(limit) => tokio::time::timeout(limit, acquire)
                .await
                .map_err(|_| Overflow::Timeout)?,
        };
        // The semaphore is never closed.
        admission._connection = permit.ok();
        Ok(admission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max_connections: u32, pending: u32, requests: u32) -> ConnectionPool {
        ConnectionPool {
            max_connections,
            http1_max_pending_requests: pending,
            http2_max_requests: requests,
            ..ConnectionPool::default()
        }
    }

    #[test]
    fn defaults_have_no_breakers() {
        assert!(CircuitBreakers::from_pool(&ConnectionPool::default()).is_none());
    }

    #[tokio::test]
    async fn http1_requests_wait_for_a_connection_then_overflow() {
        let b = CircuitBreakers::from_pool(&pool(1, 1, u32::MAX)).expect("limited");
        let first = b.admit(true, false, None).await.expect("a free connection");
        // The second waits (pending); the third finds the queue full.
        let waiting = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.admit(true, false, None).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        while b.pending.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            b.admit(true, false, None).await.err(),
            Some(Overflow::Requests)
        );
        drop(first);
        assert_eq!(waiting.await.ok(), Some(Ok(())));
        assert_eq!(b.pending.load(Ordering::Relaxed), 0);
        assert_eq!(b.requests.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_pending_request_gives_up_at_the_route_timeout() {
        let b = CircuitBreakers::from_pool(&pool(1, 10, u32::MAX)).expect("limited");
        let _held = b.admit(true, false, None).await.expect("a free connection");
        let waited = b
            .admit(true, false, Some(std::time::Duration::from_millis(20)))
            .await;
        assert_eq!(waited.err(), Some(Overflow::Timeout));
        assert_eq!(b.pending.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn max_requests_bounds_every_protocol_and_retries_are_counted() {
        let mut p = pool(u32::MAX, u32::MAX, 2);
        p.max_retries = 1;
        let b = CircuitBreakers::from_pool(&p).expect("limited");
        let one = b.admit(false, false, None).await.expect("first");
        let retry = b.admit(false, true, None).await.expect("second, a retry");
        assert!(!b.retry_allowed());
        assert_eq!(
            b.admit(false, false, None).await.err(),
            Some(Overflow::Requests)
        );
        drop(retry);
        assert!(b.retry_allowed());
        drop(one);
        assert_eq!(b.requests.load(Ordering::Relaxed), 0);
    }
}
