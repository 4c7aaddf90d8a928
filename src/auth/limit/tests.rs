use super::*;
use crate::config::RatePeriod;

const MS: u64 = 1_000_000;

fn limit(count: u32, period: RatePeriod, burst: u32) -> RateLimit {
    RateLimit {
        count,
        period,
        burst,
    }
}

#[test]
fn burst_then_one_token_per_interval() {
    let r = Rate::new(&limit(5, RatePeriod::Second, 5));
    assert_eq!((r.interval, r.tolerance), (200 * MS, 800 * MS));
    let mut tat = 0;
    for _ in 0..5 {
        tat = r.admit(tat, 0).unwrap();
    }
    assert_eq!(r.admit(tat, 0), Err(200 * MS));
    assert_eq!(r.admit(tat, 150 * MS), Err(50 * MS));
    tat = r.admit(tat, 200 * MS).unwrap();
    assert_eq!(r.admit(tat, 200 * MS), Err(200 * MS));
    // A whole period later the bucket is full again: five more pass.
    let mut t = 0;
    for _ in 0..5 {
        t = r.admit(t.max(tat), 1400 * MS).unwrap();
    }
    assert!(r.admit(t, 1400 * MS).is_err());
}

#[test]
fn burst_and_period_are_independent() {
    let r = Rate::new(&limit(60, RatePeriod::Minute, 2));
    assert_eq!((r.interval, r.tolerance), (1000 * MS, 1000 * MS));
    let tat = r.admit(0, 0).and_then(|t| r.admit(t, 0)).unwrap();
    assert_eq!(r.admit(tat, 0), Err(1000 * MS));
    let r = Rate::new(&limit(1, RatePeriod::Hour, 1));
    let tat = r.admit(0, 0).unwrap();
    assert_eq!(r.admit(tat, 0), Err(3_600_000 * MS));
}

#[tokio::test(start_paused = true)]
async fn limiter_keys_are_separate_and_refill() {
    let l = Limiter::new(&limit(2, RatePeriod::Second, 2));
    let (a, b) = (BucketKey::Key([1; 32]), BucketKey::Ip([10, 0, 0, 1].into()));
    let now = Instant::now();
    assert!(l.check(a, now).is_ok() && l.check(a, now).is_ok());
    assert_eq!(l.check(a, now), Err(Duration::from_millis(500)));
    assert!(l.check(b, now).is_ok());
    assert!(l.check(a, now + Duration::from_millis(500)).is_ok());
    assert!(l.check(a, now + Duration::from_millis(500)).is_err());
}

fn shard_with(active: u64, full: u64, now: u64) -> Shard {
    let ip = |i: u64| BucketKey::Ip(IpAddr::from(u32::try_from(i).unwrap().to_be_bytes()));
    let tats = (0..active)
        .map(|i| (ip(i), now + 1))
        .chain((active..active + full).map(|i| (ip(i), now)))
        .collect();
    Shard {
        tats,
        sweep_at: SWEEP_MIN,
    }
}

#[test]
fn sweeps_drop_full_buckets_only_when_grown() {
    let mut s = shard_with(10, 10, 5);
    s.sweep_if_grown(5);
    assert_eq!(s.tats.len(), 20, "below SWEEP_MIN: no sweep");
    let mut s = shard_with(100, SWEEP_MIN as u64, 5);
    s.sweep_if_grown(5);
    assert_eq!(s.tats.len(), 100);
    assert_eq!(s.sweep_at, SWEEP_MIN);
    let mut s = shard_with(SWEEP_MIN as u64, 0, 5);
    s.sweep_if_grown(5);
    assert_eq!((s.tats.len(), s.sweep_at), (SWEEP_MIN, 2 * SWEEP_MIN));
    let mut s = shard_with(MAX_PER_SHARD as u64, 0, 5);
    s.sweep_if_grown(5);
    assert!(s.tats.is_empty(), "a shard full of active buckets is reset");
}

#[tokio::test(start_paused = true)]
async fn idle_buckets_do_not_accumulate() {
    let l = Limiter::new(&limit(10, RatePeriod::Second, 10));
    let start = Instant::now();
    let ip = |i: u32| BucketKey::Ip(IpAddr::from(i.to_be_bytes()));
    // 100k distinct clients, 1000 per refill interval: at most ~1000
    // buckets are ever active, so sweeps keep the maps small.
    for i in 0..100_000u32 {
        let now = start + Duration::from_micros(100 * u64::from(i));
        assert!(l.check(ip(i), now).is_ok());
    }
    assert!(
        l.buckets() <= SHARDS * 2 * SWEEP_MIN,
        "{} buckets",
        l.buckets()
    );
}
