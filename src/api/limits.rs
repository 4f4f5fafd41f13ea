//! A per-user rate limit: a token bucket per user holding a minute's worth of requests,
//! refilled continuously. It is this replica's: behind a load balancer of N replicas a user
//! gets up to N times the limit (as with nginx's `limit_req`), and a restart forgets it.
//! What must hold across replicas (the AI's daily token budget) is kept in the database.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;

/// Buckets of users who made a request lately.
pub struct RateLimiter {
    per_minute: f64,
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request of `user`'s allowance, or says how many seconds until one is back.
    pub fn take(&self, user: Uuid) -> Result<(), u64> {
        self.take_at(user, Instant::now())
    }

    fn take_at(&self, user: Uuid, now: Instant) -> Result<(), u64> {
        let per_second = self.per_minute / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Full buckets carry no state: forget them now and then, so the map holds only
        // users active in the last minute.
        if buckets.len() > 10_000 {
            let capacity = self.per_minute;
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < capacity
            });
        }
        let b = buckets.entry(user).or_insert(Bucket {
            tokens: self.per_minute,
            at: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * per_second).min(self.per_minute);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / per_second).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_user_gets_a_minutes_worth_then_waits_for_the_refill_and_others_are_not_held_up() {
        let limiter = RateLimiter::new(60);
        let (ada, ken) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = Instant::now();
        for _ in 0..60 {
            assert_eq!(limiter.take_at(ada, t0), Ok(()));
        }
        assert_eq!(limiter.take_at(ada, t0), Err(1));
        assert_eq!(limiter.take_at(ken, t0), Ok(()));
        assert_eq!(
            limiter.take_at(ada, t0 + Duration::from_millis(1000)),
            Ok(())
        );
        assert_eq!(
            limiter.take_at(ada, t0 + Duration::from_millis(1000)),
            Err(1)
        );
        // A slow limit says how long: 6 per minute is one every 10 s.
        let slow = RateLimiter::new(6);
        for _ in 0..6 {
            slow.take_at(ada, t0).unwrap();
        }
        assert_eq!(slow.take_at(ada, t0), Err(10));
    }
}
