use std::time::{Duration, Instant};

use super::{sleep, Timer};

const LIMIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn expires_at_its_deadline_and_not_before() {
    let start = Instant::now();
    let mut timer = Timer::after(Duration::from_millis(120));
    tokio::time::timeout(LIMIT, timer.expired()).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(120));
    assert_eq!(timer.deadline(), None, "an expired timer is disarmed");
}

#[tokio::test]
async fn re_arming_later_moves_the_expiry() {
    let start = Instant::now();
    let mut timer = Timer::after(Duration::from_millis(20));
    timer.set_at(start + Duration::from_millis(150));
    tokio::time::timeout(LIMIT, timer.expired()).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn re_arming_after_an_expiry_waits_again() {
    let mut timer = Timer::after(Duration::from_millis(10));
    tokio::time::timeout(LIMIT, timer.expired()).await.unwrap();
    let again = Instant::now();
    timer.set_at(again + Duration::from_millis(80));
    tokio::time::timeout(LIMIT, timer.expired()).await.unwrap();
    assert!(again.elapsed() >= Duration::from_millis(80));
}

#[tokio::test]
async fn a_passed_deadline_expires_at_once() {
    let mut timer = Timer::at(Instant::now() - Duration::from_secs(1));
    tokio::time::timeout(LIMIT, timer.expired()).await.unwrap();
}

#[tokio::test]
async fn a_disarmed_timer_never_expires() {
    let mut timer = Timer::after(Duration::from_millis(10));
    timer.unset();
    let waited = tokio::time::timeout(Duration::from_millis(100), timer.expired()).await;
    assert!(waited.is_err(), "a disarmed timer expired");
    let mut never = Timer::new();
    let waited = tokio::time::timeout(Duration::from_millis(50), never.expired()).await;
    assert!(waited.is_err(), "a timer never armed expired");
}

#[tokio::test]
async fn sleep_waits_its_duration() {
    let start = Instant::now();
    tokio::time::timeout(LIMIT, sleep(Duration::from_millis(70)))
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(70));
}

#[tokio::test]
async fn a_dropped_wait_leaves_the_timer_armed() {
    let mut timer = Timer::after(Duration::from_millis(60));
    let early = tokio::time::timeout(Duration::from_millis(5), timer.expired()).await;
    assert!(early.is_err());
    assert!(timer.deadline().is_some());
    tokio::time::timeout(LIMIT, timer.expired()).await.unwrap();
}
