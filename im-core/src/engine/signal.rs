//! Live-only relays: typing and application signals. Neither is stored,
//! numbered or answered; each reaches the devices of the conversation's
//! other members that are connected now, and no one else ever.

use std::sync::Arc;

use imkit_proto::{Packet, pb};

use super::{Caller, Engine, Push, Target, push_of};
use crate::model::*;
use crate::{Error, Result};

impl Engine {
    /// Relays a typing signal to the other members' connected devices.
    pub async fn typing(&self, caller: &Caller, req: pb::Typing) -> Result<Vec<Push>> {
        use pb::typing::To;
        let (to_user, to_group) = match &req.to {
            Some(To::ToUserId(u)) => (Some(u.as_str()), None),
            Some(To::ToGroupId(g)) => (None, Some(g.as_str())),
            None => (None, None),
        };
        let (conv, targets) = self.live_audience(caller, to_user, to_group).await?;
        let packet = Packet::Typing(pb::Typing {
            to: None,
            conversation_id: conv.to_string(),
            user_id: caller.user.to_string(),
            active: req.active,
        });
        Ok(vec![push_of(packet, targets)])
    }

    /// Relays an application signal ([`pb::Signal`]) to the other members'
    /// connected devices, with the sender's user and device set. Checked
    /// like a send (blocks, membership), then forgotten: nothing is written.
    pub async fn signal(&self, caller: &Caller, req: pb::Signal) -> Result<Vec<Push>> {
        use pb::signal::To;
        let limit = self.inner.config.max_signal_bytes;
        if req.kind.is_empty() {
            return Err(Error::InvalidArgument("a signal needs a kind".into()));
        }
        let size = req.kind.len() + req.data.len();
        if size > limit {
            return Err(Error::InvalidArgument(format!(
                "signal kind and data are {size} bytes, the limit is {limit}"
            )));
        }
        let (to_user, to_group) = match &req.to {
            Some(To::ToUserId(u)) => (Some(u.as_str()), None),
            Some(To::ToGroupId(g)) => (None, Some(g.as_str())),
            None => (None, None),
        };
        let (conv, targets) = self.live_audience(caller, to_user, to_group).await?;
        let packet = Packet::Signal(pb::Signal {
            to: None,
            conversation_id: conv.to_string(),
            user_id: caller.user.to_string(),
            device_id: caller.device.to_string(),
            kind: req.kind,
            data: req.data,
        });
        Ok(vec![push_of(packet, targets)])
    }

    /// The conversation a live-only relay goes to, authorized as a send
    /// is, and the other members' connected devices: what a message there
    /// reaches (a large group's is kept between messages and relays), less
    /// the caller's other devices. A failing presence store means no live
    /// push, not a failed relay.
    async fn live_audience(
        &self,
        caller: &Caller,
        to_user: Option<&str>,
        to_group: Option<&str>,
    ) -> Result<(ConversationId, Arc<[Target]>)> {
        let (conv, members) = self.destination(caller, to_user, to_group).await?;
        let targets = match self.reach(&conv, &members, caller).await {
            Ok(reach) => reach.targets_without(&caller.user),
            Err(e) => {
                tracing::warn!(error = %e, conversation = %conv, "presence lookup failed; no live push");
                Arc::from(Vec::new())
            }
        };
        Ok((conv, targets))
    }
}
