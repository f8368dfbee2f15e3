use async_trait::async_trait;

use crate::Result;
use crate::model::{DeviceId, UserId};

/// A device a user has logged in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device.
    pub device: DeviceId,
    /// When it first logged in, Unix milliseconds.
    pub first_seen_ms: u64,
}

/// What [`DeviceStore::register`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The device was known already.
    Known,
    /// The device is new and now remembered.
    New,
    /// The device is new and the user already has the most devices allowed:
    /// nothing was written.
    Full,
}

/// The devices each user has logged in with.
#[async_trait]
pub trait DeviceStore: Send + Sync + 'static {
    /// Remembers a device of a user, first seen at `now_ms`, unless it is
    /// new and the user already has `max` devices. Atomic: concurrent
    /// registrations never take a user past `max`.
    async fn register(
        &self,
        user: &UserId,
        device: &DeviceId,
        now_ms: u64,
        max: usize,
    ) -> Result<Registered>;

    /// The devices a user has logged in with, oldest first.
    async fn devices(&self, user: &UserId) -> Result<Vec<DeviceInfo>>;

    /// Forgets a device; returns whether the user had it.
    async fn remove(&self, user: &UserId, device: &DeviceId) -> Result<bool>;
}
