//! [`DeviceStore`] conformance.

use std::sync::Arc;

use super::fresh;
use crate::model::*;
use crate::store::*;

const MAX: usize = 32;

fn names(devices: &[DeviceInfo]) -> Vec<&str> {
    devices.iter().map(|d| d.device.as_str()).collect()
}

/// [`DeviceStore`] rules: registration is idempotent and says whether the
/// device was new; devices are per user, listed oldest first; a user at
/// the cap cannot add a device (concurrent registrations included) until
/// one is removed.
pub async fn device_suite(store: Arc<dyn DeviceStore>) {
    let p = fresh("d");
    let (alice, bob) = (UserId::from(format!("{p}a")), UserId::from(format!("{p}b")));
    let (phone, laptop) = (DeviceId::from("phone"), DeviceId::from("laptop"));
    assert!(store.devices(&alice).await.expect("devices").is_empty());
    let reg = |u: &UserId, d: &DeviceId, at: u64| {
        let (store, u, d) = (store.clone(), u.clone(), d.clone());
        async move { store.register(&u, &d, at, MAX).await.expect("register") }
    };
    assert_eq!(reg(&alice, &phone, 20).await, Registered::New);
    assert_eq!(reg(&alice, &phone, 30).await, Registered::Known);
    assert_eq!(reg(&alice, &laptop, 10).await, Registered::New);
    let devices = store.devices(&alice).await.expect("devices");
    assert_eq!(names(&devices), ["laptop", "phone"], "oldest first");
    assert_eq!(devices[1].first_seen_ms, 20, "first seen, not last");
    assert!(
        store.devices(&bob).await.expect("devices").is_empty(),
        "per user"
    );
    assert_eq!(reg(&bob, &phone, 1).await, Registered::New, "new for bob");

    // The cap: concurrent registrations of 50 new devices admit exactly
    // the 30 that fit beside alice's two.
    let attempts: Vec<_> = (0..50)
        .map(|i| {
            let d = DeviceId::from(format!("d{i:02}"));
            tokio::spawn(reg(&alice, &d, 100 + i))
        })
        .collect();
    let mut outcomes = Vec::new();
    for a in attempts {
        outcomes.push(a.await.expect("task"));
    }
    let new = outcomes.iter().filter(|o| **o == Registered::New).count();
    let full = outcomes.iter().filter(|o| **o == Registered::Full).count();
    assert_eq!((new, full), (MAX - 2, 50 - (MAX - 2)));
    assert_eq!(store.devices(&alice).await.expect("devices").len(), MAX);
    // A known device still logs in at the cap; a new one does not.
    assert_eq!(reg(&alice, &phone, 500).await, Registered::Known);
    assert_eq!(
        reg(&alice, &DeviceId::from("tablet"), 500).await,
        Registered::Full
    );

    // Removing the oldest makes room.
    assert!(store.remove(&alice, &laptop).await.expect("remove"));
    assert!(
        !store.remove(&alice, &laptop).await.expect("remove"),
        "gone"
    );
    assert!(
        !store.remove(&bob, &laptop).await.expect("remove"),
        "not bob's"
    );
    let devices = store.devices(&alice).await.expect("devices");
    assert_eq!(devices.len(), MAX - 1);
    assert_eq!(devices[0].device, phone, "phone is the oldest now");
    assert_eq!(
        reg(&alice, &DeviceId::from("tablet"), 600).await,
        Registered::New
    );
    assert_eq!(
        store
            .devices(&alice)
            .await
            .expect("devices")
            .last()
            .map(|d| d.device.as_str()),
        Some("tablet")
    );
}
