//! Push registrations: each device's push token, and each user's choice
//! to hide message content in notifications.

use async_trait::async_trait;

use crate::Result;
use crate::model::{DeviceId, UserId};

/// A device's push registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushToken {
    /// Who delivers it: `apns`, `fcm`, or a name your notifier knows.
    pub provider: String,
    /// The device's platform: `ios`, `android`, `web`, ...
    pub platform: String,
    /// The provider's token for the device.
    pub token: String,
}

/// A token and the device it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceToken {
    /// The device.
    pub device: DeviceId,
    /// Its registration.
    pub token: PushToken,
}

/// What a notification for a user needs from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushProfile {
    /// The user.
    pub user: UserId,
    /// Whether notifications must not show message content.
    pub hide_content: bool,
    /// The user's devices with a token, by device.
    pub tokens: Vec<DeviceToken>,
}

/// Push tokens and preferences.
#[async_trait]
pub trait PushStore: Send + Sync + 'static {
    /// Sets a device's token, replacing the one it had.
    async fn set_token(&self, user: &UserId, device: &DeviceId, token: PushToken) -> Result<()>;

    /// Removes a device's token; with `only` set, only if the token is
    /// still that one (a token reported invalid must not remove its
    /// replacement). Returns whether one was removed.
    async fn remove_token(
        &self,
        user: &UserId,
        device: &DeviceId,
        only: Option<&str>,
    ) -> Result<bool>;

    /// Sets whether the user's notifications hide message content.
    async fn set_hide_content(&self, user: &UserId, hide: bool) -> Result<()>;

    /// The profiles of those of `users` who have at least one token, in
    /// the order of `users`; their tokens sorted by device.
    async fn profiles(&self, users: &[UserId]) -> Result<Vec<PushProfile>>;
}
