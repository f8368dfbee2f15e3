use async_trait::async_trait;

use crate::Result;
use crate::model::{DeviceId, UserId};

/// The devices each user has logged in with.
#[async_trait]
pub trait DeviceStore: Send + Sync + 'static {
    /// Remembers a device of a user; returns whether it was new.
    async fn register(&self, user: &UserId, device: &DeviceId) -> Result<bool>;

    /// The devices a user has logged in with, in no particular order.
    async fn devices(&self, user: &UserId) -> Result<Vec<DeviceId>>;
}
