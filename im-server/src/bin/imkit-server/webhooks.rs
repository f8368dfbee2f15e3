//! The integration flags: one webhook endpoint, one before-send URL, and
//! the push gateways.

use imkit_server::ServerError;

use crate::args::{FileConfig, RunArgs};

/// Adds the webhooks the flags or the file name.
#[cfg(feature = "webhooks")]
pub(crate) fn with_webhooks(
    builder: imkit_server::ServerBuilder,
    args: &RunArgs,
    file: &FileConfig,
) -> Result<imkit_server::ServerBuilder, ServerError> {
    use imkit_server::webhooks::{BeforeSendWebhook, Endpoint, WebhookOptions};

    let url = args.webhook_url.clone().or(file.webhook_url.clone());
    let before = args
        .before_send_url
        .clone()
        .or(file.before_send_url.clone());
    if url.is_none() && before.is_none() {
        return Ok(builder);
    }
    let secret = args
        .webhook_secret
        .clone()
        .or(file.webhook_secret.clone())
        .ok_or_else(|| ServerError::Config("webhooks need --webhook-secret".into()))?;
    let mut options = WebhookOptions::default();
    if let Some(url) = url {
        let mut endpoint = Endpoint::new(url, secret.clone());
        if let Some(list) = args
            .webhook_events
            .as_ref()
            .or(file.webhook_events.as_ref())
        {
            endpoint = endpoint.events(
                imkit_core::journal::EventKinds::parse(list)
                    .map_err(|e| ServerError::Config(format!("--webhook-events: {e}")))?,
            );
        }
        options = options.endpoint(endpoint);
    }
    if let Some(url) = before {
        let mut hook = BeforeSendWebhook::new(url, secret);
        if let Some(ms) = args.before_send_timeout_ms.or(file.before_send_timeout_ms) {
            hook.timeout = std::time::Duration::from_millis(ms.max(1));
        }
        if let Some(mode) = args.before_send_failure.or(file.before_send_failure) {
            hook.on_failure = match mode {
                crate::args::FailArg::Open => imkit_core::hooks::FailMode::Open,
                crate::args::FailArg::Closed => imkit_core::hooks::FailMode::Closed,
            };
        }
        options = options.before_send(hook);
    }
    Ok(builder.webhooks(options))
}

#[cfg(not(feature = "webhooks"))]
pub(crate) fn with_webhooks(
    builder: imkit_server::ServerBuilder,
    args: &RunArgs,
    file: &FileConfig,
) -> Result<imkit_server::ServerBuilder, ServerError> {
    if args.webhook_url.is_some()
        || file.webhook_url.is_some()
        || args.before_send_url.is_some()
        || file.before_send_url.is_some()
    {
        return Err(ServerError::Config(
            "this build has no webhooks feature; rebuild with --features webhooks".into(),
        ));
    }
    Ok(builder)
}

/// Sends offline pushes through the gateways the flags or the file name.
#[cfg(feature = "webhooks")]
pub(crate) fn with_push(
    builder: imkit_server::ServerBuilder,
    args: &RunArgs,
    file: &FileConfig,
) -> Result<imkit_server::ServerBuilder, ServerError> {
    use imkit_server::push::{HttpPushNotifier, PushGateways};

    let fcm = args.push_fcm_url.clone().or(file.push_fcm_url.clone());
    let apns = args.push_apns_url.clone().or(file.push_apns_url.clone());
    if fcm.is_none() && apns.is_none() {
        return Ok(builder);
    }
    let mut gateways = PushGateways::default();
    if let Some(url) = fcm {
        gateways = gateways.fcm(url, args.push_fcm_key.clone().or(file.push_fcm_key.clone()));
    }
    if let Some(url) = apns {
        let topic = args
            .push_apns_topic
            .clone()
            .or(file.push_apns_topic.clone())
            .ok_or_else(|| ServerError::Config("--push-apns-url needs --push-apns-topic".into()))?;
        gateways = gateways.apns(
            url,
            topic,
            args.push_apns_key.clone().or(file.push_apns_key.clone()),
        );
    }
    Ok(builder.push_notifier(std::sync::Arc::new(HttpPushNotifier::new(gateways)?)))
}

#[cfg(not(feature = "webhooks"))]
pub(crate) fn with_push(
    builder: imkit_server::ServerBuilder,
    args: &RunArgs,
    file: &FileConfig,
) -> Result<imkit_server::ServerBuilder, ServerError> {
    if args.push_fcm_url.is_some()
        || file.push_fcm_url.is_some()
        || args.push_apns_url.is_some()
        || file.push_apns_url.is_some()
    {
        return Err(ServerError::Config(
            "this build has no webhooks feature (push gateways); rebuild with --features webhooks"
                .into(),
        ));
    }
    Ok(builder)
}
