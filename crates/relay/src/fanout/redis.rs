//! [`Fanout`] across relay nodes through Redis pub/sub, routed by user.
//!
//! Each node keeps its own sessions in a [`LocalFanout`] and SUBSCRIBEs to
//! `<prefix>:user:<id>` only while that user has a session on it, so an
//! event reaches the nodes that can use it and no other. Events:
//! - `msg`: new messages are queued (published on every enqueue);
//! - `keys <n>`: the one-time pre-key count fell below the threshold;
//! - `close <replaced|takeover> <generation>`: close the user's sessions
//!   older than `generation`.
//!
//! A user's sessions live on one node (that node keeps several, see
//! `LocalFanout`): every new session (and every takeover) draws a generation from `INCR <prefix>:generation` (one counter
//! for the deployment, so Redis holds no per-user state) and publishes
//! `close … <generation>` on the user's channel; a node closes its session
//! for that user when the session's own generation is lower. Generations are
//! totally ordered, so of two simultaneous connections on two nodes exactly
//! the later INCR survives. A session whose INCR failed (Redis down) counts
//! as generation 0: it yields to any newer session that got one.
//!
//! Pub/sub is a hint, the database is the truth: each node also checks the
//! store for its sessions every `--delivery-poll-secs` ([`Fanout::poll_interval`],
//! `gateway::poll`), and
//! after Redis reconnects every local session is woken, so a lost
//! notification delays delivery by at most one poll and loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{CloseReason, Fanout, LocalFanout, Signal, Subscription};
use crate::config::RedisSettings;

/// What this node knows about one user with a session here.
#[derive(Debug, Default)]
struct LocalUser {
    /// Live local sessions of the user on this node.
    sessions: u32,
    /// Which local session is the newest (a per-node counter).
    current: u64,
    /// The newest session's cluster-wide generation, once INCR answered.
    generation: Option<u64>,
    /// A close request that arrived before `generation` was known.
    pending_close: Option<(u64, CloseReason)>,
}

#[derive(Debug, Clone, Copy)]
enum Control {
    Subscribe(Uuid),
    Unsubscribe(Uuid),
}

struct Inner {
    local: LocalFanout,
    node: Uuid,
    prefix: String,
    publisher: ConnectionManager,
    control: mpsc::UnboundedSender<Control>,
    users: Mutex<HashMap<Uuid, LocalUser>>,
    next_session: Mutex<u64>,
    poll: Duration,
    /// Pause before retrying a failed SUBSCRIBE.
    retry_after: Duration,
}

#[derive(Clone)]
pub struct RedisFanout {
    inner: Arc<Inner>,
}

/// One decoded pub/sub event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Messages,
    PreKeysLow(u32),
    Close(CloseReason, u64),
}

fn encode(node: Uuid, event: Event) -> String {
    match event {
        Event::Messages => format!("{node} msg"),
        Event::PreKeysLow(n) => format!("{node} keys {n}"),
        Event::Close(CloseReason::Replaced, g) => format!("{node} close replaced {g}"),
        Event::Close(CloseReason::Takeover, g) => format!("{node} close takeover {g}"),
    }
}

/// `(origin node, event)`; anything else is ignored.
fn decode(payload: &str) -> Option<(Uuid, Event)> {
    let mut words = payload.split(' ');
    let node = Uuid::parse_str(words.next()?).ok()?;
    let event = match (words.next()?, words.next(), words.next()) {
        ("msg", None, None) => Event::Messages,
        ("keys", Some(n), None) => Event::PreKeysLow(n.parse().ok()?),
        ("close", Some(reason), Some(g)) => {
            let reason = match reason {
                "replaced" => CloseReason::Replaced,
                "takeover" => CloseReason::Takeover,
                _ => return None,
            };
            Event::Close(reason, g.parse().ok()?)
        }
        _ => return None,
    };
    Some((node, event))
}

impl RedisFanout {
    /// Connects the publishing and the subscribing connection and starts
    /// the tasks that apply incoming events and (un)subscriptions.
    pub async fn connect(settings: &RedisSettings, poll: Duration) -> anyhow::Result<Self> {
        let publisher = crate::redis_client::connect(settings).await?;
        let (push_tx, push_rx) = mpsc::unbounded_channel::<PushInfo>();
        let subscriber = crate::redis_client::connect_pubsub(settings, push_tx).await?;
        let (control, control_rx) = mpsc::unbounded_channel();
        let fanout = RedisFanout {
            inner: Arc::new(Inner {
                local: LocalFanout::new(),
                node: Uuid::new_v4(),
                prefix: settings.key_prefix.clone(),
                publisher,
                control,
                users: Mutex::new(HashMap::new()),
                next_session: Mutex::new(0),
                poll,
                retry_after: settings.backoff.max,
            }),
        };
        tokio::spawn(fanout.clone().apply_controls(subscriber, control_rx));
        tokio::spawn(fanout.clone().apply_events(push_rx));
        Ok(fanout)
    }

