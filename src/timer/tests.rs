use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

const TICK: Duration = Duration::from_millis(100);

async fn fired_at(wheel: &Wheel, key: TimerKey) -> Instant {
    poll_fn(|cx| wheel.poll_fired(key, cx)).await;
    Instant::now()
}

fn spawn_driver(wheel: &Arc<Wheel>) -> tokio::task::JoinHandle<()> {
    let w = wheel.clone();
    tokio::spawn(async move { w.drive().await })
}

#[tokio::test(start_paused = true)]
async fn fires_at_deadline_rounded_up_to_a_tick() {
    let wheel = Arc::new(Wheel::new(TICK));
    let driver = spawn_driver(&wheel);
    let start = Instant::now();
    let key = wheel.insert(start + Duration::from_millis(1_250));
    let at = fired_at(&wheel, key).await;
    assert_eq!(at - start, Duration::from_millis(1_300));
    driver.abort();
}

#[tokio::test(start_paused = true)]
async fn entries_beyond_one_rotation_wait_for_their_turn() {
    let wheel = Arc::new(Wheel::new(TICK));
    let driver = spawn_driver(&wheel);
    let start = Instant::now();
    // 64 slots * 100 ms = 6.4 s per rotation; 15 s is more than two rotations.
    let far = wheel.insert(start + Duration::from_secs(15));
    let near = wheel.insert(start + Duration::from_millis(200));
    assert_eq!(
        fired_at(&wheel, near).await - start,
        Duration::from_millis(200)
    );
    assert_eq!(fired_at(&wheel, far).await - start, Duration::from_secs(15));
    driver.abort();
}

#[tokio::test(start_paused = true)]
async fn reset_pushes_forward_and_rearms() {
    let wheel = Arc::new(Wheel::new(TICK));
    let driver = spawn_driver(&wheel);
    let start = Instant::now();
    let key = wheel.insert(start + Duration::from_secs(1));
    let first = fired_at(&wheel, key).await;
    assert_eq!(first - start, Duration::from_secs(1));
    wheel.reset(key, first + Duration::from_secs(2));
    assert_eq!(fired_at(&wheel, key).await - start, Duration::from_secs(3));
    // An earlier deadline than the armed one wakes the sleeping driver.
    wheel.reset(key, Instant::now() + Duration::from_secs(30));
    let other = wheel.insert(Instant::now() + Duration::from_millis(500));
    assert_eq!(
        fired_at(&wheel, other).await - start,
        Duration::from_millis(3_500)
    );
    driver.abort();
}

#[tokio::test(start_paused = true)]
async fn removed_entries_never_fire_and_slots_are_reused() {
    let wheel = Arc::new(Wheel::new(TICK));
    let driver = spawn_driver(&wheel);
    let start = Instant::now();
    let a = wheel.insert(start + Duration::from_millis(300));
    let b = wheel.insert(start + Duration::from_millis(300));
    wheel.remove(a);
    assert_eq!(wheel.live(), 1);
    assert_eq!(
        fired_at(&wheel, b).await - start,
        Duration::from_millis(300)
    );
    let c = wheel.insert(Instant::now() + Duration::from_millis(100));
    assert_eq!(c, a, "the freed slab slot is reused");
    wheel.remove(b);
    wheel.remove(c);
    assert_eq!(wheel.live(), 0);
    driver.abort();
}

#[tokio::test(start_paused = true)]
async fn many_entries_in_one_slot_all_fire() {
    let wheel = Arc::new(Wheel::new(TICK));
    let driver = spawn_driver(&wheel);
    let start = Instant::now();
    // Same slot, different rotations, plus same tick.
    let keys: Vec<_> = [1u64, 1, 65, 129, 129]
        .iter()
        .map(|t| wheel.insert(start + TICK * (*t as u32)))
        .collect();
    for (key, t) in keys.iter().zip([1u32, 1, 65, 129, 129]) {
        assert_eq!(fired_at(&wheel, *key).await - start, TICK * t);
    }
    driver.abort();
}

#[tokio::test(start_paused = true)]
async fn random_inserts_resets_and_removals_fire_on_time() {
    let wheel = Arc::new(Wheel::new(TICK));
    let driver = spawn_driver(&wheel);
    let start = Instant::now();
    // A small LCG: the same sequence every run.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    let mut keys: Vec<(TimerKey, Duration)> = Vec::new();
    for _ in 0..300 {
        // Deadlines up to three rotations ahead, in whole ticks.
        let at = TICK * (1 + next(200) as u32);
        match next(4) {
            0 if !keys.is_empty() => {
                let (k, _) = keys.swap_remove(next(keys.len() as u64) as usize);
                wheel.remove(k);
            }
            1 if !keys.is_empty() => {
                let i = next(keys.len() as u64) as usize;
                wheel.reset(keys[i].0, start + at);
                keys[i].1 = at;
            }
            _ => keys.push((wheel.insert(start + at), at)),
        }
    }
    assert_eq!(wheel.live(), keys.len());
    keys.sort_by_key(|(_, at)| *at);
    for (key, at) in keys {
        assert_eq!(fired_at(&wheel, key).await - start, at);
    }
    driver.abort();
}
