//! Rate limits of enrich calls: one token bucket (`governor`) per connection, shared by every
//! call site that uses the connection — or per call site, for one that names none.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::dsl::enrich::RateLimitOptions;

type Key = (String, u32, u32);

/// The buckets of this process's connections.
static BUCKETS: OnceLock<Mutex<HashMap<Key, Arc<DefaultDirectRateLimiter>>>> = OnceLock::new();

/// The bucket of connection `name` at this rate (a new one for `None`).
pub fn bucket(name: Option<&str>, o: &RateLimitOptions) -> Arc<DefaultDirectRateLimiter> {
    let per_second = NonZeroU32::new(o.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = o.burst.and_then(NonZeroU32::new).unwrap_or(per_second);
    let make = || {
        Arc::new(RateLimiter::direct(
            Quota::per_second(per_second).allow_burst(burst),
        ))
    };
    let Some(name) = name else {
        return make();
    };
    let key = (name.to_string(), per_second.get(), burst.get());
    BUCKETS
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned")
        .entry(key)
        .or_insert_with(make)
        .clone()
}