    fn channel(&self, user: Uuid) -> String {
        format!("{}:user:{user}", self.inner.prefix)
    }

    fn generation_key(&self) -> String {
        format!("{}:generation", self.inner.prefix)
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, LocalUser>> {
        match self.inner.users.lock() {
            Ok(users) => users,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Publishes without waiting; a failure only costs latency (the poll).
    fn publish(&self, user: Uuid, event: Event) {
        let mut conn = self.inner.publisher.clone();
        let channel = self.channel(user);
        let payload = encode(self.inner.node, event);
        tokio::spawn(async move {
            if let Err(e) = conn.publish::<_, _, ()>(channel, payload).await {
                tracing::warn!(error = %e, "Redis publish failed; delivery falls back to polling");
            }
        });
    }

    /// Draws a generation and tells every node to close older sessions.
    /// `session` is the local session that owns the generation, if any.
    fn claim(&self, user: Uuid, reason: CloseReason, session: Option<u64>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut conn = this.inner.publisher.clone();
            let drawn: redis::RedisResult<u64> = conn.incr(this.generation_key(), 1u64).await;
            if let Err(e) = &drawn {
                tracing::warn!(error = %e, %user, "Redis INCR failed; older sessions on other nodes stay open");
            }
            // Without a generation a session yields to any session that has one.
            let generation = drawn.as_ref().copied().unwrap_or(0);
            if let Some(session) = session {
                let close = {
                    let mut users = this.users();
                    match users.get_mut(&user) {
                        Some(u) if u.current == session => {
                            u.generation = Some(generation);
                            u.pending_close
                                .take()
                                .filter(|(g, _)| *g > generation)
                                .map(|(_, reason)| reason)
                        }
                        _ => None,
                    }
                };
                if let Some(reason) = close {
                    this.inner.local.disconnect(user, reason);
                }
            }
            if drawn.is_err() {
                return;
            }
            let payload = encode(this.inner.node, Event::Close(reason, generation));
            if let Err(e) = conn.publish::<_, _, ()>(this.channel(user), payload).await {
                tracing::warn!(error = %e, %user, "Redis publish failed; older sessions on other nodes stay open");
            }
        });
    }

    /// Applies (un)subscriptions in order on the subscribing connection.
    async fn apply_controls(
        self,
        mut subscriber: ConnectionManager,
        mut controls: mpsc::UnboundedReceiver<Control>,
    ) {
        while let Some(control) = controls.recv().await {
            let result = match control {
                Control::Subscribe(user) => subscriber.subscribe(self.channel(user)).await,
                Control::Unsubscribe(user) => {
                    if self.users().contains_key(&user) {
                        continue; // reconnected meanwhile: keep the subscription
                    }
                    subscriber.unsubscribe(self.channel(user)).await
                }
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "Redis (un)subscribe failed; delivery falls back to polling");
                if let Control::Subscribe(user) = control {
                    // Retry while the user is still here: until then, closes
                    // from other nodes would not reach this node.
                    let this = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(this.inner.retry_after).await;
                        if this.users().contains_key(&user) {
                            let _ = this.inner.control.send(Control::Subscribe(user));
                        }
                    });
                }
            }
        }
    }

    /// Turns pub/sub messages into local signals and closes.
    async fn apply_events(self, mut pushes: mpsc::UnboundedReceiver<PushInfo>) {
        while let Some(push) = pushes.recv().await {
            match push.kind {
                PushKind::Message => {
                    if let Some((user, payload)) = self.parse_message(&push.data) {
                        self.on_event(user, &payload);
                    }
                }
                PushKind::Disconnection => {
                    // Events may have been lost while disconnected: look now.
                    tracing::warn!(
                        "Redis subscription connection lost; waking every local session"
                    );
                    let users: Vec<Uuid> = self.users().keys().copied().collect();
                    for user in users {
                        self.inner.local.notify(user, Signal::Messages);
                    }
                }
                _ => {}
            }
        }
    }

    fn parse_message(&self, data: &[Value]) -> Option<(Uuid, String)> {
        let text = |v: &Value| match v {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        };
        let channel = text(data.first()?)?;
        let user = channel.strip_prefix(&format!("{}:user:", self.inner.prefix))?;
        Some((Uuid::parse_str(user).ok()?, text(data.get(1)?)?))
    }

    fn on_event(&self, user: Uuid, payload: &str) {
        let Some((origin, event)) = decode(payload) else {
            tracing::debug!("ignoring an unknown fan-out event");
            return;
        };
        if origin == self.inner.node {
            return; // this node already acted locally
        }
        match event {
            Event::Messages => self.inner.local.notify(user, Signal::Messages),
            Event::PreKeysLow(remaining) => self
                .inner
                .local
                .notify(user, Signal::PreKeysLow { remaining }),
            Event::Close(reason, generation) => {
                let close = {
                    let mut users = self.users();
                    match users.get_mut(&user) {
                        Some(u) => match u.generation {
                            Some(mine) => mine < generation,
                            None => {
                                // Our INCR has not answered yet: decide then.
                                if u.pending_close.is_none_or(|(g, _)| g < generation) {
                                    u.pending_close = Some((generation, reason));
                                }
                                false
                            }
                        },
                        None => false,
                    }
                };
                if close {
                    self.inner.local.disconnect(user, reason);
                }
            }
        }
    }
}

