//! The file-descriptor budget. Every connection holds a descriptor, so the
//! process's descriptor limit bounds how many it can serve. At start the
//! server raises its soft limit to the hard one and splits what it has
//! between the chat listeners and the HTTP API, keeping some for itself
//! (stores, logs, listeners, files): HTTP connections can never take the
//! chat listeners' share. A configured limit the budget cannot honour is
//! refused with a message that says what to raise.

use crate::ServerError;

/// Descriptors kept out of every connection limit: database files and
/// their readers, logs, listeners, blob files, cluster connections.
pub const RESERVED_FDS: u64 = 256;

/// Most HTTP connections when none is configured (and at most an eighth of
/// the budget).
pub const DEFAULT_HTTP_CONNECTIONS: usize = 4_096;

/// How many connections each side may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// TCP and WebSocket chat connections, together.
    pub chat: usize,
    /// HTTP API connections (0 without an HTTP listener).
    pub http: usize,
}

/// Raises the soft open-file limit to the hard limit; returns the limit in
/// force afterwards (unchanged if it could not be raised).
pub fn raise_fd_limit() -> std::io::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    let (Some(cur), max) = (lim.current, lim.maximum) else {
        // Unlimited already.
        return Ok(u64::MAX);
    };
    match max {
        Some(max) if max > cur => {
            lim.current = Some(max);
            match setrlimit(Resource::Nofile, lim) {
                Ok(()) => Ok(max),
                Err(e) => {
                    tracing::warn!(error = %e, "could not raise the open-file limit");
                    Ok(cur)
                }
            }
        }
        None => {
            lim.current = None;
            Ok(setrlimit(Resource::Nofile, lim).map_or(cur, |()| u64::MAX))
        }
        Some(_) => Ok(cur),
    }
}

/// Splits `fd_limit` descriptors between chat and HTTP connections.
/// `chat` and `http` are the configured limits (`None`: derived); `http`
/// only counts when `has_http`.
pub fn budget(
    fd_limit: u64,
    chat: Option<usize>,
    http: Option<usize>,
    has_http: bool,
) -> Result<ConnectionBudget, ServerError> {
    let usable = usize::try_from(fd_limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    let http = match (has_http, http) {
        (false, _) => 0,
        (true, Some(n)) => n,
        (true, None) => DEFAULT_HTTP_CONNECTIONS.min(usable / 8).max(1),
    };
    let chat = match chat {
        Some(n) => n,
        None => usable.saturating_sub(http),
    };
    let needed = chat.saturating_add(http);
    if chat == 0 || needed > usable {
        return Err(ServerError::Config(format!(
            "{chat} chat and {http} HTTP connections need {} file descriptors with the {RESERVED_FDS} \
             the server keeps for itself, but the open-file limit is {fd_limit}: raise it \
             (`ulimit -n`, systemd's LimitNOFILE=) or lower --max-connections / --http-max-connections",
            needed.saturating_add(RESERVED_FDS as usize)
        )));
    }
    Ok(ConnectionBudget { chat, http })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_limits_split_the_budget_and_keep_chat_its_share() {
        let b = budget(20_000, None, None, true).expect("fits");
        assert_eq!(
            b.http,
            (20_000 - 256) / 8,
            "an eighth, under the 4,096 default"
        );
        assert_eq!(b.chat + b.http, 20_000 - 256);
        let b = budget(1_024, None, None, true).expect("fits");
        assert_eq!((b.chat, b.http), (768 - 96, 96));
        let b = budget(1_024, None, None, false).expect("fits");
        assert_eq!((b.chat, b.http), (768, 0));
    }

    #[test]
    fn a_configured_limit_past_the_budget_is_refused_with_what_to_raise() {
        let e = budget(20_000, Some(100_000), None, true).expect_err("too many");
        let m = e.to_string();
        assert!(
            m.contains("open-file limit is 20000") && m.contains("ulimit"),
            "{m}"
        );
        assert!(budget(20_000, Some(10_000), Some(9_744), true).is_ok());
        assert!(budget(20_000, Some(10_000), Some(9_745), true).is_err());
        assert!(budget(100, None, None, true).is_err(), "nothing left");
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let limit = raise_fd_limit().expect("getrlimit");
        let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(lim.current.unwrap_or(u64::MAX), limit);
        assert_eq!(lim.current, lim.maximum);
    }
}
