use super::*;

fn t0() -> Instant {
    Instant::now()
}

#[test]
fn opens_after_consecutive_failures_then_probes_once() {
    let h = Arc::new(Health::new(1));
    let now = t0();
    for _ in 0..CONSECUTIVE - 1 {
        h.begin(now, false)
            .unwrap()
            .failure(Failure::Status, None, now);
        assert_eq!(h.admission(now), Admission::Open);
    }
    h.begin(now, false)
        .unwrap()
        .failure(Failure::Status, None, now);
    assert_eq!(h.admission(now), Admission::Refused);
    assert_eq!(h.state(now), CircuitState::Open);
    assert!(h.begin(now, false).is_none());
    assert_eq!(h.ejections(), 1);

    let later = now + BASE_EJECTION;
    assert_eq!(h.admission(later), Admission::Probe);
    let probe = h.begin(later, false).unwrap();
    // The probe is out: nobody else gets in.
    assert_eq!(h.admission(later), Admission::Refused);
    assert!(h.begin(later, false).is_none());
    // A probe cancelled without a verdict frees the slot.
    drop(probe);
    assert_eq!(h.admission(later), Admission::Probe);
    let load = h.begin(later, false).unwrap().success(later);
    assert_eq!(h.state(later), CircuitState::Closed);
    assert_eq!(h.outstanding(), 1);
    drop(load);
    assert_eq!(h.outstanding(), 0);
    assert_eq!(h.failures(Failure::Status), u64::from(CONSECUTIVE));
}

#[test]
fn failed_probes_double_the_ejection_up_to_the_bound() {
    let h = Arc::new(Health::new(1));
    let mut now = t0();
    for _ in 0..CONSECUTIVE {
        h.begin(now, false)
            .unwrap()
            .failure(Failure::FirstByte, None, now);
    }
    let mut expected = BASE_EJECTION;
    for _ in 0..8 {
        assert!(
            h.begin(now + expected - Duration::from_millis(1), false)
                .is_none()
        );
        now += expected;
        h.begin(now, false)
            .unwrap()
            .failure(Failure::FirstByte, None, now);
        expected = (expected * 2).min(MAX_EJECTION);
    }
    assert_eq!(
        h.state(now + MAX_EJECTION - Duration::from_millis(1)),
        CircuitState::Open
    );
    assert_eq!(h.admission(now + MAX_EJECTION), Admission::Probe);
}

#[test]
fn retry_after_holds_the_endpoint_back() {
    let h = Arc::new(Health::new(1));
    let now = t0();
    h.begin(now, false)
        .unwrap()
        .failure(Failure::RateLimited, Some(Duration::from_secs(2)), now);
    assert_eq!(
        h.admission(now + Duration::from_secs(1)),
        Admission::Refused
    );
    assert!(h.begin(now + Duration::from_secs(1), true).is_some());
    assert_eq!(h.admission(now + Duration::from_secs(2)), Admission::Open);
}

#[test]
fn success_resets_the_failure_count() {
    let h = Arc::new(Health::new(1));
    let now = t0();
    for _ in 0..3 {
        for _ in 0..CONSECUTIVE - 1 {
            h.begin(now, false)
                .unwrap()
                .failure(Failure::Status, None, now);
        }
        drop(h.begin(now, false).unwrap().success(now));
    }
    assert_eq!(h.state(now), CircuitState::Closed);
}

#[test]
fn two_choices_prefer_the_less_loaded_and_honour_weights() {
    let hs: Vec<Arc<Health>> = (0..3).map(|_| Arc::new(Health::new(1))).collect();
    let refs: Vec<&Health> = hs.iter().map(|h| &**h).collect();
    let now = t0();
    // Endpoint 0 carries 10 requests: it is never picked while the others
    // are idle (it loses every pairing it is in).
    let held: Vec<_> = (0..10)
        .map(|_| hs[0].begin(now, false).unwrap().success(now))
        .collect();
    for _ in 0..200 {
        assert_ne!(choose(&refs, |h| *h, |_| true, now), Some(0));
    }
    drop(held);

    // Weights 3:1 with equal load: the heavier is drawn more often.
    let heavy = Arc::new(Health::new(3));
    let light = Arc::new(Health::new(1));
    let pair = [&*heavy, &*light];
    let mut counts = [0u32; 2];
    let mut loads = Vec::new();
    for _ in 0..400 {
        let i = choose(&pair, |h| *h, |_| true, now).unwrap();
        counts[i] += 1;
        loads.push([&heavy, &light][i].begin(now, false).unwrap().success(now));
    }
    // Load-aware: the outstanding counts track the 3:1 weights.
    let ratio = f64::from(counts[0]) / f64::from(counts[1]);
    assert!((2.5..=3.5).contains(&ratio), "{counts:?}");
    drop(loads);

    // Filters and refusals.
    assert_eq!(choose(&refs, |h| *h, |i| i == 2, now), Some(2));
    assert_eq!(choose(&refs, |h| *h, |_| false, now), None);
}

#[test]
fn least_recently_failed_prefers_never_failed() {
    let hs: Vec<Arc<Health>> = (0..3).map(|_| Arc::new(Health::new(1))).collect();
    let now = t0();
    hs[0]
        .begin(now, false)
        .unwrap()
        .failure(Failure::Status, None, now);
    let later = now + Duration::from_secs(1);
    hs[2]
        .begin(later, false)
        .unwrap()
        .failure(Failure::Status, None, later);
    let refs: Vec<&Health> = hs.iter().map(|h| &**h).collect();
    assert_eq!(least_recently_failed(&refs, |h| *h, |_| true), Some(1));
    hs[1].begin(later, false).unwrap().failure(
        Failure::Status,
        None,
        later + Duration::from_secs(1),
    );
    assert_eq!(least_recently_failed(&refs, |h| *h, |_| true), Some(0));
}