/// Keeps the user's subscription while any local session lives.
struct Guard {
    fanout: RedisFanout,
    user: Uuid,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut users = self.fanout.users();
        if let Some(u) = users.get_mut(&self.user) {
            u.sessions = u.sessions.saturating_sub(1);
            if u.sessions == 0 {
                users.remove(&self.user);
                let _ = self
                    .fanout
                    .inner
                    .control
                    .send(Control::Unsubscribe(self.user));
            }
        }
    }
}

impl Fanout for RedisFanout {
    fn subscribe(&self, user: Uuid) -> Subscription {
        let mut sub = self.inner.local.subscribe(user);
        let session = {
            let mut next = match self.inner.next_session.lock() {
                Ok(n) => n,
                Err(p) => p.into_inner(),
            };
            *next += 1;
            *next
        };
        {
            let mut users = self.users();
            let u = users.entry(user).or_default();
            u.sessions += 1;
            u.current = session;
            u.generation = None;
            u.pending_close = None;
            if u.sessions == 1 {
                let _ = self.inner.control.send(Control::Subscribe(user));
            }
        }
        self.claim(user, CloseReason::Replaced, Some(session));
        let local_guard = std::mem::replace(&mut sub._guard, Box::new(()));
        sub._guard = Box::new((
            // Ours first: the user's entry goes before the local registry's.
            Guard {
                fanout: self.clone(),
                user,
            },
            local_guard,
        ));
        sub
    }

    fn notify(&self, user: Uuid, signal: Signal) {
        self.inner.local.notify(user, signal.clone());
        // The user's live sessions are all here: no other node needs telling
        // (a newer session elsewhere reads the store when it starts, and
        // polls). Saves a task and a Redis round trip per message.
        if self.inner.local.is_connected(user) {
            return;
        }
        let event = match signal {
            Signal::Messages | Signal::Message(_) => Event::Messages,
            Signal::PreKeysLow { remaining } => Event::PreKeysLow(remaining),
        };
        self.publish(user, event);
    }

    fn disconnect(&self, user: Uuid, reason: CloseReason) {
        self.inner.local.disconnect(user, reason);
        self.claim(user, reason, None);
    }

    fn connected(&self) -> usize {
        self.inner.local.connected()
    }

    /// This node's sessions only; a user connected elsewhere cancels their
    /// pending wake-up by connecting or acknowledging.
    fn is_connected(&self, user: Uuid) -> bool {
        self.inner.local.is_connected(user)
    }

    fn cursors(&self) -> Vec<(Uuid, i64)> {
        self.inner.local.cursors()
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(self.inner.poll)
    }
}

/// Readiness: Redis answers PING.
pub async fn ping(conn: &ConnectionManager) -> redis::RedisResult<()> {
    let mut conn = conn.clone();
    redis::cmd("PING").query_async::<()>(&mut conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_garbage_is_ignored() {
        let node = Uuid::new_v4();
        for event in [
            Event::Messages,
            Event::PreKeysLow(3),
            Event::Close(CloseReason::Replaced, 7),
            Event::Close(CloseReason::Takeover, u64::MAX),
        ] {
            assert_eq!(decode(&encode(node, event)), Some((node, event)));
        }
        for garbage in [
            "",
            "msg",
            "not-a-uuid msg",
            &format!("{node} close other 1"),
            &format!("{node} keys x"),
            &format!("{node} msg extra"),
        ] {
            assert_eq!(decode(garbage), None, "{garbage}");
        }
    }
}
